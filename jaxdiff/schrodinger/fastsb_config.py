"""``FastSBOTConfig``: FastSB-OT's solver settings and quality presets, mapped onto jaxdiff.

The config is a frozen, hashable dataclass of Python values (host side). It builds the
pieces the one sampling method takes: :meth:`FastSBOTConfig.bridge_method` returns a
:class:`~jaxdiff.schrodinger.method.BridgeMethod` with its
:class:`~jaxdiff.schrodinger.ot_correction.OTCorrection` and
:class:`~jaxdiff.schrodinger.fisher.KineticLangevin` (or None when off).

Quality presets (:data:`QUALITY_PRESETS`; every preset sets the four fields below, an
explicitly given field overrides its preset value):

=========  =============  =========  ===========  =================  ==============
preset     num_timesteps  base_step  model calls  use_ot_correction  langevin_steps
=========  =============  =========  ===========  =================  ==============
draft      10             heun       20           False              0
fast       25             heun       50           False              0
balanced   50             heun       100          False              0
ultra      100            heun       200          False              0
extreme    200            heun       400          False              0
=========  =============  =========  ===========  =================  ==============

Corrections are off: a correction stays in a preset only if it beats the plain solver
beyond the Monte-Carlo floor (issue 14 section 4), and experiments/schrodinger/README.md
(H200, 2026-12-03) finds that neither does with a correct score: the OT pull adds error
(it shrinks the spread and merges modes) and the Langevin corrector is never better; the
pull only repairs a biased score when reference samples of the true law are given. The
base solver is probability-flow Heun in every preset: on the closed form we
have (Gaussian data, exact score, RMS error to the exact PF-ODE map; ``BridgeMethod``) at
20 model calls, linear / cosine schedule, Heun (10 steps) has 2.5e-2 / 7.4e-3, Euler (20
steps) 2.2e-2 / 1.7e-2, DDIM (20 steps) 5.9e-2 / 3.2e-2, and Heun's error falls as
``h^2`` beyond (cosine, 50 / 100 / 200 / 400 calls: 1.3e-3 / 3.4e-4 / 8.6e-5 / 2.2e-5).
``tests/schrodinger/test_fastsb.py`` bounds each preset's error.

Where jaxdiff departs from the original's config (spec fastsb-ot section 3, M15):

* unknown presets raise ``ValueError`` listing the choices (the original fell back to
  "balanced" silently, so the README's ``quality="fast"`` was "balanced");
* the original presets set Sinkhorn iterations and Langevin corrector steps (ultra 1,
  extreme 2) on top of a wrong, damped base step (M1, M2); here they set steps and the
  base solver, and the corrections are opt-in fields;
* ``epsilon`` (the original's dead ``eps``) is the Gibbs-kernel epsilon of the per-step OT
  correction, relative to the mean cost by default (the original's "adaptive eps");
* ``use_triton_kernels`` picks the OT geometry: True takes the online geometry
  (:class:`~jaxdiff.ot.OnlineGeometry`, never ``n x m`` in memory), False lets the memory
  budget choose dense, online or sliced. The online geometry's ``backend="auto"`` takes
  the fused Pallas kernel only for tf32/bf16 products on GPU; the OT correction keeps
  float32 products, for which XLA's blocked reduction is the faster path
  (benchmarks/RESULTS.md), so the Pallas kernel is not reached from here. The
  original's Triton kernels were an elementwise drift blend and ``s^2 + e`` (M10);
* ``momentum_alpha`` and ``use_fp32_fisher`` belong to the kinetic Langevin corrector
  (:mod:`jaxdiff.schrodinger.fisher`), the well-posed "Fisher-aware momentum" (M4, M6);
* ``use_mixed_precision`` draws the latents and returns the samples in bfloat16; the
  sampler state stays float32 (M13), the model gets float32 inputs;
* ``profile`` fills :class:`~jaxdiff.schrodinger.fastsb.FastSBOTProfile` (the original's
  ``enable_profiling`` was never read);
* dropped: torch.compile, caches, patches, FFT blend, warm-up, device and CUDA fields
  (no JAX meaning, or wrong: M3, M16, M17).
"""

from __future__ import annotations

import dataclasses

