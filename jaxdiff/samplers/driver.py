"""The one sampling driver: a whole run is one ``lax.scan`` under one ``jit``.

A sampling *method* is a hashable config object (a ``flax.struct`` dataclass whose
structural fields are static and whose numeric knobs, such as ``eta``, are traced)
with four pure functions:

* ``plan(schedule) -> Plan``: everything the loop needs, precomputed as arrays with one
  row per model call (``K`` rows), the model timesteps and ``init_noise_sigma``;
* ``init_state(x, plan) -> state``: the scan carry besides ``x`` (multistep history...);
* ``scale_model_input(x, step) -> x_in``: the model input at this call;
* ``step(key, state, x, model_output, step) -> (state, x)``: one update; its noise
  comes from ``key`` through :func:`jaxdiff.samplers.noise.normal_like`.

A method may also define ``check_model_output(output_shape, x_shape)`` (raising at
trace time) when its model output is not shaped like the model input (DDPM's learned
variances); by default the two shapes must be equal (:func:`check_same_shape`).

``step`` is one row of ``plan.steps``. Each scan iteration makes exactly one (batched)
model call, so the number of function evaluations is ``K``, known before running.
Heun-type methods interleave their two stages as consecutive rows.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.experimental import checkify

from jaxdiff._validation import check_bool
from jaxdiff.samplers.guidance import check_contexts, guided_model
from jaxdiff.samplers.noise import check_keys, step_keys
from jaxdiff.schedules.checks import check_number

__all__ = [
    "Plan",
    "SampleOutput",
    "check_latents",
    "check_model_fn",
    "check_same_shape",
    "sample",
    "step_keys",
]


@struct.dataclass
class Plan:
    """Precomputed schedule of one sampling run.

    Attributes:
      timesteps: ``[K]`` model timestep of each model call (training-timestep units for
        discrete schedules, continuous time for continuous ones).
      steps: pytree of arrays with leading axis ``K``; row ``k`` goes to ``step``.
      init_noise_sigma: scalar standard deviation of the initial latents.
    """

    timesteps: Any
    steps: Any
    init_noise_sigma: Any

    @property
    def num_model_calls(self) -> int:
        """``K``: model calls per run (static)."""
        return self.timesteps.shape[0]


@struct.dataclass
class SampleOutput:
    """Result of :func:`sample`.

    Attributes:
      samples: ``[B, ...]`` final samples, in the latents' dtype.
      trajectory: ``[K, B, ...]`` state after each model call, or None.
      state: the method's scan carry after the last model call (``init_state``'s
        pytree: multistep history, per-step statistics a method accumulates ...).
      all_finite: bool scalar: every model output was finite.
      first_nonfinite_step: int32 scalar index of the first non-finite model output,
        ``-1`` when all were finite.
      nfe: number of model calls (static; a batched CFG call counts once).
    """

    samples: Any
    trajectory: Any
    state: Any
    all_finite: Any
    first_nonfinite_step: Any
    nfe: int = struct.field(pytree_node=False)


def check_latents(noise, field: str = "latents"):
    """``noise`` as a JAX array; ``TypeError``/``ValueError`` unless floating ``[B, ...]``.

    ``B`` must be at least 1. ``field`` names the argument in the message.
    """
    if not isinstance(noise, jax.Array | np.ndarray | np.generic):
        raise TypeError(
            f"{field} must be a floating array [batch, ...], got {type(noise).__name__}"
        )
    noise = jnp.asarray(noise)
    if not jnp.issubdtype(noise.dtype, jnp.floating):
        raise TypeError(f"{field} must be a floating array, got dtype {noise.dtype}")
    if noise.ndim < 1 or noise.shape[0] < 1:
        raise ValueError(
            f"{field} must have a non-empty batch axis [batch, ...], got shape {noise.shape}"
        )
    return noise


def check_model_fn(model_fn, field: str = "model_fn"):
    """Return ``model_fn`` if it is callable and hashable (it is a static argument)."""
    if isinstance(model_fn, str | bytes) or not callable(model_fn):
        raise TypeError(
            f"{field} must be a callable model(x, t, context) -> prediction, got "
            f"{type(model_fn).__name__}: {model_fn!r:.80}"
        )
    try:
        hash(model_fn)
    except TypeError:
        raise TypeError(
            f"{field} must be hashable (it is a static argument of the compiled run); got an "
            f"unhashable {type(model_fn).__name__}. Bind parameters with jaxdiff.nets.bind "
            "or a functools.partial over hashable values"
        ) from None
    return model_fn


def _check_unroll(unroll):
    if isinstance(unroll, bool):
        return unroll
    if not isinstance(unroll, int | np.integer):
        raise TypeError(f"unroll must be a bool or an int >= 1, got {type(unroll).__name__}")
    if unroll < 1:
        raise ValueError(f"unroll={unroll} is not allowed: unroll must be True, False or >= 1")
    return int(unroll)


def check_same_shape(output_shape, x_shape) -> None:
    """The default model-output check: ``model_fn`` returns the model input's shape."""
    if tuple(output_shape) != tuple(x_shape):
        raise ValueError(
            f"model_fn output has shape {tuple(output_shape)}, but the sampler needs the "
            f"model input's shape {tuple(x_shape)}"
        )


