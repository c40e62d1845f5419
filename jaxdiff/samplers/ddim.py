"""DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models").

Notation: ``a_t = alpha_bar_t`` at the current timestep ``t``, ``a_p`` at the previous
(less noisy) timestep ``p = t - T // n`` (``a_p = 1`` or ``alpha_bar_0`` past the end,
per ``set_alpha_to_one``). One step (eq. 12):

1. predict ``x0`` and ``eps`` from the model output (clip / threshold ``x0``);
2. ``sigma_t = eta * sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p))`` (eq. 16);
3. ``x_p = sqrt(a_p) x0 + sqrt(1 - a_p - sigma_t^2) eps + sigma_t z``.

``eta`` is traced (0 gives the deterministic sampler; 1 gives DDPM's posterior
variance). Matches diffusers' PyTorch ``DDIMScheduler`` step for step.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff.samplers.base import DiscreteMethod, check_flags, check_knob
from jaxdiff.samplers.driver import Plan
from jaxdiff.samplers.noise import normal_like

__all__ = ["DDIM"]


@struct.dataclass
class DDIM(DiscreteMethod):
    """DDIM sampler config.

    Attributes:
      eta: stochasticity (traced), ``0 <= eta``.
      use_clipped_model_output: recompute ``eps`` from the clipped ``x0`` (static).
      set_alpha_to_one: ``alpha_bar`` past the last step is 1 (else ``alpha_bar_0``).
    """

    eta: float = 0.0
    use_clipped_model_output: bool = struct.field(pytree_node=False, default=False)
    set_alpha_to_one: bool = struct.field(pytree_node=False, default=True)

    def __post_init__(self):
        super().__post_init__()
        check_knob(self, "eta", low=0.0)
        check_flags(self, "use_clipped_model_output", "set_alpha_to_one")

    def plan(self, schedule) -> Plan:
        """Timesteps ``[n]`` and per-step ``alpha_bar`` at ``t`` and at the previous step."""
        self.validate(schedule)
        T, n = schedule.num_train_timesteps, self.num_inference_steps
        ts = self.spaced(schedule).astype(np.int64)
        prev = ts - T // n
        ab = schedule.alphas_cumprod
        final = jnp.ones((), ab.dtype) if self.set_alpha_to_one else ab[0]
        a_t = ab[ts]
        a_p = jnp.where(prev >= 0, ab[np.maximum(prev, 0)], final)
        return Plan(
            timesteps=jnp.asarray(ts, jnp.float32),
            steps={"a_t": a_t, "a_p": a_p},
            init_noise_sigma=jnp.ones((), ab.dtype),
        )

    def init_state(self, x, plan):
        """DDIM is single-step: no state."""
        return ()

    def scale_model_input(self, x, step):
        """DDIM feeds ``x_t`` unscaled."""
        return x

    def step(self, key, state, x, model_output, step):
        """One DDIM update from ``t`` to the previous timestep."""
        a_t, a_p = step["a_t"], step["a_p"]
        x0, eps = self.predict(model_output, x, jnp.sqrt(a_t), jnp.sqrt(1.0 - a_t))
        variance = (1.0 - a_p) / (1.0 - a_t) * (1.0 - a_t / a_p)
        std = self.eta * jnp.sqrt(variance)
        if self.use_clipped_model_output:
            eps = (x - jnp.sqrt(a_t) * x0) / jnp.sqrt(1.0 - a_t)
        direction = jnp.sqrt(1.0 - a_p - std**2) * eps
        x_prev = jnp.sqrt(a_p) * x0 + direction
        noise = normal_like(key, x)
        return state, x_prev + std * noise
