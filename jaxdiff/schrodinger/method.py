"""``BridgeMethod``: the sampling method FastSB-OT and ATLAS configure.

One method for the one driver (:func:`jaxdiff.samplers.sample`): a correct reverse step
on a continuous schedule, optionally followed at every step by an entropic-OT pull
toward reference samples (:mod:`jaxdiff.schrodinger.ot_correction`) and by kinetic
Langevin corrector rows with a Fisher mass matrix (:mod:`jaxdiff.schrodinger.fisher`).

Grid ``t_0 = 1 > t_1 > ... > t_N = t_min`` (``N = num_steps``, uniform), or the given
``timesteps`` (a final ``0`` is taken as ``t_min``, where the score is finite);
``h_i = t_{i+1} - t_i``;
the model gets ``(x, t)`` with ``t`` float32 ``[B]`` (1 = noise) and its output is read
as ``prediction_type`` (:class:`~jaxdiff.samplers.continuous_base.ContinuousMethod`).
Step ``i`` takes these scan rows (one model call each):

1. the base step from ``t_i`` to ``t_{i+1}``:

   * ``euler``: probability-flow Euler, ``x + h d(x, t_i)`` with ``d = f x + g^2 eps /
     (2 sigma)`` (Song et al. 2021, eq. 13); one row;
   * ``heun``: probability-flow Heun (Karras et al. 2022, Algorithm 1 without churn);
     two rows;
   * ``ddim``: DDIM on the continuous grid (Song, Meng & Ermon 2021, eq. 12) with
     ``x_n = alpha_n x0 + sqrt(sigma_n^2 - s^2) eps + s z``, ``s = eta sigma_n / sigma_c
     sqrt(sigma_c^2 - (alpha_c / alpha_n)^2 sigma_n^2)``; one row (``eta = 0``: the
     PF-ODE's exponential integrator);
   * ``euler_maruyama``: the reverse SDE, ``x + (f x - g^2 s) h + g sqrt(-h) z`` (eq. 6);
     one row;

   then, without a model call, the OT correction at ``t_{i+1}`` when ``reference`` is
   given (it is off without reference samples: a batch transported onto itself cannot be
   corrected, spec ATLAS M-A5);
2. ``langevin.n_steps`` corrector rows at ``t_{i+1}``.

The scan state holds, per step ``i``, the OT health (``ot_converged``, ``ot_epsilon``,
``ot_error``); it is ``SampleOutput.state``. The state stays in float32 whatever the
latents' dtype, and nothing is clipped (spec FastSB-OT M13, M18).

Where jaxdiff departs from the originals (``../shared/specs``): FastSB-OT's ``sample()``
moves against the score with ``1 - ab`` for ``beta`` and damps each step by a weight in
[0.2, 0.8] (M1, M2: std 0.3 becomes 1.215); its FFT blend erases images (M3); its
"Fisher natural gradient" and momentum are not well-posed (M4-M6); ATLAS applies its OT
step to the batch against itself (M-A5). Here the base step is a textbook integrator
applied once, and every correction is optional, measured and well-posed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff.samplers.base import check_knob, set_choice
from jaxdiff.samplers.continuous_base import ContinuousMethod
from jaxdiff.samplers.driver import Plan, check_latents
from jaxdiff.samplers.noise import normal_like
from jaxdiff.samplers.probability_flow import pf_derivative
from jaxdiff.schrodinger.fisher import KineticLangevin
from jaxdiff.schrodinger.grid import check_grid, grid_times
from jaxdiff.schrodinger.ot_correction import OTCorrection, init_ot_record, pull_and_record

__all__ = ["BASE_STEPS", "BridgeMethod"]

BASE_STEPS = ("heun", "euler", "ddim", "euler_maruyama")
_STAGE_BASE, _STAGE_HEUN2 = 0, 1


def _one_key(key):
    """One key from a step key (a scalar key, or per-example ``[B]`` keys)."""
    return key if key.ndim == 0 else key[0]


@struct.dataclass
class BridgeMethod(ContinuousMethod):
    """Reverse sampler with optional OT and kinetic-Langevin corrections (see module).

    Attributes:
      base: ``heun`` (default), ``euler``, ``ddim`` or ``euler_maruyama`` (static).
      eta: DDIM stochasticity in ``[0, 1]`` (traced; ``ddim`` only).
      ot: an :class:`~jaxdiff.schrodinger.ot_correction.OTCorrection`, or None (static
        structure, traced numbers).
      reference: ``[R, ...]`` data samples ``y0`` the OT correction pulls toward (traced;
        same trailing shape as the latents), or None: no OT correction.
      langevin: a :class:`~jaxdiff.schrodinger.fisher.KineticLangevin`, or None.
      timesteps: a strictly decreasing grid ``(t_0, ..., t_N)`` in ``[0, 1]`` (static;
        a list is accepted), only its last entry may be 0; None: ``num_steps`` uniform
        steps from 1 to ``t_min``. With a grid, ``num_steps`` is ``N`` (or None).
      (and ``num_steps``, ``prediction_type``, ``t_min``, ``denoise_final``.)
    """

    base: str = struct.field(pytree_node=False, default="heun")
    eta: float = 0.0
    ot: OTCorrection | None = None
    reference: jax.Array | None = None
    langevin: KineticLangevin | None = None
    timesteps: tuple[float, ...] | None = struct.field(pytree_node=False, default=None)

    def __post_init__(self):
        super().__post_init__()
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", check_grid(self.timesteps, self.num_steps))
        set_choice(self, "base", BASE_STEPS)
        check_knob(self, "eta", low=0.0, high=1.0)
        if self.ot is not None and not isinstance(self.ot, OTCorrection):
            raise TypeError(f"ot must be an OTCorrection or None, got {type(self.ot).__name__}")
        if isinstance(self.reference, np.ndarray | np.generic | list | tuple | str):
            # what a user passes; JAX's own rebuilds (tracers, AOT placeholders) pass
            object.__setattr__(self, "reference", check_latents(self.reference, "reference"))
        if self.langevin is not None and not isinstance(self.langevin, KineticLangevin):
            raise TypeError(
                f"langevin must be a KineticLangevin or None, got {type(self.langevin).__name__}"
            )

    # -- layout ---------------------------------------------------------------------
    def validate(self, schedule) -> int:
        """The number of steps ``N``, after the schedule checks of the base class."""
        n = super().validate(schedule)
        return n if self.timesteps is None else len(self.timesteps) - 1

    def time_grid(self, num_points: int):
        """The ``[N + 1]`` step times: ``timesteps`` (a final 0 as ``t_min``) or uniform."""
        if self.timesteps is None:
            return super().time_grid(num_points)
        return grid_times(self.timesteps, self.t_min)

    def _uses_ot(self) -> bool:
        return self.ot is not None and self.reference is not None

    def _corrector_rows(self) -> int:
        return 0 if self.langevin is None else int(self.langevin.n_steps)

    def _rows_per_step(self) -> int:
        return (2 if self.base == "heun" else 1) + self._corrector_rows()

    def plan(self, schedule) -> Plan:
        """Rows per step: 1 or 2 base rows (``heun``), then the corrector rows."""
        n = self.validate(schedule)
        ts = self.time_grid(n + 1)
        t_c, t_n = ts[:-1], ts[1:]
        per = self._rows_per_step()
        base_rows = per - self._corrector_rows()
        # row k of step i: 0..base_rows-1 are the base stages, then the correctors
        pos = np.tile(np.arange(per), n)
        step_index = np.repeat(np.arange(n), per)
        row_t = jnp.where(jnp.asarray(pos == 0), jnp.repeat(t_c, per), jnp.repeat(t_n, per))
        rows = {
            **self.schedule_rows(schedule, row_t),
            "alpha_c": jnp.repeat(schedule.alpha(t_c), per),
            "sigma_c": jnp.repeat(schedule.sigma(t_c), per),
            "alpha_n": jnp.repeat(schedule.alpha(t_n), per),
            "sigma_n": jnp.repeat(schedule.sigma(t_n), per),
            "h": jnp.repeat(t_n - t_c, per),
            "stage": jnp.asarray(np.minimum(pos, base_rows), np.int32),
            "completes": jnp.asarray(pos == base_rows - 1),
            "corrector": jnp.asarray(pos >= base_rows),
            "corrector_index": jnp.asarray(pos - base_rows, np.int32),
            "step": jnp.asarray(step_index, np.int32),
            "final": jnp.asarray(np.arange(n * per) == n * per - 1),
        }
        return Plan(
            timesteps=row_t.astype(jnp.float32), steps=rows, init_noise_sigma=schedule.prior_std
        )

    def init_state(self, x, plan):
        """Heun's stage cache, the Langevin state and the per-step OT health arrays."""
        n = plan.num_model_calls // self._rows_per_step()
        zeros = jnp.zeros_like(x, jnp.float32)
        state = {"heun": (zeros, zeros) if self.base == "heun" else (), **init_ot_record(n)}
        if self.langevin is not None:
            state["langevin"] = self.langevin.init_state(x)
        return state

    # -- one row ----------------------------------------------------------------------
    def _base(self, key, state, x, x0, eps, score, step):
        h = step["h"]
        d = pf_derivative(x, eps, step["f"], step["g2"], step["sigma"])
        if self.base == "euler":
            return state, x + h * d
        if self.base == "heun":
            x_prev, d_prev = state["heun"]
            first = step["stage"] == _STAGE_BASE
            x_new = jnp.where(first, x + h * d, x_prev + 0.5 * h * (d_prev + d))
            heun = (jnp.where(first, x, x_prev), jnp.where(first, d, d_prev))
            return {**state, "heun": heun}, x_new
        z = normal_like(key, x)
        if self.base == "ddim":
            a_c, s_c, a_n, s_n = step["alpha_c"], step["sigma_c"], step["alpha_n"], step["sigma_n"]
            var = jnp.maximum(s_c**2 - (a_c / a_n) ** 2 * s_n**2, 0.0)
            s = self.eta * s_n / s_c * jnp.sqrt(var)
            return state, a_n * x0 + jnp.sqrt(jnp.maximum(s_n**2 - s**2, 0.0)) * eps + s * z
        # euler_maruyama, h < 0
        drift = step["f"] * x - step["g2"] * score
        return state, x + drift * h + jnp.sqrt(-step["g2"] * h) * z

    def step(self, key, state, x, model_output, step):
        """One base stage or one corrector row; the OT pull after a completed base step."""
        x32 = x.astype(jnp.float32)
        out = model_output.astype(jnp.float32)
        x0, eps, score = self.predict(out, x32, step["alpha"], step["sigma"])
        base_state, x_base = self._base(key, state, x32, x0, eps, score, step)
        if self._uses_ot():
            # the Sinkhorn solve runs only on the row that completes a base step
            keys = ("ot_converged", "ot_epsilon", "ot_error")
            record, x_base = pull_and_record(
                jax.random.fold_in(_one_key(key), 1),
                {k: base_state[k] for k in keys},
                x_base,
                self.reference,
                step["alpha_n"],
                step["sigma_n"],
                step["step"],
                step["completes"],
                self.ot,
            )
            base_state = {**base_state, **record}
        x_new, new_state = x_base, base_state
        if self._corrector_rows():
            lv_state, x_lv = self.langevin.row(key, state["langevin"], x32, score, step)
            corr = step["corrector"]
            x_new = jnp.where(corr, x_lv, x_base)
            new_state = jax.tree.map(
                lambda a, b: jnp.where(corr, a, b), {**state, "langevin": lv_state}, base_state
            )
        if self.denoise_final:
            x_new = jnp.where(step["final"], x0, x_new)
        return new_state, x_new.astype(x.dtype)
