"""Adaptive Dormand-Prince 5(4) integration of a flow-matching velocity field (diffrax).

The ODE and its two directions are those of :mod:`jaxdiff.flows.ode`: ``dx/dt = v(x, t)``
with data at ``t = 0`` and noise at ``t = 1``; *generate* runs 1 -> 0, *invert* 0 -> 1.
Here the step size adapts: ``diffrax.diffeqsolve`` with ``diffrax.Dopri5`` (Dormand &
Prince 1980, "A family of embedded Runge-Kutta formulae") and a
``diffrax.PIDController(rtol, atol)``, which accepts a step when the embedded error
estimate ``e`` satisfies ``rms(e / (atol + rtol max(|x_i|, |x_{i+1}|))) <= 1`` (HNW 1993,
sec. II.4, eq. 4.11). The RMS runs over the whole batch, so the step sizes (and the samples,
within tolerance) depend on the batch; ``jax.vmap`` over single examples decouples them.

The solve runs with ``throw=False``: failure (e.g. ``max_steps`` reached) is reported in
:class:`AdaptiveOutput` (``succeeded``, ``result``), and ``debug=True`` raises it.

The model is told ``t * T`` with ``T = schedule.num_train_timesteps`` as in the fixed-step
methods, but at the state's precision (float64 under ``jax_enable_x64``; the sampling
driver always passes float32). Classifier-free guidance wraps the model exactly as in the
driver (:func:`jaxdiff.samplers.guided_model`, one batched call per evaluation).

NFE from diffrax's stats: Dopri5 has 7 stages and is FSAL (the last stage of an accepted
step is the next step's first), so a solve costs ``1 + 6 num_steps`` evaluations, every
attempted step (accepted or rejected) 6 new ones. diffrax evaluates the first stage again
after each rejection of the very first step, which the stats do not count: then the true
count exceeds ``nfe`` by those rejections (at most ``num_rejected_steps``). With the
default ``dt0 = None`` diffrax 0.7 starts at ``|dt| = 0.01`` without extra evaluations.
"""

from __future__ import annotations

import functools
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
from flax import struct

from jaxdiff._validation import check_bool, check_int_range, concrete_value, is_concrete
from jaxdiff.flows.ode import DIRECTIONS, check_flow_schedule
from jaxdiff.samplers.base import check_knob, set_choice
from jaxdiff.samplers.driver import check_latents, check_model_fn, check_same_shape
from jaxdiff.samplers.guidance import check_contexts, guided_model
from jaxdiff.schedules.checks import MAX_TIMESTEPS, check_number

__all__ = ["DOPRI5_STAGES", "RESULT_NAMES", "AdaptiveODE", "AdaptiveOutput", "solve_adaptive"]

# diffrax.RESULTS (0.7, with optimistix's entries) by name; ``result_code`` indexes this.
RESULT_NAMES = (
    "successful",
    "max_steps_reached",
    "singular",
    "breakdown",
    "stagnation",
    "conlim",
    "nonfinite_input",
    "nonlinear_max_steps_reached",
    "nonlinear_divergence",
    "nonfinite",
    "dt_min_reached",
    "event_occurred",
    "max_steps_rejected",
    "internal_error",
)
DOPRI5_STAGES = 7


