"""``AdvancedSamplingManager``: the original module's facade over the pure samplers.

The facade builds a schedule pytree and a method config from
:class:`~jaxdiff.schedules.config.NoiseSchedulerConfig` and
:class:`~jaxdiff.samplers.config.SamplingConfig`, compiles one XLA program per
(method structure, shapes) ahead of time, and times the run separately from the
compilation. The model is a JAX callable ``model(x, t, context)``; it receives the
latents' layout (NCHW or NHWC, any rank) untouched, ``t`` as the ``[B]`` float32
training timestep, and ``context=None`` when no prompt is given.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._validation import check_bool, check_real
from jaxdiff.samplers.config import SamplingConfig, SamplingMethod, build_method
from jaxdiff.samplers.driver import check_latents, check_model_fn, sample
from jaxdiff.samplers.guidance import check_contexts
from jaxdiff.samplers.noise import check_keys
from jaxdiff.schedules.config import NoiseSchedulerConfig, NoiseScheduleType, build_schedule

__all__ = [
    "SamplingResult",
    "AdvancedSamplingManager",
    "create_advanced_sampling_manager",
    "create_sampler",
]


@dataclasses.dataclass(repr=False)
class SamplingResult:
    """Outcome of one sampling run.

    Attributes:
      samples: array with the layout, shape and dtype of the latents.
      processing_time: seconds the compiled run took (compilation excluded).
      num_function_evals: model calls per run (a batched CFG call counts once).
      compile_time: seconds spent compiling (0.0 when the program was cached).
      method: the method's name.
      num_inference_steps: denoising steps.
      trajectory: ``[K, *latents.shape]`` states after each model call, or None.
      all_finite: every model output was finite.
      first_nonfinite_step: index of the first non-finite model output, or -1.
      errors: human-readable problems found during the run (empty when none).
    """

    samples: Any
    processing_time: float
    num_function_evals: int
    compile_time: float = 0.0
    method: str = ""
    num_inference_steps: int = 0
    trajectory: Any = None
    all_finite: bool = True
    first_nonfinite_step: int = -1
    errors: list = dataclasses.field(default_factory=list)

    def __repr__(self) -> str:
        """One line of metadata: arrays by dtype and shape, never their entries."""
        fields = [
            f"method={self.method!r}",
            f"samples={_array_summary(self.samples)}",
            f"nfe={self.num_function_evals}",
            f"processing_time={self.processing_time:.4g}s",
            f"compile_time={self.compile_time:.4g}s",
            f"all_finite={self.all_finite}",
        ]
        if self.trajectory is not None:
            fields.append(f"trajectory={_array_summary(self.trajectory)}")
        if self.errors:
            fields.append(f"errors={len(self.errors)}")
        return f"SamplingResult({', '.join(fields)})"


def _array_summary(value) -> str:
    """``float32[2, 4, 8, 8]`` for an array (``None`` for None)."""
    if value is None:
        return "None"
    dtype = getattr(value, "dtype", None)
    kind = type(value).__name__ if dtype is None else np.dtype(dtype).name
    return f"{kind}[{', '.join(str(d) for d in np.shape(value))}]"


def _check_config(field, value, cls):
    """``value``, or ``cls()`` for None; ``TypeError`` for anything but a ``cls``."""
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise TypeError(f"{field} must be a {cls.__name__} or None, got {type(value).__name__}")
    return value


def _check_array(field, value):
    # Finiteness is checked inside the compiled program (no host copy of the latents).
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"{field} must be a floating-point array, got dtype {value.dtype}")
    return value


class AdvancedSamplingManager:
    """Unified sampler: any schedule with any method, compiled into one program.

    Args:
      scheduler_config: the noise schedule (defaults to the original's defaults).
      sampling_config: the method and its options.
    """

    def __init__(
        self,
        scheduler_config: NoiseSchedulerConfig | None = None,
        sampling_config: SamplingConfig | None = None,
    ):
        self.scheduler_config = _check_config(
            "scheduler_config", scheduler_config, NoiseSchedulerConfig
        )
        self.sampling_config = _check_config("sampling_config", sampling_config, SamplingConfig)
        self.scheduler = build_schedule(self.scheduler_config)
        self.method = build_method(self.scheduler_config, self.sampling_config)
        jax.eval_shape(self.method.plan, self.scheduler)  # validate now, not at first sample
        # device copies, so a call transfers nothing but the latents and two scalars
        self._schedule = jax.device_put(self.scheduler)
        self._method = jax.device_put(self.method)
        self._programs: dict = {}

    def get_schedule_info(self) -> dict:
        """The schedule's summary (see ``DiscreteSchedule.get_schedule_info``)."""
        return self.scheduler.get_schedule_info()

    def sample(
        self,
        model,
        latents,
        prompt_embeds=None,
        negative_prompt_embeds=None,
        *,
        key,
        guidance_scale=None,
        return_trajectory: bool = False,
        debug: bool = False,
        unroll: int | bool = 1,
    ) -> SamplingResult:
        """Sample from ``model`` starting at unit-variance ``latents``.

        Args:
          model: ``model(x, t, context) -> prediction`` (JAX, traceable, hashable).
          latents: ``[B, ...]`` unit-variance noise; scaled by the method's initial sigma.
          prompt_embeds: ``[B, ...]`` conditioning; None disables guidance.
          negative_prompt_embeds: unconditional context (zeros of the prompt's shape if None).
          key: a ``jax.random.key`` (legacy ``uint32[2]`` keys accepted), or ``[B]``
            per-example keys: then sample ``i`` depends only on ``key[i]`` and
            ``latents[i]``, whatever the batch (see :mod:`jaxdiff.samplers.noise`).
          guidance_scale: overrides the config's value (traced: no recompilation).
          return_trajectory: keep the state after each model call.
          debug: raise ``FloatingPointError`` on a non-finite model output.
          unroll: ``lax.scan`` unrolling; ``True`` removes the per-step loop overhead on
            GPU at the price of a longer compilation (see :func:`jaxdiff.samplers.sample`).
        """
        return self._run(
            self._method,
            self.sampling_config.method.value,
            model,
            latents,
            prompt_embeds,
            negative_prompt_embeds,
            key=key,
            guidance_scale=guidance_scale,
            return_trajectory=return_trajectory,
            debug=debug,
            unroll=unroll,
        )

    def compare_sampling_methods(
        self,
        model,
        latents,
        prompt_embeds=None,
        negative_prompt_embeds=None,
        methods=None,
        *,
        key,
        **sample_kwargs,
    ) -> dict[str, SamplingResult]:
        """Run several methods from the same latents and key.

        ``methods`` defaults to every :class:`SamplingMethod` usable on this schedule.
        Returns ``{method name: SamplingResult}`` in the order given.
        """
        if methods is None:
            methods = list(SamplingMethod)
        results = {}
        for method in methods:
            method = SamplingMethod.parse(method)
            config = dataclasses.replace(self.sampling_config, method=method)
            obj = jax.device_put(build_method(self.scheduler_config, config))
            results[method.value] = self._run(
                obj,
                method.value,
                model,
                latents,
                prompt_embeds,
                negative_prompt_embeds,
                key=key,
                **sample_kwargs,
            )
        return results

    def _run(
        self,
        method,
        name,
        model,
        latents,
        prompt_embeds,
        negative_prompt_embeds,
        *,
        key,
        guidance_scale=None,
        return_trajectory=False,
        debug=False,
        unroll=1,
    ) -> SamplingResult:
        latents = check_latents(latents)
        key = check_keys(key, latents.shape[0])
        model = check_model_fn(model, "model")
        if prompt_embeds is not None:
            prompt_embeds = _check_array("prompt_embeds", prompt_embeds)
        if negative_prompt_embeds is not None:
            negative_prompt_embeds = _check_array("negative_prompt_embeds", negative_prompt_embeds)
        uncond = check_contexts(
            prompt_embeds,
            negative_prompt_embeds,
            latents.shape[0],
            names=("prompt_embeds", "negative_prompt_embeds"),
        )
        scale = self.sampling_config.guidance_scale if guidance_scale is None else guidance_scale
        scale = check_real("guidance_scale", scale)
        for field, flag in (("return_trajectory", return_trajectory), ("debug", debug)):
            check_bool(field, flag)
        guidance = np.array([scale, self.sampling_config.guidance_rescale], np.float32)
        dyn = (key, method, self._schedule, latents, prompt_embeds, uncond, guidance)
        statics = {"model": model, "trajectory": return_trajectory, "unroll": unroll}

        compile_time = 0.0
        if debug:
            start = time.perf_counter()
            out, status = _program(*dyn, debug=True, **statics)
        else:
            leaves, treedef = jax.tree.flatten(dyn)
            sig = (
                model,
                return_trajectory,
                unroll,
                treedef,
                tuple((np.shape(x), x.dtype) for x in leaves),
            )
            program = self._programs.get(sig)
            if program is None:
                program = jax.jit(functools.partial(_program, debug=False, **statics))
                start = time.perf_counter()
                # Compiling ahead of time fills the jit cache, so the timed call below runs
                # the cached executable through jit's C++ dispatch path.
                program.lower(*dyn).compile()
                compile_time = time.perf_counter() - start
                self._programs[sig] = program
            start = time.perf_counter()
            out, status = program(*dyn)
        jax.block_until_ready(out.samples)
        elapsed = time.perf_counter() - start
        first_bad, *inputs_finite = (int(v) for v in np.asarray(status))  # one device read
        for field, ok in zip(_INPUT_FIELDS, inputs_finite, strict=True):
            if not ok:
                raise ValueError(f"{field} has non-finite entries (NaN or inf); all must be finite")
        errors = [] if first_bad < 0 else [f"non-finite model output at model call {first_bad}"]
        return SamplingResult(
            samples=out.samples,
            processing_time=elapsed,
            num_function_evals=out.nfe,
            compile_time=compile_time,
            method=name,
            num_inference_steps=self.sampling_config.num_inference_steps,
            trajectory=out.trajectory,
            all_finite=first_bad < 0,
            first_nonfinite_step=first_bad,
            errors=errors,
        )


_INPUT_FIELDS = ("latents", "prompt_embeds", "negative_prompt_embeds")


def _all_finite(value):
    return jnp.ones((), bool) if value is None else jnp.all(jnp.isfinite(value))


def _program(
    key, method, schedule, latents, context, uncond, guidance, *, model, trajectory, debug, unroll
):
    """The whole compiled run: ``(SampleOutput, status)``.

    ``guidance`` is ``[2]`` float32: the CFG scale and the guidance rescale factor.
    ``status`` is ``[4]`` int32 (read back in one transfer): the first non-finite model
    call (-1 if none), then 1/0 for whether latents, prompt and negative prompt are finite.
    """
    out = sample(
        key,
        method,
        schedule,
        model,
        latents,
        context=context,
        uncond_context=uncond,
        guidance_scale=guidance[0],
        guidance_rescale=guidance[1],
        return_trajectory=trajectory,
        debug=debug,
        unroll=unroll,
    )
    inputs = [_all_finite(latents), _all_finite(context), _all_finite(uncond)]
    status = jnp.stack([out.first_nonfinite_step, *(f.astype(jnp.int32) for f in inputs)])
    return out, status


def _split_kwargs(kwargs):
    sched_names = {f.name for f in dataclasses.fields(NoiseSchedulerConfig)}
    samp_names = {f.name for f in dataclasses.fields(SamplingConfig)}
    unknown = sorted(set(kwargs) - sched_names - samp_names)
    if unknown:
        raise TypeError(
            f"unknown configuration fields {unknown}; allowed: {sorted(sched_names | samp_names)}"
        )
    sched = {k: v for k, v in kwargs.items() if k in sched_names}
    samp = {k: v for k, v in kwargs.items() if k in samp_names}
    return sched, samp


def create_advanced_sampling_manager(
    schedule_type=NoiseScheduleType.LINEAR, method=SamplingMethod.DDPM, **kwargs
):
    """Manager from a schedule type, a method and any config fields as keywords."""
    sched, samp = _split_kwargs(kwargs)
    return AdvancedSamplingManager(
        NoiseSchedulerConfig(schedule_type=schedule_type, **sched),
        SamplingConfig(method=method, **samp),
    )


def create_sampler(schedule_type=NoiseScheduleType.LINEAR, method=SamplingMethod.DDPM, **kwargs):
    """A ready sampler (an :class:`AdvancedSamplingManager`) with ``.sample(...)``.

    Example::

        sampler = create_sampler("cosine", "ddim", num_inference_steps=50, eta=0.0)
        result = sampler.sample(model, latents, key=jax.random.key(0))
    """
    return create_advanced_sampling_manager(schedule_type, method, **kwargs)
