"""DDPM ancestral sampling with strided steps and learned variances.

Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (equations below);
Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (strides and
learned variances).

Notation: ``a_t = alpha_bar_t`` at the current timestep ``t`` and ``a_p`` at the
previous (less noisy) planned timestep ``p``: the next entry of the spaced timesteps, or
``a_p = 1`` after the last one. When ``n < T`` steps skip timesteps, so the "current"
per-step quantities come from the ratio of cumulative products (Nichol & Dhariwal,
section 4): ``alpha_t' = a_t / a_p`` and ``beta_t' = 1 - alpha_t'``. One step:

1. predict ``x0`` from the model output (clip / threshold ``x0``), eq. 15;
2. posterior mean of ``q(x_p | x_t, x0)`` (eq. 7):
   ``mu = sqrt(a_p) beta_t' / (1 - a_t) x0 + sqrt(alpha_t') (1 - a_p) / (1 - a_t) x_t``;
3. posterior variance ``beta_tilde = (1 - a_p) / (1 - a_t) beta_t'`` (eq. 7), or the
   variance the ``variance_type`` asks for (eq. 6 and Improved DDPM eq. 15);
4. ``x_p = mu + std z`` with ``z ~ N(0, I)``, only when ``t > 0``.

Matches diffusers' PyTorch ``DDPMScheduler`` step for step (``previous_timestep`` is the
next planned timestep, as in diffusers), with one deliberate difference: diffusers'
``fixed_large_log`` takes the square root of ``log(beta_t')`` (NaN for every ``t > 0``);
here it is the log-space form of ``fixed_large``, ``std = exp(log(beta_t') / 2)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._validation import check_int_range
from jaxdiff.samplers.base import DiscreteMethod, set_choice
from jaxdiff.samplers.driver import Plan, check_same_shape
from jaxdiff.samplers.noise import normal_like

__all__ = ["DDPM", "VARIANCE_TYPES"]

VARIANCE_TYPES = (
    "fixed_small",
    "fixed_small_log",
    "fixed_large",
    "fixed_large_log",
    "learned",
    "learned_range",
)
_LEARNED = ("learned", "learned_range")
_MIN_VARIANCE = 1e-20  # diffusers clamps the posterior variance before taking logs


@struct.dataclass
class DDPM(DiscreteMethod):
    """DDPM ancestral sampler config.

    All numeric knobs (``clip_sample_range``, ``dynamic_thresholding_ratio``,
    ``sample_max_value``, inherited) are traced; the fields below are static.

    Attributes:
      variance_type: ``fixed_small`` (posterior variance ``beta_tilde``),
        ``fixed_small_log`` (the same through ``exp(log(.) / 2)``), ``fixed_large``
        (``beta_t'``), ``fixed_large_log`` (``beta_t'`` in log space), ``learned`` (the
        model predicts the variance itself) or ``learned_range`` (the model predicts
        ``v`` in ``[-1, 1]``; log-variance ``(v+1)/2 log beta_t' + (1-v)/2 log
        beta_tilde``, Improved DDPM eq. 15). The learned types need a model output with
        twice the latents' channels.
      variance_channel_axis: for learned variances, the axis of the model output split
        into ``(prediction, variance values)`` halves: ``-1`` for NHWC, ``1`` for NCHW.
    """

    variance_type: str = struct.field(pytree_node=False, default="fixed_small")
    variance_channel_axis: int = struct.field(pytree_node=False, default=-1)

    def __post_init__(self):
        super().__post_init__()
        set_choice(self, "variance_type", VARIANCE_TYPES)
        check_int_range("variance_channel_axis", self.variance_channel_axis)

    def plan(self, schedule) -> Plan:
        """Timesteps ``[n]`` and per-step ``a_t``, ``a_p`` and the ``t > 0`` noise switch."""
        self.validate(schedule)
        if self.prediction_type == "flow":
            raise ValueError(
                "prediction_type='flow' (velocity eps - x0) assumes alpha_t = 1 - sigma_t and "
                "has no DDPM form; use epsilon, v_prediction, sample or score"
            )
        ts = self.spaced(schedule).astype(np.int64)
        prev = np.concatenate([ts[1:], [-1]])  # diffusers' previous_timestep
        ab = schedule.alphas_cumprod
        a_t = ab[ts]
        a_p = jnp.where(prev >= 0, ab[np.maximum(prev, 0)], jnp.ones((), ab.dtype))
        return Plan(
            timesteps=jnp.asarray(ts, jnp.float32),
            steps={"a_t": a_t, "a_p": a_p, "add_noise": jnp.asarray(ts > 0)},
            init_noise_sigma=jnp.ones((), ab.dtype),
        )

    def init_state(self, x, plan):
        """DDPM is single-step: no state."""
        return ()

    def scale_model_input(self, x, step):
        """DDPM feeds ``x_t`` unscaled."""
        return x

    def check_model_output(self, output_shape, x_shape) -> None:
        """Raise unless ``model_fn`` returned the shape this method needs (trace time).

        Learned variance types need twice the latents' channels on
        ``variance_channel_axis``; the other types need the latents' shape.
        """
        if self.variance_type not in _LEARNED:
            check_same_shape(output_shape, x_shape)
            return
        axis = self.variance_channel_axis
        if not -len(x_shape) <= axis < len(x_shape):
            raise ValueError(
                f"variance_channel_axis={axis} is out of range for latents of shape {x_shape}"
            )
        expected = list(x_shape)
        expected[axis] *= 2
        if tuple(output_shape) != tuple(expected):
            raise ValueError(
                f"variance_type={self.variance_type!r} needs a model_fn output with 2 * "
                f"{x_shape[axis]} channels on variance_channel_axis={axis}, i.e. shape "
                f"{tuple(expected)}; got shape {tuple(output_shape)} for latents of shape "
                f"{tuple(x_shape)}"
            )

    def split_output(self, model_output, x):
        """``(prediction, variance values or None)`` from the model output.

        For learned variance types ``model_output`` has ``2 C`` entries on
        ``variance_channel_axis`` where ``x`` has ``C``; other types use it whole.
        """
        if self.variance_type not in _LEARNED:
            return model_output, None
        axis = self.variance_channel_axis
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(
                f"variance_channel_axis={axis} is out of range for latents of shape {x.shape}"
            )
        channels = x.shape[axis]
        if model_output.ndim != x.ndim or model_output.shape[axis] != 2 * channels:
            raise ValueError(
                f"variance_type={self.variance_type!r} needs a model output with 2 * {channels} "
                f"channels on variance_channel_axis={axis}; got shape {model_output.shape} "
                f"for latents of shape {x.shape}"
            )
        prediction, values = jnp.split(model_output, 2, axis=axis)
        return prediction, values

    def step(self, key, state, x, model_output, step):
        """One ancestral update from ``t`` to the previous planned timestep."""
        prediction, values = self.split_output(model_output, x)
        a_t, a_p = step["a_t"], step["a_p"]
        alpha_cur = a_t / a_p
        beta_cur = 1.0 - alpha_cur
        # 1. x0 from the prediction half (eq. 15), clipped or thresholded.
        x0, _ = self.predict(prediction, x, jnp.sqrt(a_t), jnp.sqrt(1.0 - a_t))
        # 2. posterior mean mu(x_t, x0) (eq. 7).
        coef_x0 = jnp.sqrt(a_p) * beta_cur / (1.0 - a_t)
        coef_xt = jnp.sqrt(alpha_cur) * (1.0 - a_p) / (1.0 - a_t)
        mean = coef_x0 * x0 + coef_xt * x
        # 3. standard deviation of the chosen variance.
        posterior_var = jnp.maximum((1.0 - a_p) / (1.0 - a_t) * beta_cur, _MIN_VARIANCE)
        std = self._std(posterior_var, beta_cur, values)
        # 4. noise only while t > 0 (jnp.where also masks a NaN std at the last step).
        noise = normal_like(key, x)
        return state, mean + jnp.where(step["add_noise"], std * noise, 0.0)

    def _std(self, posterior_var, beta_cur, values):
        """Return the standard deviation of ``x_p | x_t`` for ``variance_type`` (static)."""
        kind = self.variance_type
        if kind == "fixed_small":
            return jnp.sqrt(posterior_var)
        if kind == "fixed_small_log":
            return jnp.exp(0.5 * jnp.log(posterior_var))
        if kind == "fixed_large":
            return jnp.sqrt(beta_cur)
        if kind == "fixed_large_log":
            return jnp.exp(0.5 * jnp.log(beta_cur))
        if kind == "learned":
            return jnp.sqrt(values)
        # learned_range: interpolate log-variances (Improved DDPM eq. 15).
        frac = (values + 1.0) / 2.0
        log_var = frac * jnp.log(beta_cur) + (1.0 - frac) * jnp.log(posterior_var)
        return jnp.exp(0.5 * log_var)
