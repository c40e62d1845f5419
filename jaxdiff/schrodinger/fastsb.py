"""FastSB-OT's public names as a thin facade over :class:`~jaxdiff.schrodinger.method.BridgeMethod`.

The seed README's usage runs as written, with the key the house rules ask for::

    config = FastSBOTConfig(quality="balanced")
    schedule = make_schedule("cosine", num_timesteps=config.num_timesteps)
    solver = FastSBOTSolver(score_model, schedule, config=config)
    result = solver.sample((8, 4, 32, 32), key=jax.random.key(0), verbose=True)
    result.samples  # [8, 4, 32, 32]

Model contract: ``score_model(x, t)`` with ``x`` float32 ``[B, ...]`` (any layout, passed
untouched) and continuous ``t`` float32 ``[B]`` in ``[t_min, 1]`` (1 = noise) returns the
score ``grad log p_t(x)``, shaped like ``x``. A model with the attribute
``predicts_noise = True`` returns the noise ``eps`` instead (``x = alpha x0 + sigma eps``),
as does any model wrapped in :class:`NoisePredictorToScoreWrapper`. The model must be a
pure JAX function and hashable (a function, or an object hashed by identity such as
:func:`jaxdiff.nets.bind`'s ``BoundModel``): one compiled program per solver, shape and
dtype runs the whole sampling loop (one ``lax.scan``, :func:`jaxdiff.samplers.sample`).

Where jaxdiff departs from the original (``../shared/specs/fastsb-ot.md``):

* the base step is a textbook reverse step applied once, state in float32, no damping
  weight, no FFT blend, no final clip unless ``clip_samples`` (M1-M3, M13, M18: the
  original's ``sample()`` turns a data std of 0.3 into 1.215);
* ``sample`` takes ``key=`` (required keyword; DESIGN.md convention 3) and draws its own
  ``N(0, I)`` latents; ``timesteps`` defaults to ``config.num_timesteps`` uniform steps
  (the README's ``sample(shape, verbose=True)`` could not run: M15);
* the OT correction is per step toward user-given ``reference`` samples, and the
  Fisher-aware momentum is a kinetic Langevin corrector; both are opt-in
  (:mod:`~jaxdiff.schrodinger.fastsb_config`);
* :func:`make_schedule` maps the seed's names onto jaxdiff's VP schedules
  (:mod:`~jaxdiff.schrodinger.fastsb_models` says how they differ);
* no caches of scores or kernels (M16); :class:`PersistentKernelCache` is JAX's
  persistent compilation cache.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import struct

from jaxdiff._validation import check_bool
from jaxdiff.samplers.driver import check_model_fn
from jaxdiff.schrodinger.fastsb_cache import PersistentKernelCache
from jaxdiff.schrodinger.fastsb_check import SelfCheckReport, run_self_check
from jaxdiff.schrodinger.fastsb_config import FastSBOTConfig
from jaxdiff.schrodinger.fastsb_models import (
    NoisePredictorToScoreWrapper,
    ScoreModelFn,
    check_schedule,
    make_schedule,
)
from jaxdiff.schrodinger.runner import (
    ProgramCache,
    RunProfile,
    check_one_key,
    check_reference,
    check_shape,
    summary_line,
)

__all__ = [
    "FastSBOTConfig",
    "FastSBOTProfile",
    "FastSBOTResult",
    "FastSBOTSolver",
    "NoisePredictorToScoreWrapper",
    "PersistentKernelCache",
    "make_schedule",
]


#: The seed's name for :class:`~jaxdiff.schrodinger.runner.RunProfile` (``profile=True``).
FastSBOTProfile = RunProfile


@struct.dataclass
class FastSBOTResult:
    """Outcome of :meth:`FastSBOTSolver.sample`.

    Attributes:
      samples: ``[*shape]`` samples at ``t_min`` (bfloat16 with ``use_mixed_precision``,
        else float32).
      noise: ``[*shape]`` the latents ``x_1 ~ N(0, I)`` the run started from (in the
        samples' dtype): with ``samples`` the coupling the sampler made.
      timesteps: ``[N + 1]`` float32 step times, 1 down to ``t_min``.
      all_finite: bool, every model output and every sample was finite (the NaN guard).
      first_nonfinite_step: int32, the first model call with a non-finite output, or -1.
      ot_converged: ``[N]`` bool, Sinkhorn met ``ot_threshold`` at step ``i``; None when
        the OT correction is off.
      ot_epsilon: ``[N]`` float32, the absolute epsilon used per step (0 for sliced); None
        when off.
      ot_error: ``[N]`` float32, Sinkhorn's last L1 marginal error per step; None when off.
      profile: a :class:`FastSBOTProfile` with ``config.profile``, else None.
      nfe: model calls (static).
    """

    samples: Any
    noise: Any
    timesteps: Any
    all_finite: Any
    first_nonfinite_step: Any
    ot_converged: Any = None
    ot_epsilon: Any = None
    ot_error: Any = None
    profile: FastSBOTProfile | None = struct.field(pytree_node=False, default=None)
    nfe: int = struct.field(pytree_node=False, default=0)


class FastSBOTSolver:
    """FastSB-OT's solver: a score model, a schedule and a :class:`FastSBOTConfig`.

    Args:
      score_model: ``score_model(x, t)`` (see the module); with ``predicts_noise = True``
        it returns the noise.
      schedule: a :class:`~jaxdiff.schedules.continuous_base.ContinuousSchedule`
        (:func:`make_schedule`).
      config: a :class:`FastSBOTConfig` (default: the ``"balanced"`` preset).

    Raises:
      TypeError: a score model that is not callable or not hashable, a
        ``predicts_noise`` that is not a bool, a schedule or config of the wrong type.
    """

    def __init__(self, score_model, schedule, config: FastSBOTConfig | None = None):
        if not callable(score_model):
            raise TypeError(
                f"score_model must be callable as score_model(x, t) -> score, got "
                f"{type(score_model).__name__}"
            )
        check_model_fn(score_model, "score_model")
        predicts_noise = check_bool(
            "score_model.predicts_noise", getattr(score_model, "predicts_noise", False)
        )
        check_schedule(schedule)
        config = FastSBOTConfig() if config is None else config
        if not isinstance(config, FastSBOTConfig):
            raise TypeError(f"config must be a FastSBOTConfig, got {type(config).__name__}")
        self.score_model, self.schedule, self.config = score_model, schedule, config
        self.prediction_type = "epsilon" if predicts_noise else "score"
        self._model_fn = ScoreModelFn(score_model)
        self._programs = ProgramCache()

    def sample(self, shape, *, key, timesteps=None, reference=None, verbose=False):
        """Draw ``shape[0]`` samples of shape ``shape[1:]``.

        Args:
          shape: ``(B, ...)`` positive ints.
          key: a ``jax.random.key`` (legacy ``uint32[2]`` accepted; required keyword).
          timesteps: a strictly decreasing grid in ``[0, 1]``, at least 2 times (a final 0
            is ``t_min``), or None: ``config.num_timesteps`` uniform steps.
          reference: ``[R, *shape[1:]]`` data samples the OT correction pulls toward;
            required when ``config.use_ot_correction``, refused otherwise.
          verbose: show a progress bar over the model calls and print a summary line.

        Returns:
          A :class:`FastSBOTResult`.

        Raises:
          TypeError / ValueError: bad ``shape``, ``key``, ``timesteps`` or ``reference``,
            a score model returning the wrong shape, or an OT memory budget too small
            (``memory_limit_ot_mb``), at the first call.
        """
        shape = check_shape(shape)
        key = check_one_key(key)
        check_bool("verbose", verbose)
        reference = self._check_reference(reference, shape)
        method = self.config.bridge_method(self.prediction_type, timesteps)
        num_steps = method.validate(self.schedule)
        statics = {
            "shape": shape,
            "dtype": jnp.bfloat16 if self.config.use_mixed_precision else jnp.float32,
            "model_fn": self._model_fn,
            "progress": verbose,
            "clip": self.config.clip_samples,
        }
        dyn = (key, method, self.schedule, reference)
        (out, noise, samples, finite), profile = self._programs.run(
            dyn, statics, num_steps, profile=self.config.profile
        )
        ot_on = reference is not None
        result = FastSBOTResult(
            samples=samples,
            noise=noise,
            timesteps=method.time_grid(num_steps + 1),
            all_finite=finite,
            first_nonfinite_step=out.first_nonfinite_step,
            ot_converged=out.state["ot_converged"] if ot_on else None,
            ot_epsilon=out.state["ot_epsilon"] if ot_on else None,
            ot_error=out.state["ot_error"] if ot_on else None,
            profile=profile,
            nfe=out.nfe,
        )
        if verbose:
            print(self._summary(result, num_steps), flush=True)
        return result

    def self_check(self, key) -> SelfCheckReport:
        """Sinkhorn marginals, the closed-form Gaussian plan, Fisher vs float64, symmetry.

        See :mod:`jaxdiff.schrodinger.fastsb_check`; the transports run on the geometry
        this config's OT correction uses. ``report.passed`` is True when all pass.
        """
        return run_self_check(key, self.config.use_triton_kernels)

    def _check_reference(self, reference, shape):
        ot_on = self.config.use_ot_correction
        if reference is None:
            if ot_on:
                raise ValueError(
                    "config.use_ot_correction=True needs reference= data samples [R, "
                    f"{', '.join(map(str, shape[1:]))}]: a batch transported onto itself "
                    "cannot be corrected (spec ATLAS M-A5)"
                )
            return None
        if not ot_on:
            raise ValueError(
                "reference= was given but config.use_ot_correction is False (off in every "
                "preset until experiments/schrodinger shows a gain); set "
                "FastSBOTConfig(use_ot_correction=True) to use it"
            )
        return check_reference(reference, shape)

    def _summary(self, result: FastSBOTResult, num_steps: int) -> str:
        cfg = self.config
        prefix = f"FastSB-OT [{cfg.quality}]: {num_steps} {cfg.base_step} steps"
        return summary_line(prefix, result, num_steps)
