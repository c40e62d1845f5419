"""The one sampling driver: a whole run is one ``lax.scan`` under one ``jit``.

A sampling *method* is a hashable config object (a ``flax.struct`` dataclass whose
structural fields are static and whose numeric knobs, such as ``eta``, are traced)
with four pure functions:

* ``plan(schedule) -> Plan``: everything the loop needs, precomputed as arrays with one
  row per model call (``K`` rows), the model timesteps and ``init_noise_sigma``;
* ``init_state(x, plan) -> state``: the scan carry besides ``x`` (multistep history...);
* ``scale_model_input(x, step) -> x_in``: the model input at this call;
* ``step(key, state, x, model_output, step) -> (state, x)``: one update.

``step`` is one row of ``plan.steps``. Each scan iteration makes exactly one (batched)
model call, so the number of function evaluations is ``K``, known before running.
Heun-type methods interleave their two stages as consecutive rows.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.experimental import checkify

from jaxdiff.samplers.guidance import check_contexts, guided_model

__all__ = ["Plan", "SampleOutput", "check_latents", "sample", "step_keys"]


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
      all_finite: bool scalar: every model output was finite.
      first_nonfinite_step: int32 scalar index of the first non-finite model output,
        ``-1`` when all were finite.
      nfe: number of model calls (static; a batched CFG call counts once).
    """

    samples: Any
    trajectory: Any
    all_finite: Any
    first_nonfinite_step: Any
    nfe: int = struct.field(pytree_node=False)


def check_latents(noise):
    """``noise`` as a JAX array; ``TypeError``/``ValueError`` unless floating with a batch axis."""
    noise = jnp.asarray(noise)
    if not jnp.issubdtype(noise.dtype, jnp.floating):
        raise TypeError(f"latents must be a floating array, got dtype {noise.dtype}")
    if noise.ndim < 1:
        raise ValueError(f"latents must have a batch axis, got shape {noise.shape}")
    return noise


def step_keys(key, num_model_calls: int):
    """The per-call PRNG keys the driver uses: ``jax.random.split(key, K)``."""
    return jax.random.split(key, num_model_calls)


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
      key: PRNG key; split into one key per model call (:func:`step_keys`).
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
    """
    noise = check_latents(noise)
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
    denoise = guided_model(model_fn, context, uncond_context, guidance_scale, guidance_rescale)
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
    (_, x, first_bad), traj = jax.lax.scan(body, carry, xs, unroll=unroll)
    return SampleOutput(
        samples=x.astype(noise.dtype),
        trajectory=None if traj is None else traj.astype(noise.dtype),
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