from jaxdiff._validation import check_bool, check_choice, check_int_range
from jaxdiff.schedules.checks import check_number, check_timesteps
from jaxdiff.schrodinger.fisher import KineticLangevin
from jaxdiff.schrodinger.method import BASE_STEPS, BridgeMethod
from jaxdiff.schrodinger.ot_correction import WEIGHT_SCHEDULES, OTCorrection

__all__ = ["QUALITY_PRESETS", "FastSBOTConfig"]


def _plain_heun(num_timesteps: int) -> dict:
    """A preset: Heun steps, corrections off until the evaluation says otherwise."""
    return {
        "num_timesteps": num_timesteps,
        "base_step": "heun",
        "use_ot_correction": False,
        "langevin_steps": 0,
    }


#: preset name -> the value of every preset-controlled field (:data:`PRESET_FIELDS`).
QUALITY_PRESETS = {
    "draft": _plain_heun(10),
    "fast": _plain_heun(25),
    "balanced": _plain_heun(50),
    "ultra": _plain_heun(100),
    "extreme": _plain_heun(200),
}
PRESET_FIELDS = ("num_timesteps", "base_step", "use_ot_correction", "langevin_steps")


@dataclasses.dataclass(frozen=True)
class FastSBOTConfig:
    """Settings of :class:`~jaxdiff.schrodinger.fastsb.FastSBOTSolver` (see the module).

    Fields left at None take the value of the ``quality`` preset when the config is
    built (``dataclasses.replace(config, quality=...)`` keeps the values already taken;
    build a new config to change the preset).

    Attributes:
      quality: preset name, one of :data:`QUALITY_PRESETS`.
      num_timesteps: steps of the default uniform grid from 1 to ``t_min`` (preset).
      base_step: ``heun``, ``euler``, ``ddim`` or ``euler_maruyama`` (preset).
      eta: DDIM stochasticity in ``[0, 1]`` (``ddim`` only).
      t_min: last time of the default grid, in ``(0, 1)`` (the score is finite there).
      denoise_final: return the model's ``x0`` estimate at ``t_min``.
      clip_samples: clip the samples to ``[-1, 1]`` (pixel data; off: latents, M18).
      use_ot_correction: per-step entropic OT pull toward ``reference`` samples (preset).
      epsilon: OT epsilon (> 0): times the mean cost when ``relative_epsilon``, else
        absolute, in squared data units.
      relative_epsilon: scale ``epsilon`` by each step's mean cost.
      ot_weight: blend weight of the barycentric map in ``[0, 1]``.
      ot_weight_schedule: ``"sigma"`` (``w = ot_weight sigma_t``: fades with the noise)
        or ``"constant"``.
      ot_threshold: Sinkhorn tolerance on the L1 marginal error (> 0).
      ot_max_iterations: Sinkhorn iteration cap per step (>= 1).
      sliced_ot_projections: directions per iteration of the sliced fallback (>= 1).
      memory_limit_ot_mb: memory budget of one step's transport in MiB (> 0).
      use_triton_kernels: OT on the online geometry (see the module).
      langevin_steps: kinetic Langevin corrector rows per step, one model call each
        (preset; 0 = off).
      langevin_step_size: corrector step ``h`` in ``(0, 2)`` (dimensionless).
      momentum_alpha: momentum kept per corrector step, ``exp(-gamma h)`` in ``[0, 1)``.
      fisher_shrinkage: mass ``(1 - lam) F + lam mean(F)``, ``lam`` in ``[0, 1]``.
      use_fp32_fisher: accumulate the Fisher diagonal in float32 for half scores.
      use_mixed_precision: bfloat16 latents and samples (state float32).
      profile: time the compile and the run and report memory in the result.
    """

    quality: str = "balanced"
    num_timesteps: int | None = None
    base_step: str | None = None
    eta: float = 0.0
    t_min: float = 1e-3
    denoise_final: bool = False
    clip_samples: bool = False
    use_ot_correction: bool | None = None
    epsilon: float = 0.05
    relative_epsilon: bool = True
    ot_weight: float = 1.0
    ot_weight_schedule: str = "sigma"
    ot_threshold: float = 1e-3
    ot_max_iterations: int = 1000
    sliced_ot_projections: int = 100
    memory_limit_ot_mb: float = 100.0
    use_triton_kernels: bool = False
    langevin_steps: int | None = None
    langevin_step_size: float = 1.0
    momentum_alpha: float = 0.9
    fisher_shrinkage: float = 0.0
    use_fp32_fisher: bool = True
    use_mixed_precision: bool = False
    profile: bool = False

    def __post_init__(self):
        quality = check_choice("quality", self.quality, QUALITY_PRESETS)
        object.__setattr__(self, "quality", quality)
        for field in PRESET_FIELDS:
            if getattr(self, field) is None:
                object.__setattr__(self, field, QUALITY_PRESETS[quality][field])
        check_timesteps("num_timesteps", self.num_timesteps)
        for field, choices in (("base_step", BASE_STEPS), ("ot_weight_schedule", WEIGHT_SCHEDULES)):
            object.__setattr__(self, field, check_choice(field, getattr(self, field), choices))
        for field in (
            "denoise_final",
            "clip_samples",
            "use_ot_correction",
            "relative_epsilon",
            "use_triton_kernels",
            "use_fp32_fisher",
            "use_mixed_precision",
            "profile",
        ):
            check_bool(field, getattr(self, field))
        for field, bounds in _NUMBER_BOUNDS.items():
            check_number(field, getattr(self, field), **bounds)
        check_int_range("ot_max_iterations", self.ot_max_iterations, 1)
        check_int_range("sliced_ot_projections", self.sliced_ot_projections, 1)
        check_int_range("langevin_steps", self.langevin_steps, 0)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> FastSBOTConfig:
        """The ``name`` preset with ``overrides`` (any field) applied."""
        return cls(quality=name, **overrides)

    def ot_correction(self) -> OTCorrection | None:
        """The per-step OT correction these settings ask for, or None when it is off."""
        if not self.use_ot_correction:
            return None
        return OTCorrection(
            epsilon=self.epsilon,
            weight=self.ot_weight,
            threshold=self.ot_threshold,
            relative_epsilon=self.relative_epsilon,
            solver="online" if self.use_triton_kernels else "auto",
            weight_schedule=self.ot_weight_schedule,
            memory_limit_ot_mb=self.memory_limit_ot_mb,
            max_iterations=self.ot_max_iterations,
            num_projections=self.sliced_ot_projections,
        )

    def langevin(self) -> KineticLangevin | None:
        """The kinetic Langevin corrector, or None when ``langevin_steps`` is 0."""
        if self.langevin_steps == 0:
            return None
        return KineticLangevin(
            n_steps=self.langevin_steps,
            step_size=self.langevin_step_size,
            momentum_alpha=self.momentum_alpha,
            fisher_shrinkage=self.fisher_shrinkage,
            use_fp32_fisher=self.use_fp32_fisher,
        )

    def bridge_method(self, prediction_type: str, timesteps=None) -> BridgeMethod:
        """The :class:`BridgeMethod` for one run, without reference samples.

        The OT correction runs only once ``reference`` data samples ``[R, ...]`` are set:
        ``method.replace(reference=...)``.

        Args:
          prediction_type: ``"score"`` or ``"epsilon"`` (what the model returns).
          timesteps: a strictly decreasing grid in ``[0, 1]`` (a final 0 is ``t_min``), or
            None for ``num_timesteps`` uniform steps from 1 to ``t_min``.
        """
        return BridgeMethod(
            num_steps=self.num_timesteps if timesteps is None else None,
            timesteps=timesteps,
            prediction_type=prediction_type,
            t_min=self.t_min,
            denoise_final=self.denoise_final,
            base=self.base_step,
            eta=self.eta,
            ot=self.ot_correction(),
            langevin=self.langevin(),
        )


_NUMBER_BOUNDS = {
    "eta": {"low": 0.0, "high": 1.0},
    "t_min": {"low": 0.0, "high": 1.0, "low_open": True, "high_open": True},
    "epsilon": {"low": 0.0, "low_open": True},
    "ot_weight": {"low": 0.0, "high": 1.0},
    "ot_threshold": {"low": 0.0, "low_open": True},
    "memory_limit_ot_mb": {"low": 0.0, "low_open": True},
    "langevin_step_size": {"low": 0.0, "high": 2.0, "low_open": True, "high_open": True},
    "momentum_alpha": {"low": 0.0, "high": 1.0, "high_open": True},
    "fisher_shrinkage": {"low": 0.0, "high": 1.0},
}