def _checked_output(model_fn, check):
    """``model_fn`` whose output shape is checked when it is traced (the first call)."""

    def call(x, t, context):
        out = model_fn(x, t, context)
        if not hasattr(out, "shape"):
            raise TypeError(f"model_fn must return an array, got {type(out).__name__}")
        check(tuple(out.shape), tuple(x.shape))
        return out

    return call


def sample(
    key,
    method,
    schedule,
    model_fn,
    noise,
    *,
    context=None,
    uncond_context=None,
    guidance_scale=1.0,
    guidance_rescale=0.0,
    return_trajectory: bool = False,
    debug: bool = False,
    progress: bool = False,
    unroll: int | bool = 1,
) -> SampleOutput:
    """Run ``method`` on ``schedule`` from unit-variance ``noise``.

    Args:
      key: one PRNG key, or ``[B]`` per-example keys (typed, or legacy ``uint32``).
        Split once into one key per model call (:func:`step_keys`). With per-example
        keys, sample ``i`` depends on ``key[i]`` and ``noise[i]`` only: it is the same
        whatever else is in its batch and whatever the batch size (see
        :mod:`jaxdiff.samplers.noise`).
      method: a sampling method config (see module docstring).
      schedule: the schedule pytree the method plans on.
      model_fn: ``model_fn(x, t, context) -> prediction``; ``x`` is the scaled model input
        ``[B, ...]`` (float32), ``t`` is ``[B]`` float32. Must be hashable (static).
      noise: ``[B, ...]`` unit-variance latents; they are scaled by the method's
        ``init_noise_sigma``. Any layout: the model receives this layout untouched.
      context: ``[B, ...]`` conditioning, or None for no guidance (model gets None).
      uncond_context: ``[B, ...]`` unconditional context for CFG; zeros when None.
      guidance_scale: traced CFG weight.
      guidance_rescale: traced guidance rescale factor in ``[0, 1]``.
      return_trajectory: also return the state after every model call (static).
      debug: raise ``FloatingPointError`` (through ``checkify``) on a non-finite model
        output instead of only reporting it (static).
      progress: show a progress bar through ``jax.debug.callback`` (static).
      unroll: ``lax.scan`` unrolling (static): ``True`` compiles the run as straight-line
        code (no per-step loop overhead on GPU, longer compilation), an int unrolls that
        many steps per loop iteration.

    Returns:
      A :class:`SampleOutput`.

    Raises:
      TypeError: ``key`` is not a key; ``noise`` is not a floating array; ``model_fn``
        is not callable or not hashable; ``guidance_scale`` / ``guidance_rescale`` are
        not numbers; a flag is not a bool.
      ValueError: shapes that do not fit (also a model output of the wrong shape, at
        trace time), ``guidance_rescale`` outside ``[0, 1]``, ``unroll < 1``.
    """
    noise = check_latents(noise, "noise (the initial latents)")
    key = check_keys(key, noise.shape[0])
    model_fn = check_model_fn(model_fn)
    check_number("guidance_scale", guidance_scale)
    check_number("guidance_rescale", guidance_rescale, low=0.0, high=1.0)
    for field, flag in (("return_trajectory", return_trajectory), ("debug", debug)):
        check_bool(field, flag)
    check_bool("progress", progress)
    unroll = _check_unroll(unroll)
    uncond_context = check_contexts(context, uncond_context, noise.shape[0])
    args = (key, method, schedule, noise, context, uncond_context, guidance_scale, guidance_rescale)
    statics = dict(
        model_fn=model_fn, trajectory=return_trajectory, progress=progress, unroll=unroll
    )
    if not debug:
        return _run(*args, debug=False, **statics)
    err, out = _checked_program(tuple(sorted(statics.items())))(*args)
    msg = err.get()
    if msg is not None:
        raise FloatingPointError(msg)
    return out


