"""Beta schedules of discrete-time diffusion models.

Notation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"):
``beta_t`` is the per-step noise variance, ``alpha_t = 1 - beta_t`` and
``alpha_bar_t = prod_{s<=t} alpha_s``, so that ``x_t = sqrt(alpha_bar_t) x_0 +
sqrt(1 - alpha_bar_t) eps``. All functions return arrays of shape
``[num_train_timesteps]`` in the default float dtype (float32, or float64 under
``jax_enable_x64``) and are traceable: ``beta_start``/``beta_end`` may be traced.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxdiff._registry import Registry

__all__ = ["BETA_SCHEDULES", "make_betas", "rescale_zero_terminal_snr"]


def _linear(n, beta_start, beta_end):
    return jnp.linspace(beta_start, beta_end, n)


def _scaled_linear(n, beta_start, beta_end):
    # Latent-diffusion schedule: linear in sqrt(beta) (diffusers "scaled_linear").
    return jnp.linspace(jnp.sqrt(beta_start), jnp.sqrt(beta_end), n) ** 2


def _cosine(n, beta_start, beta_end, max_beta=0.999):
    # Nichol & Dhariwal 2021, eq. 17 with s = 0.008 (diffusers "squaredcos_cap_v2").
    # Evaluated on the host in float64 (n is static; nothing here is traced), as diffusers
    # does with Python floats: in float32, 1 - alpha_bar[1:] / alpha_bar[:-1] loses up to
    # 0.2% of the betas to cancellation. The result is cast to the default float dtype.
    del beta_start, beta_end
    t = np.arange(n + 1, dtype=np.float64) / n
    alpha_bar = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
    return jnp.asarray(np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta))


def _sigmoid(n, beta_start, beta_end):
    # GeoDiff (Xu et al. 2022) sigmoid schedule, as in diffusers.
    return (
        jnp.asarray(1.0 / (1.0 + jnp.exp(-jnp.linspace(-6.0, 6.0, n)))) * (beta_end - beta_start)
        + beta_start
    )


def _exponential(n, beta_start, beta_end):
    # Geometric interpolation: beta_t = beta_start * (beta_end / beta_start) ** (t / (n - 1)).
    frac = jnp.arange(n) / max(n - 1, 1)
    return beta_start * (beta_end / beta_start) ** frac


# name -> betas(n, beta_start, beta_end), for make_betas and DiscreteSchedule.create
BETA_SCHEDULES: Registry = Registry("schedule_type")
BETA_SCHEDULES.register("linear", _linear)
BETA_SCHEDULES.register("scaled_linear", _scaled_linear)
# DDPM's "quad" schedule: sqrt(beta) linear, identical to scaled_linear.
BETA_SCHEDULES.register("quadratic", _scaled_linear)
BETA_SCHEDULES.register("cosine", _cosine)
BETA_SCHEDULES.register("squaredcos_cap_v2", _cosine)
BETA_SCHEDULES.register("sigmoid", _sigmoid)
BETA_SCHEDULES.register("exponential", _exponential)
# schedules that ignore beta_start / beta_end
IGNORES_BETA_RANGE = ("cosine", "squaredcos_cap_v2")


def make_betas(schedule_type: str, num_train_timesteps: int, beta_start, beta_end):
    """Betas ``[num_train_timesteps]`` of a named schedule.

    Args:
      schedule_type: one of ``BETA_SCHEDULES`` (static).
      num_train_timesteps: number of training steps ``T`` (static, positive).
      beta_start: beta of the first step (ignored by ``cosine``).
      beta_end: beta of the last step (ignored by ``cosine``).
    """
    return BETA_SCHEDULES.get(schedule_type)(num_train_timesteps, beta_start, beta_end)


def rescale_zero_terminal_snr(betas):
    """Rescale betas so the final step has zero SNR (Lin et al. 2024, Algorithm 1).

    ``sqrt(alpha_bar)`` is shifted so its last value is 0 and scaled so its first value
    is unchanged. Returns betas of the same shape; the last beta equals 1.
    """
    sqrt_ab = jnp.sqrt(jnp.cumprod(1.0 - betas))
    first, last = sqrt_ab[0], sqrt_ab[-1]
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    alpha_bar = sqrt_ab**2
    alphas = jnp.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas
