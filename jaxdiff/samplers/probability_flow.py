"""Probability-flow ODE sampler, integrated with fixed steps.

Song et al. (2021), "Score-Based Generative Modeling through SDEs", section 4.3, eq. 13.

The ODE ``dx/dt = f(t) x - 1/2 g(t)^2 s(x, t)`` with ``s = -eps / sigma(t)`` shares the
SDE's marginals; its flow map from ``t = 1`` to ``t_min`` is deterministic. For the EDM
schedule it is Karras et al. (2022) eq. 4 (``dx/dsigma = eps``).

Notation: grid ``t_0 = 1 > t_1 > ... > t_N = t_min`` (``N = num_steps``, uniform in
``t``), ``h_i = t_{i+1} - t_i < 0``, ``d(x, t) = f(t) x + g(t)^2 / (2 sigma(t)) eps``.

* ``euler`` (N model calls): ``x_{i+1} = x_i + h_i d(x_i, t_i)``;
* ``heun`` (2N model calls, two consecutive scan rows per step; Karras et al. 2022,
  Algorithm 1 without churn and with the last step also corrected since ``t_N > 0``):

  1. ``d_i = d(x_i, t_i)``, ``x~ = x_i + h_i d_i``;
  2. ``x_{i+1} = x_i + h_i (d_i + d(x~, t_{i+1})) / 2``.

With ``denoise_final`` one more model call at ``t_min`` returns the model's ``x0``
estimate (score_sde's ``ode_sampler`` ``denoise`` option, as Tweedie's posterior mean).
score_sde integrates this ODE with an adaptive RK45 solver; here the step count is
static and the whole run is one ``lax.scan``. The key is ignored: the sampler is
deterministic given the initial noise.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff.samplers.base import set_choice
from jaxdiff.samplers.continuous_base import ContinuousMethod
from jaxdiff.samplers.driver import Plan

__all__ = ["ODE_SOLVERS", "ProbabilityFlow", "pf_derivative"]

ODE_SOLVERS = ("euler", "heun")


def pf_derivative(x, eps, f, g2, sigma):
    """``dx/dt = f x - g^2 s / 2 = f x + g^2 eps / (2 sigma)`` (Song et al. 2021, eq. 13)."""
    return f * x + 0.5 * g2 / sigma * eps


@struct.dataclass
class ProbabilityFlow(ContinuousMethod):
    """Probability-flow ODE sampler config.

    Attributes:
      solver: ``euler`` or ``heun`` (static).
      (and ``num_steps``, ``prediction_type``, ``t_min``, ``denoise_final`` from
      :class:`~jaxdiff.samplers.continuous_base.ContinuousMethod`).
    """

    solver: str = struct.field(pytree_node=False, default="heun")

    def __post_init__(self):
        super().__post_init__()
        set_choice(self, "solver", ODE_SOLVERS)

    def _solver(self) -> str:
        return self.solver

    def plan(self, schedule) -> Plan:
        """Rows: one (Euler) or two (Heun) per step, plus one if ``denoise_final``."""
        n = self.validate(schedule)
        heun = self._solver() == "heun"
        ts = self.time_grid(n + 1)
        t_cur, t_nxt = ts[:-1], ts[1:]
        h = t_nxt - t_cur
        if heun:
            row_t = jnp.stack([t_cur, t_nxt], axis=1).reshape(-1)
            stage = np.tile([0, 1], n)
            h = jnp.repeat(h, 2)
        else:
            row_t, stage = t_cur, np.zeros(n, np.int32)
        denoise = np.zeros(stage.shape[0], bool)
        if self.denoise_final:
            row_t = jnp.concatenate([row_t, ts[-1:]])
            stage = np.append(stage, 0)
            h = jnp.concatenate([h, jnp.zeros((1,), h.dtype)])
            denoise = np.append(denoise, True)
        rows = {
            **self.schedule_rows(schedule, row_t),
            "h": h,
            "first_stage": jnp.asarray(stage == 0),
            "denoise": jnp.asarray(denoise),
        }
        return Plan(
            timesteps=row_t.astype(jnp.float32),
            steps=rows,
            init_noise_sigma=schedule.prior_std,
        )

    def init_state(self, x, plan):
        """Heun carries ``(x_i, d_i)`` from its first stage to its second; Euler nothing."""
        if self._solver() == "heun":
            return (jnp.zeros_like(x), jnp.zeros_like(x))
        return ()

    def step(self, key, state, x, model_output, step):
        """One Euler step, or one Heun stage (``step["first_stage"]`` says which)."""
        x0, eps, _ = self.predict(model_output, x, step["alpha"], step["sigma"])
        # 1. ODE right-hand side (eq. 13)
        d = pf_derivative(x, eps, step["f"], step["g2"], step["sigma"])
        h = step["h"]
        if self._solver() == "euler":
            x_new = x + h * d
        else:
            x_prev, d_prev = state
            first = step["first_stage"]
            # 2. first stage: Euler predictor from x_i; second: trapezoidal corrector
            x_new = jnp.where(first, x + h * d, x_prev + 0.5 * h * (d_prev + d))
            state = (jnp.where(first, x, x_prev), jnp.where(first, d, d_prev))
        if self.denoise_final:
            # 3. the extra row at t_min returns E[x0 | x_{t_min}]
            x_new = jnp.where(step["denoise"], x0, x_new)
        return state, x_new.astype(x.dtype)
