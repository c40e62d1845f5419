"""One compiled sampling run per structure, shared by the FastSB-OT and ATLAS facades.

:func:`run_program` is the whole run a facade compiles: latents from the key, the
driver's one ``lax.scan`` (:func:`jaxdiff.samplers.sample`), optional final clipping and
the NaN guard. :class:`ProgramCache` compiles it once per static configuration (shape,
dtype, model, progress, clipping) and pytree structure, times it on request
(:class:`RunProfile`) and reuses it for every later call with new numbers (key, traced
method fields, schedule parameters, reference samples).
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._keys import as_key
from jaxdiff._validation import check_finite_array, check_int_range
from jaxdiff.samplers.driver import check_latents
from jaxdiff.samplers.driver import sample as driver_sample

__all__ = [
    "ProgramCache",
    "RunProfile",
    "check_reference",
    "check_shape",
    "run_program",
    "check_one_key",
    "summary_line",
]


@dataclasses.dataclass(frozen=True)
class RunProfile:
    """Timing and memory of one run (a facade's ``profile=True``).

    Attributes:
      compile_seconds: tracing and compiling the run's program (0.0 when this solver had
        compiled it for the same shapes and structure already).
      run_seconds: running it, until the samples are ready.
      seconds_per_step: ``run_seconds / num_steps``, an average: the steps run inside one
        ``lax.scan`` and are not timed one by one.
      program_bytes: arguments + outputs + temporaries of the compiled program (XLA's
        memory analysis, CPU included), or None where the backend has none.
      peak_bytes_in_use: the device allocator's peak since the process started, or None
        where the backend does not report it (CPU).
    """

    compile_seconds: float
    run_seconds: float
    seconds_per_step: float
    program_bytes: int | None
    peak_bytes_in_use: int | None


def run_program(key, method, schedule, reference, *, shape, dtype, model_fn, progress, clip):
    """One whole run: latents from ``key``, the driver's scan, the NaN guard.

    ``reference`` joins ``method`` here, inside the trace: the methods check a reference
    that is not a ``jax.Array`` when they are built, which the placeholders of
    ahead-of-time lowering are not.

    Returns:
      ``(out, noise, samples, finite)``: the driver's ``SampleOutput``, the ``[*shape]``
      latents in ``dtype``, the (clipped to ``[-1, 1]`` if ``clip``) samples, and whether
      every model output and sample was finite.
    """
    if reference is not None:
        method = method.replace(reference=reference)
    noise_key, run_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, shape, jnp.float32).astype(dtype)
    out = driver_sample(run_key, method, schedule, model_fn, noise, progress=progress)
    samples = jnp.clip(out.samples, -1, 1) if clip else out.samples
    finite = out.all_finite & jnp.all(jnp.isfinite(out.samples))
    return out, noise, samples, finite


def check_shape(shape) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints ``(B, ...)``, or raise naming the entry."""
    if not isinstance(shape, tuple | list) or not shape:
        raise TypeError(f"shape must be a non-empty tuple of ints (batch, ...), got {shape!r:.80}")
    for i, n in enumerate(shape):
        check_int_range(f"shape[{i}]", n, 1)
    return tuple(int(n) for n in shape)


def check_reference(reference, shape: tuple[int, ...]):
    """``reference`` as a finite floating ``[R, *shape[1:]]`` array, or raise naming it."""
    reference = check_latents(reference, "reference")
    if reference.shape[1:] != shape[1:]:
        raise ValueError(
            f"reference must have shape [R, {', '.join(map(str, shape[1:]))}] (shape[1:] of "
            f"the samples), got reference.shape={reference.shape}"
        )
    check_finite_array("reference", reference)
    return reference


def check_one_key(key):
    """``key`` as one typed ``jax.random.key`` (shape ``()``), or raise."""
    key = as_key(key)
    if key.ndim != 0:
        raise ValueError(f"key must be one key (shape ()), got a key array of shape {key.shape}")
    return key


def summary_line(prefix: str, result, num_steps: int) -> str:
    """A facade's summary: ``prefix``, sample moments, finiteness, OT health, timing."""
    x = np.asarray(result.samples, np.float32)
    line = (
        f"{prefix}, {result.nfe} model calls; samples mean {x.mean():.4g} std {x.std():.4g}; "
        f"{'all finite' if bool(result.all_finite) else 'NON-FINITE values'}"
    )
    if result.ot_converged is not None:
        eps = np.asarray(result.ot_epsilon)
        line += (
            f"; OT converged at {int(np.sum(result.ot_converged))}/{num_steps} steps, "
            f"epsilon {eps.min():.3g}..{eps.max():.3g}"
        )
    if result.profile is not None:
        p = result.profile
        line += f"; compile {p.compile_seconds:.2f} s, run {p.run_seconds:.3f} s"
    return line


class ProgramCache:
    """Compiled :func:`run_program` per static configuration and argument structure."""

    def __init__(self):
        self._programs: dict = {}

    def run(self, dyn: tuple, statics: dict, num_steps: int, *, profile: bool):
        """Run ``run_program(*dyn, **statics)``, compiling on first use.

        Returns:
          ``(outputs, profile)``: :func:`run_program`'s outputs and a :class:`RunProfile`
          when ``profile``, else None.
        """
        leaves, treedef = jax.tree.flatten(dyn)
        sig = (tuple(statics.items()), treedef)
        sig += (tuple((np.shape(x), getattr(x, "dtype", type(x))) for x in leaves),)
        compile_seconds = 0.0
        if sig not in self._programs:
            program = jax.jit(functools.partial(run_program, **statics))
            start = time.perf_counter()
            compiled = program.lower(*dyn).compile()  # fills the jit cache: calls reuse it
            compile_seconds = time.perf_counter() - start
            self._programs[sig] = (program, _program_bytes(compiled.memory_analysis()))
        program, program_bytes = self._programs[sig]
        if not profile:
            return program(*dyn), None
        start = time.perf_counter()
        outputs = jax.block_until_ready(program(*dyn))
        run_seconds = time.perf_counter() - start
        return outputs, RunProfile(
            compile_seconds=compile_seconds,
            run_seconds=run_seconds,
            seconds_per_step=run_seconds / num_steps,
            program_bytes=program_bytes,
            peak_bytes_in_use=(jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use"),
        )


def _program_bytes(memory) -> int | None:
    """Arguments + outputs + temporaries - aliased bytes of a compiled program, or None."""
    if memory is None:  # a backend without XLA's memory analysis
        return None
    used = memory.argument_size_in_bytes + memory.output_size_in_bytes
    return int(used + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
