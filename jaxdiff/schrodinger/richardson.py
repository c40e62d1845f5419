"""Probability-flow ODE with step doubling, Richardson extrapolation and selective updates.

ATLAS's "Richardson extrapolation" and "selective updates" (issue 14, section 1), as a
method for the one driver (:mod:`jaxdiff.samplers.driver`). The ODE is the one of
:mod:`jaxdiff.samplers.probability_flow`: ``dx/dt = d(x, t) = f(t) x + g(t)^2 eps / (2
sigma(t))`` (Song et al. 2021, eq. 13, with ``s = -eps / sigma``), integrated from ``t = 1``
to ``t_min``.

Notation: grid ``t_0 = 1 > t_1 > ... > t_N = t_min`` (uniform in ``t``), ``h = t_{i+1} -
t_i < 0``, ``t_mid = (t_i + t_{i+1}) / 2``. Per step, two model calls (two scan rows):

1. row A at ``(x_i, t_i)``: ``d_A = d(x_i, t_i)``; one Euler step of size ``h``,
   ``x_h = x_i + h d_A``, and the first of two half steps, ``x_m = x_i + h/2 d_A`` (it
   reuses ``d_A``, so step doubling costs one extra call, not two);
2. row B at ``(x_m, t_mid)``: ``x_hh = x_m + h/2 d(x_m, t_mid)``;
3. local error estimate per sample ``e = RMS(x_hh - x_h)`` over the non-batch axes:
   Euler's local error is ``C h^2 + O(h^3)``, two half steps make ``C h^2 / 2``, so ``e``
   is the local error of ``x_hh`` to leading order;
4. Richardson extrapolation (Richardson 1911; Hairer, Norsett & Wanner, "Solving ODEs I",
   section II.4): ``x_R = 2 x_hh - x_h`` cancels that leading term: a second-order step;
5. selective update: ``x_{i+1} = x_R`` for the samples with ``e >= tol``, else ``x_hh``.

Always on (``tol = 0``), ``x_R = x_i + h d(x_i + h/2 d_A, t_mid)`` is exactly the explicit
midpoint rule (RK2 with ``c_2 = 1/2``), global error ``O(h^2)``; always off
(``extrapolate=False``, or ``tol`` above every estimate) it is Euler with ``2N`` steps of
``h/2`` on the same grid, ``O(h)``. What "selective" buys here: no model calls (both
branches need the same two calls, and the choice is a per-sample ``jnp.where`` inside the
one scan, so the NFE is a static ``2N``), but control and a diagnostic. Since ``|x_R -
x_hh| = |x_hh - x_h| = e``, a sample left unextrapolated deviates from the midpoint step by
less than ``tol`` at that step, and ``tol`` moves the method between the first- and the
second-order scheme (Euler's half steps are the more stable of the two on stiff steps:
real stability interval ``[-4, 0]`` in ``h lambda`` against RK2's ``[-2, 0]``). The state
records, per step, the batch-mean estimate and the number of samples extrapolated.

Departures from the original (spec ``atlas.md`` section 6): Richardson and selective
updates exist in ATLAS's README and config only (M-A18); M-A19 proposes Richardson on the
entropic OT map, whose ``O(eps)`` bias is a different error; here the extrapolation acts on
the time step of the corrected probability-flow step (M-A2: sign, M-A3/M-A4: signed
``f``, ``g^2`` and the VP score). It is deterministic (the key only draws the OT
correction's reference noise).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff.samplers.base import check_flags, check_knob
from jaxdiff.samplers.continuous_base import ContinuousMethod
from jaxdiff.samplers.driver import Plan, check_latents
from jaxdiff.schrodinger.grid import check_grid, grid_times
from jaxdiff.schrodinger.ot_correction import OTCorrection, init_ot_record, pull_and_record

__all__ = ["RichardsonFlow", "RichardsonState"]


@struct.dataclass
class RichardsonState:
    """Scan carry of :class:`RichardsonFlow` (also ``SampleOutput.state``).

    Attributes:
      x_full: ``[B, ...]`` the full Euler step ``x_h`` of the step in progress.
      error: ``[N]`` batch mean of the local error estimate ``e`` at each step, in the
        state's units (RMS over the non-batch axes).
      num_extrapolated: ``[N]`` int32 number of samples extrapolated at each step.
      ot: the per-step OT health (``ot_converged``, ``ot_epsilon``, ``ot_error``, ``[N]``
        each; :func:`~jaxdiff.schrodinger.ot_correction.init_ot_record`) when the OT
        correction is on, else ``{}``.
    """

    x_full: Any
    error: Any
    num_extrapolated: Any
    ot: Any


@struct.dataclass
class RichardsonFlow(ContinuousMethod):
    """Probability-flow ODE by Euler step doubling with selective Richardson extrapolation.

    ``2 N`` model calls (``+1`` with ``denoise_final``); see the module docstring.

    Attributes:
      extrapolate: apply the extrapolation ``x_R = 2 x_hh - x_h`` (static); False returns
        the two-half-step Euler result (error estimates are still recorded).
      tol: selective-update threshold on the per-sample RMS estimate ``e`` (traced,
        ``>= 0``, ``inf`` allowed): extrapolate where ``e >= tol``; 0 means always.
      ot: an :class:`~jaxdiff.schrodinger.ot_correction.OTCorrection` or None: after each
        completed step (row B), pull the particles toward ``reference`` noised to
        ``t_{i+1}`` (as :class:`~jaxdiff.schrodinger.method.BridgeMethod` does).
      reference: ``[R, ...]`` data samples for ``ot`` (traced), or None: no correction.
      timesteps: a strictly decreasing grid ``(t_0, ..., t_N)`` in ``[0, 1]`` (static; a
        list is accepted; only its last entry may be 0, read as ``t_min``), whose
        midpoints are the half steps; None: ``num_steps`` uniform steps.
      (and ``num_steps``, ``prediction_type``, ``t_min``, ``denoise_final`` from
      :class:`~jaxdiff.samplers.continuous_base.ContinuousMethod`).
    """

    extrapolate: bool = struct.field(pytree_node=False, default=True)
    tol: float = 0.0
    ot: OTCorrection | None = None
    reference: jax.Array | None = None
    timesteps: tuple[float, ...] | None = struct.field(pytree_node=False, default=None)

    def __post_init__(self):
        super().__post_init__()
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", check_grid(self.timesteps, self.num_steps))
        check_flags(self, "extrapolate")
        check_knob(self, "tol", low=0.0, allow_inf=True)
        if self.ot is not None and not isinstance(self.ot, OTCorrection):
            raise TypeError(f"ot must be an OTCorrection or None, got {type(self.ot).__name__}")
        if isinstance(self.reference, np.ndarray | np.generic | list | tuple | str):
            object.__setattr__(self, "reference", check_latents(self.reference, "reference"))

    def _uses_ot(self) -> bool:
        return self.ot is not None and self.reference is not None

    def validate(self, schedule) -> int:
        """The number of steps ``N``, after the schedule checks of the base class."""
        n = super().validate(schedule)
        return n if self.timesteps is None else len(self.timesteps) - 1

    def time_grid(self, num_points: int):
        """``[2 N + 1]`` points: the step times with their midpoints interleaved."""
        if self.timesteps is None:
            return super().time_grid(num_points)
        ts = grid_times(self.timesteps, self.t_min)
        mids = 0.5 * (ts[:-1] + ts[1:])
        return jnp.append(jnp.stack([ts[:-1], mids], axis=1).reshape(-1), ts[-1])

    def plan(self, schedule) -> Plan:
        """Rows A (``t_i``) and B (``t_mid``) per step, then the denoising row if asked."""
        n = self.validate(schedule)
        ts = self.time_grid(2 * n + 1)  # t_mid is the odd points: halves tile the grid
        row_t = ts[:-1]
        half = ts[1:] - ts[:-1]
        full = jnp.repeat(ts[2::2] - ts[:-1:2], 2)
        t_end = jnp.repeat(ts[2::2], 2)  # the time step i ends at, on both of its rows
        stage_b = np.tile([False, True], n)
        index = np.repeat(np.arange(n, dtype=np.int32), 2)
        denoise = np.zeros(2 * n, bool)
        if self.denoise_final:
            row_t = jnp.concatenate([row_t, ts[-1:]])
            half, full = (jnp.concatenate([a, jnp.zeros((1,), a.dtype)]) for a in (half, full))
            t_end = jnp.concatenate([t_end, ts[-1:]])
            stage_b, index = np.append(stage_b, False), np.append(index, n - 1)
            denoise = np.append(denoise, True)
        rows = {
            **self.schedule_rows(schedule, row_t),
            "half": half,
            "full": full,
            "stage_b": jnp.asarray(stage_b),
            "index": jnp.asarray(index, jnp.int32),
            "denoise": jnp.asarray(denoise),
            "alpha_end": schedule.alpha(t_end),
            "sigma_end": schedule.sigma(t_end),
        }
        return Plan(
            timesteps=row_t.astype(jnp.float32), steps=rows, init_noise_sigma=schedule.prior_std
        )

    def init_state(self, x, plan) -> RichardsonState:
        """Zero full step and zero per-step records (``N`` rows)."""
        n = plan.num_model_calls // 2  # 2 N rows, or 2 N + 1 with denoise_final
        return RichardsonState(
            x_full=jnp.zeros_like(x),
            error=jnp.zeros((n,), x.dtype),
            num_extrapolated=jnp.zeros((n,), jnp.int32),
            ot=init_ot_record(n) if self._uses_ot() else {},
        )

    def step(self, key, state, x, model_output, step):
        """Row A: ``x -> x_m`` (and ``x_h`` into the state); row B: ``x_m -> x_{i+1}``."""
        x0, eps, _ = self.predict(model_output, x, step["alpha"], step["sigma"])
        d = step["f"] * x + 0.5 * step["g2"] / step["sigma"] * eps
        b, i = step["stage_b"], step["index"]
        # 1.-2. half step from x (x_m on row A, x_hh on row B); the full step on row A
        x_half = x + step["half"] * d
        x_full = jnp.where(b, state.x_full, x + step["full"] * d)
        # 3. per-sample RMS estimate e = |x_hh - x_h|
        axes = tuple(range(1, x.ndim))
        e = jnp.sqrt(jnp.mean(jnp.square(x_half - x_full), axis=axes))
        if self.extrapolate:
            # 4.-5. extrapolate where e >= tol (only row B's choice is used)
            use = e >= jnp.asarray(self.tol, e.dtype)
            x_rich = jnp.where(
                use.reshape((-1,) + (1,) * (x.ndim - 1)), 2 * x_half - x_full, x_half
            )
            count = jnp.sum(use, dtype=jnp.int32)
        else:
            x_rich, count = x_half, jnp.zeros((), jnp.int32)
        x_new = jnp.where(b, x_rich, x_half)
        ot = state.ot
        if self._uses_ot():
            ot, x_new = pull_and_record(
                jax.random.fold_in(key if key.ndim == 0 else key[0], 1),
                ot,
                x_new.astype(jnp.float32),
                self.reference,
                step["alpha_end"],
                step["sigma_end"],
                i,
                b,
                self.ot,
            )
        if self.denoise_final:
            x_new = jnp.where(step["denoise"], x0, x_new)
        state = RichardsonState(
            x_full=x_full,
            error=state.error.at[i].set(jnp.where(b, jnp.mean(e), state.error[i])),
            num_extrapolated=state.num_extrapolated.at[i].set(
                jnp.where(b, count, state.num_extrapolated[i])
            ),
            ot=ot,
        )
        return state, x_new.astype(x.dtype)