@struct.dataclass
class AdaptiveODE:
    """Adaptive Dopri5 config for :func:`solve_adaptive`.

    Attributes:
      rtol: relative tolerance (traced), ``> 0``.
      atol: absolute tolerance (traced), ``> 0``.
      t_start: first time (traced) in ``[0, 1]``; default 1 (generate) or 0 (invert).
      t_end: last time (traced) in ``[0, 1]``; default 0 (generate) or 1 (invert).
        Generate needs ``t_start > t_end``, invert ``t_start < t_end``.
      direction: ``generate`` or ``invert`` (static).
      max_steps: most attempted steps (static), ``>= 1``; reaching it is a failure.

    Numbers are checked whenever they are concrete (tracers and JAX's pytree
    placeholders pass); ``ValueError`` / ``TypeError`` name the field.
    """

    rtol: Any = 1e-5
    atol: Any = 1e-5
    t_start: Any = None
    t_end: Any = None
    direction: str = struct.field(pytree_node=False, default="generate")
    max_steps: int = struct.field(pytree_node=False, default=4096)

    def __post_init__(self):
        set_choice(self, "direction", DIRECTIONS)
        check_int_range("max_steps", self.max_steps, 1, MAX_TIMESTEPS)
        check_knob(self, "rtol", low=0.0, low_open=True)
        check_knob(self, "atol", low=0.0, low_open=True)
        generate = self.direction == "generate"
        for field, default in (("t_start", 1.0), ("t_end", 0.0)):
            if getattr(self, field) is None:
                object.__setattr__(self, field, default if generate else 1.0 - default)
            check_number(field, getattr(self, field), low=0.0, high=1.0, placeholders=True)
        t0, t1 = concrete_value(self.t_start), concrete_value(self.t_end)
        if t0 is not None and t1 is not None and t0.ndim == t1.ndim == 0:
            if (t0 <= t1) if generate else (t0 >= t1):
                rel = ">" if generate else "<"
                raise ValueError(
                    f"t_start={float(t0)}, t_end={float(t1)}: direction={self.direction!r} "
                    f"needs t_start {rel} t_end (generate runs t: 1 -> 0, invert 0 -> 1)"
                )


@struct.dataclass
class AdaptiveOutput:
    """Result of :func:`solve_adaptive`.

    Attributes:
      samples: ``[B, ...]`` state at ``t_end`` (in the input's dtype); where the solve
        failed, the state where diffrax stopped.
      result_code: int32 scalar index into :data:`RESULT_NAMES` (0: successful; -1: a
        result this table does not name).
      succeeded: bool scalar, diffrax's ``is_successful``.
      all_finite: bool scalar, every entry of ``samples`` is finite.
      num_steps: int32 attempted steps (diffrax's ``stats["num_steps"]``).
      num_accepted_steps: int32 accepted steps.
      num_rejected_steps: int32 rejected steps.
      nfe: int32 model evaluations ``1 + 6 num_steps`` (see the module docstring).
    """

    samples: Any
    result_code: Any
    succeeded: Any
    all_finite: Any
    num_steps: Any
    num_accepted_steps: Any
    num_rejected_steps: Any
    nfe: Any

    @property
    def result(self) -> str:
        """Name of diffrax's result (host only), e.g. ``successful``, ``max_steps_reached``."""
        code = int(self.result_code)
        return RESULT_NAMES[code] if code >= 0 else "unknown"

    @property
    def message(self) -> str:
        """The message diffrax gives for the result (host only; empty on success)."""
        code = int(self.result_code)
        return diffrax.RESULTS[getattr(diffrax.RESULTS, RESULT_NAMES[code])] if code >= 0 else ""