@functools.lru_cache(maxsize=64)
def _checked_program(statics: tuple):
    """Jitted, checkified run for one set of static arguments (cached)."""
    fn = functools.partial(_run, debug=True, **dict(statics))
    return jax.jit(checkify.checkify(fn, errors=checkify.user_checks))


@functools.partial(
    jax.jit, static_argnames=("model_fn", "trajectory", "debug", "progress", "unroll")
)
def _run(
    key,
    method,
    schedule,
    noise,
    context,
    uncond_context,
    guidance_scale,
    guidance_rescale,
    *,
    model_fn,
    trajectory,
    debug,
    progress,
    unroll,
):
    plan = method.plan(schedule)
    num_calls = plan.num_model_calls
    compute_dtype = jnp.promote_types(noise.dtype, jnp.float32)
    x = noise.astype(compute_dtype) * plan.init_noise_sigma
    checked = _checked_output(model_fn, getattr(method, "check_model_output", check_same_shape))
    denoise = guided_model(checked, context, uncond_context, guidance_scale, guidance_rescale)
    batch = x.shape[0]

    def body(carry, inputs):
        state, x, first_bad = carry
        step_key, t, step, index = inputs
        x_in = method.scale_model_input(x, step)
        out = denoise(x_in, jnp.full((batch,), t, dtype=jnp.float32)).astype(compute_dtype)
        finite = jnp.all(jnp.isfinite(out))
        if debug:
            checkify.check(finite, "non-finite model output at model call {i}", i=index)
        first_bad = jnp.where((first_bad < 0) & ~finite, index, first_bad)
        state, x = method.step(step_key, state, x, out, step)
        if progress:
            jax.debug.callback(_tick, index, num_calls, ordered=True)
        return (state, x, first_bad), (x if trajectory else None)

    carry = (method.init_state(x, plan), x, jnp.asarray(-1, jnp.int32))
    xs = (
        step_keys(key, num_calls),
        plan.timesteps,
        plan.steps,
        jnp.arange(num_calls, dtype=jnp.int32),
    )
    (state, x, first_bad), traj = jax.lax.scan(body, carry, xs, unroll=unroll)
    return SampleOutput(
        samples=x.astype(noise.dtype),
        trajectory=None if traj is None else traj.astype(noise.dtype),
        state=state,
        all_finite=first_bad < 0,
        first_nonfinite_step=first_bad,
        nfe=num_calls,
    )


_BARS: dict = {}


def _tick(index, total):
    from tqdm.auto import tqdm

    index, total = int(index), int(total)
    if index == 0:
        _BARS["bar"] = tqdm(total=total, desc="sampling", leave=False)
    bar = _BARS.get("bar")
    if bar is not None:
        bar.update(1)
        if index == total - 1:
            bar.close()
            _BARS.pop("bar", None)
