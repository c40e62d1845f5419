"""Heun's second-order sampler.

Karras et al. (2022), "Elucidating the Design Space of Diffusion-Based Generative
Models" (EDM), Algorithm 1 with ``sigma(t) = t``.

Notation as in :mod:`jaxdiff.samplers.euler`: sigmas ``s_0 > ... > s_{n-1} > s_n = 0``
and ``d(x, s) = (x - x0(x, s)) / s``. Step ``i`` (Alg. 1, lines 4-8):

1. ``d_i = d(x_i, s_i)``; Euler predictor ``x' = x_i + (s_{i+1} - s_i) d_i``;
2. if ``s_{i+1} > 0``: ``d' = d(x', s_{i+1})`` and the trapezoidal corrector
   ``x_{i+1} = x_i + (s_{i+1} - s_i) (d_i + d') / 2``; else ``x_{i+1} = x'``.

Each model call is one scan row, so a run has ``2n - 1`` rows (diffusers' count: the
last step, into ``sigma = 0``, is a plain Euler step): even rows are first stages,
odd rows second stages, flagged by ``first`` in the plan. The carry holds the first
stage's derivative and its starting sample. Matches diffusers' PyTorch
``HeunDiscreteScheduler`` (discrete schedules) and ``FlowMatchHeunDiscreteScheduler``
(a :class:`~jaxdiff.schedules.flow.FlowSchedule`) step for step.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff.samplers.driver import Plan
from jaxdiff.samplers.euler import SigmaMethod

__all__ = ["Heun"]


@struct.dataclass
class Heun(SigmaMethod):
    """Heun sampler config.

    Inherits ``num_inference_steps`` (``n``; the run makes ``2n - 1`` model calls),
    ``timestep_spacing`` (default ``linspace``), ``use_karras_sigmas``, the prediction
    type and x0 clipping (static) from :class:`~jaxdiff.samplers.euler.SigmaMethod`.
    The grid always ends at ``sigma = 0`` with linear interpolation, as in diffusers.
    """

    def plan(self, schedule) -> Plan:
        """Plan ``2n - 1`` rows: ``sigma`` (of the model input), ``dt``, ``first``.

        Also ``scale`` and ``alpha`` of the model input; the timesteps are
        ``t_0, t_1, t_1, ..., t_{n-1}, t_{n-1}``.
        """
        self.check_schedule(schedule)
        grid = self.sigma_grid(schedule)
        n = grid.timesteps.shape[0]
        # Row 2i is the first stage of step i (model at s_i), row 2i+1 its second stage
        # (model at s_{i+1}); the last step (into sigma = 0) has only a first stage.
        model_idx = np.concatenate([[0], np.repeat(np.arange(1, n), 2)])
        step_idx = np.repeat(np.arange(n), 2)[: 2 * n - 1]
        first = np.arange(2 * n - 1) % 2 == 0
        sig = grid.sigmas
        steps = {
            "sigma": sig[model_idx],
            "dt": sig[step_idx + 1] - sig[step_idx],
            "first": jnp.asarray(first),
            "scale": grid.scale[model_idx],
            "alpha": grid.alpha[model_idx],
        }
        return Plan(
            timesteps=grid.timesteps[model_idx], steps=steps, init_noise_sigma=grid.init_noise_sigma
        )

    def init_state(self, x, plan):
        """Carry ``(d_prev, x_start)``: the first stage's derivative and sample."""
        return (jnp.zeros_like(x), jnp.zeros_like(x))

    def step(self, key, state, x, model_output, step):
        """One stage: first (Euler predictor) or second (trapezoidal corrector)."""
        d_prev, x_start = state
        s, dt, first = step["sigma"], step["dt"], step["first"]
        # 1. x0 and the ODE direction d = (x - x0) / sigma at this row's model input.
        x0, _ = self.predict(model_output, step["scale"] * x, step["alpha"], step["scale"] * s)
        d = (x - x0) / s
        # 2. first stage: Euler predictor x' = x + dt d (Alg. 1, lines 4-5); remember d and x.
        predictor = x + d * dt
        # 3. second stage: x_next = x_start + dt (d_prev + d') / 2 (Alg. 1, lines 6-8).
        corrector = x_start + (d_prev + d) / 2 * dt
        x_next = jnp.where(first, predictor, corrector)
        state = (jnp.where(first, d, d_prev), jnp.where(first, x, x_start))
        return state, x_next