def solve_adaptive(
    method,
    schedule,
    model_fn,
    x,
    *,
    context=None,
    uncond_context=None,
    guidance_scale=1.0,
    guidance_rescale=0.0,
    debug: bool = False,
) -> AdaptiveOutput:
    """Integrate ``dx/dt = v(x, t)`` from ``t_start`` to ``t_end`` with adaptive Dopri5.

    Args:
      method: an :class:`AdaptiveODE`.
      schedule: a :class:`~jaxdiff.schedules.flow.FlowSchedule`; the model is told
        ``t * schedule.num_train_timesteps``.
      model_fn: ``model_fn(x, t, context) -> velocity`` with ``x`` ``[B, ...]`` and ``t``
        ``[B]``; hashable (static).
      x: ``[B, ...]`` state at ``t_start`` (noise to generate, data to invert).
      context: ``[B, ...]`` conditioning for CFG, or None (the model gets None).
      uncond_context: ``[B, ...]`` unconditional context; zeros when None.
      guidance_scale: traced CFG weight ``w``: ``v_u + w (v_c - v_u)``.
      guidance_rescale: traced rescale in ``[0, 1]`` (see :mod:`jaxdiff.samplers.guidance`).
      debug: raise when the solve failed or the result is not finite (static; needs
        concrete results, so call it outside ``jit``).

    Returns:
      An :class:`AdaptiveOutput`.

    Raises:
      TypeError: ``method`` / ``schedule`` of the wrong type, ``x`` not a floating array,
        ``model_fn`` not a hashable callable, non-numeric guidance, non-bool ``debug``.
      ValueError: shapes that do not fit; ``debug=True`` under a transformation.
      RuntimeError: ``debug=True`` and diffrax reported a failure (its name and message).
      FloatingPointError: ``debug=True`` and ``samples`` has NaN or inf entries.
    """
    if not isinstance(method, AdaptiveODE):
        raise TypeError(f"method must be an AdaptiveODE, got {type(method).__name__}")
    check_flow_schedule(schedule)
    x = check_latents(x, "x (the initial state)")
    model_fn = check_model_fn(model_fn)
    check_number("guidance_scale", guidance_scale)
    check_number("guidance_rescale", guidance_rescale, low=0.0, high=1.0)
    check_bool("debug", debug)
    uncond_context = check_contexts(context, uncond_context, x.shape[0])
    out = _solve(
        method,
        schedule,
        x,
        context,
        uncond_context,
        guidance_scale,
        guidance_rescale,
        model_fn=model_fn,
    )
    if debug:
        _raise_on_failure(out, method)
    return out


def _raise_on_failure(out: AdaptiveOutput, method: AdaptiveODE) -> None:
    if not is_concrete(out.result_code):
        raise ValueError(
            "debug=True needs concrete results: call solve_adaptive outside jit/vmap, or "
            "use debug=False and read succeeded / result"
        )
    if not bool(out.succeeded):
        raise RuntimeError(
            f"adaptive Dopri5 solve failed: diffrax result {out.result!r} ({out.message}) "
            f"after {int(out.num_steps)} steps ({int(out.num_accepted_steps)} accepted, "
            f"{int(out.num_rejected_steps)} rejected; max_steps={method.max_steps}). Raise "
            "max_steps or loosen rtol/atol"
        )
    if not bool(out.all_finite):
        raise FloatingPointError("adaptive Dopri5 solve returned non-finite samples")


@functools.partial(jax.jit, static_argnames=("model_fn",))
def _solve(
    method, schedule, x, context, uncond_context, guidance_scale, guidance_rescale, *, model_fn
):
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    velocity = guided_model(model_fn, context, uncond_context, guidance_scale, guidance_rescale)
    batch = x.shape[0]

    def vector_field(t, y, args):
        v = velocity(y, jnp.full((batch,), schedule.timestep(t), dtype))
        check_same_shape(v.shape, y.shape)
        return v.astype(dtype)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax.Dopri5(),
        jnp.asarray(method.t_start, dtype),
        jnp.asarray(method.t_end, dtype),
        None,
        x.astype(dtype),
        stepsize_controller=diffrax.PIDController(rtol=method.rtol, atol=method.atol),
        max_steps=method.max_steps,
        throw=False,
    )
    code = jnp.asarray(-1, jnp.int32)
    for index, name in enumerate(RESULT_NAMES):
        code = jnp.where(sol.result == getattr(diffrax.RESULTS, name), index, code)
    samples = sol.ys[0]
    num_steps = jnp.asarray(sol.stats["num_steps"], jnp.int32)
    return AdaptiveOutput(
        samples=samples.astype(x.dtype),
        result_code=code,
        succeeded=diffrax.is_successful(sol.result),
        all_finite=jnp.all(jnp.isfinite(samples)),
        num_steps=num_steps,
        num_accepted_steps=jnp.asarray(sol.stats["num_accepted_steps"], jnp.int32),
        num_rejected_steps=jnp.asarray(sol.stats["num_rejected_steps"], jnp.int32),
        nfe=1 + (DOPRI5_STAGES - 1) * num_steps,
    )
