"""Noise-level (sigma) helpers shared by the sigma-space samplers.

In variance-exploding form ``x = x0 + sigma eps`` with ``sigma_t =
sqrt((1 - alpha_bar_t) / alpha_bar_t)``; a VP state is ``x / sqrt(1 + sigma^2)``.
All functions are traceable and return arrays in the dtype of their inputs.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["interp_timesteps", "karras_sigmas", "sigma_to_t"]


def karras_sigmas(sigma_min, sigma_max, num_steps: int, rho=7.0):
    """Karras et al. (2022, EDM) eq. 5: ``[num_steps]`` sigmas from ``sigma_max`` down.

    ``sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``.
    ``num_steps`` is static; ``sigma_min``, ``sigma_max`` and ``rho`` may be traced.
    """
    ramp = jnp.linspace(0.0, 1.0, num_steps)
    lo = jnp.asarray(sigma_min) ** (1.0 / rho)
    hi = jnp.asarray(sigma_max) ** (1.0 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def sigma_to_t(sigma, train_sigmas):
    """Fractional training timestep of each ``sigma`` (interpolating in log sigma).

    Args:
      sigma: array of noise levels, any shape.
      train_sigmas: ``[T]`` increasing sigmas of the training timesteps.

    Returns:
      Array like ``sigma``: ``t`` in ``[0, T - 1]``, piecewise linear in ``log sigma``
      between neighbouring training timesteps and clamped at the ends (diffusers'
      ``_sigma_to_t``).
    """
    log_sigmas = jnp.log(train_sigmas)
    log_sigma = jnp.log(jnp.maximum(sigma, 1e-10))
    n = log_sigmas.shape[0]
    # compare_all: a vectorised comparison; the default binary search is a while loop,
    # which costs a host round trip per iteration on GPU.
    found = jnp.searchsorted(log_sigmas, log_sigma, side="right", method="compare_all")
    low = jnp.clip(found - 1, 0, n - 2)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = jnp.clip((lo - log_sigma) / (lo - hi), 0.0, 1.0)
    return (1.0 - w) * low + w * (low + 1)


def interp_timesteps(t, values):
    """Linear interpolation of ``values`` ``[T]`` (given at timesteps ``0..T-1``) at ``t``.

    ``t`` is any array of (fractional) timesteps, clamped to ``[0, T - 1]``; equal to
    ``jnp.interp(t, arange(T), values)`` but without a search (the grid is uniform), so
    it compiles to a gather and a few elementwise ops, with no loop.
    """
    n = values.shape[-1]
    t = jnp.clip(t, 0, n - 1)
    low = jnp.clip(jnp.floor(t).astype(jnp.int32), 0, max(n - 2, 0))
    high = jnp.minimum(low + 1, n - 1)
    w = t - low
    return values[low] + w * (values[high] - values[low])
