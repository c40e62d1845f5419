"""``SamplerConfig``: ATLAS's sampler settings, each mapped onto a jaxdiff method field.

The config is a frozen dataclass of Python values (host side) with the original's field
names (``../shared/specs/atlas.md`` section 3). :meth:`SamplerConfig.method` builds the
method the one driver runs: :class:`~jaxdiff.schrodinger.richardson.RichardsonFlow` with
``hierarchical_sampling`` (step doubling: a step of ``h`` and two of ``h/2`` give the error
estimate and the Richardson-extrapolated state), else
:class:`~jaxdiff.schrodinger.method.BridgeMethod` with ``base_step``; the per-step OT pull
(:class:`~jaxdiff.schrodinger.ot_correction.OTCorrection`) runs when reference samples are
given.

Fields that mean something here (original name -> what it sets):

================================  =====================================================
``hierarchical_sampling``         Richardson step doubling (2 model calls per step)
                                  instead of ``base_step`` (the original read it nowhere)
``richardson_extrapolation``      extrapolate ``2 x_hh - x_h`` (README only in the
                                  original); False keeps the two half Euler steps
``selective_updates``             extrapolate only samples whose error estimate is
                                  ``>= richardson_tolerance`` (README only)
``sb_iterations``                 Sinkhorn iteration cap of the per-step OT
``error_tolerance``               Sinkhorn's tolerance on the L1 marginal error
``marginal_constraint_threshold`` a step whose marginal error is above it keeps its
                                  particles unpulled and is reported as not converged
                                  (the original raised ``RuntimeError``)
``dynamic_weighting``             OT blend schedule: ``"uniform"`` (``ot_weight``) or
                                  ``"adaptive"`` (``ot_weight * sigma_t``)
``memory_threshold_mb``           the OT's memory budget (``memory_limit_ot_mb``)
``use_mixed_precision``           latents and samples in bfloat16, state in float32
``denoise_final``                 a last model call returning the ``x0`` prediction
``verbose_logging``               print the run's summary line (as ``verbose=True``)
================================  =====================================================

New fields: ``base_step``, ``richardson_tolerance``, ``ot_weight``, ``adaptive_epsilon``
(ATLAS kept it on its ``KernelConfig``: the kernel epsilon is then relative to the mean
cost), ``prediction_type`` (ATLAS models predict the noise: ``"epsilon"``), ``t_min``,
``clip_samples``, ``profile``.

Dead fields (:data:`DEAD_FIELDS`): accepted with the original's defaults so its configs
load, and they change nothing; setting one to another value warns with the reason.
Defaults that differ from the original's, and why: ``sb_iterations`` 100 (20 rarely
converges at small epsilon; convergence is reported per step), ``error_tolerance`` 1e-3
(an L1 marginal error, not the original's max-abs scaling change), ``use_mixed_precision``
False and ``denoise_final`` True (read by nothing in the original).
"""

from __future__ import annotations

import dataclasses
import warnings

from jaxdiff._validation import check_bool, check_choice, check_int_range
from jaxdiff.ot import KernelConfig
from jaxdiff.schedules.checks import check_number
from jaxdiff.schrodinger.method import BASE_STEPS, BridgeMethod
from jaxdiff.schrodinger.ot_correction import OTCorrection
from jaxdiff.schrodinger.richardson import RichardsonFlow

__all__ = ["DEAD_FIELDS", "DYNAMIC_WEIGHTING", "SamplerConfig"]

#: ``dynamic_weighting`` name -> :class:`OTCorrection` ``weight_schedule``.
DYNAMIC_WEIGHTING = {"uniform": "constant", "adaptive": "sigma"}
#: original field -> why it does nothing in jaxdiff.
DEAD_FIELDS = {
    "use_linear_solver": "the original's conjugate gradient on (I - K) f = 1 is not the "
    "Sinkhorn problem (spec atlas section 2.4); the OT runs Sinkhorn only",
    "memory_efficient": "XLA plans the buffers of the one compiled run",
    "guidance_scale": "read by nothing in the original; guidance belongs to the model",
    "interpolation_order": "read by nothing in the original",
    "critical_thresholds": "read by nothing in the original (SBDS's selection rule)",
    "patch_based_processing": "read by nothing in the original",
    "auto_tuning": "read by nothing in the original",
    "max_cached_batch_size": "read by nothing in the original",
    "enable_cuda_graphs": "the whole run is one compiled XLA program already",
    "cuda_graph_warmup_iters": "the whole run is one compiled XLA program already",
    "tile_size": "the model is called on whole latents (tiling is the model's business)",
    "tile_stride": "the model is called on whole latents",
    "tile_overlap": "the model is called on whole latents",
    "tile_blending": "the model is called on whole latents",
    "seed": "jaxdiff takes an explicit key= in sample()",
    "cg_relative_tolerance": "no conjugate gradient (see use_linear_solver)",
    "cg_absolute_tolerance": "no conjugate gradient (see use_linear_solver)",
}
_ORIGINAL_CRITICAL = (0.95, 0.8, 0.6, 0.4, 0.2, 0.05)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """ATLAS's sampler settings (see the module docstring for what each field sets)."""

    hierarchical_sampling: bool = True
    richardson_extrapolation: bool = True
    selective_updates: bool = False
    richardson_tolerance: float = 1e-3
    base_step: str = "heun"
    sb_iterations: int = 100
    error_tolerance: float = 1e-3
    marginal_constraint_threshold: float = 1e-2
    ot_weight: float = 0.5
    dynamic_weighting: str = "adaptive"
    adaptive_epsilon: bool = True
    memory_threshold_mb: float = 8192.0
    use_mixed_precision: bool = False
    denoise_final: bool = True
    verbose_logging: bool = False
    prediction_type: str = "epsilon"
    t_min: float = 1e-3
    clip_samples: bool = False
    profile: bool = False
    # dead fields (DEAD_FIELDS), the original's defaults
    use_linear_solver: bool = True
    memory_efficient: bool = True
    guidance_scale: float = 1.0
    interpolation_order: int = 3
    critical_thresholds: tuple[float, ...] = _ORIGINAL_CRITICAL
    patch_based_processing: bool = True
    auto_tuning: bool = False
    max_cached_batch_size: int = 16
    enable_cuda_graphs: bool = False
    cuda_graph_warmup_iters: int = 2
    tile_size: int | None = None
    tile_stride: int | None = None
    tile_overlap: float = 0.125
    tile_blending: str = "hann"
    seed: int | None = None
    cg_relative_tolerance: float = 1e-5
    cg_absolute_tolerance: float = 0.0

    def __post_init__(self):
        set_ = object.__setattr__
        for name in (
            "hierarchical_sampling",
            "richardson_extrapolation",
            "selective_updates",
            "adaptive_epsilon",
            "use_mixed_precision",
            "denoise_final",
            "verbose_logging",
            "clip_samples",
            "profile",
        ):
            check_bool(name, getattr(self, name))
        set_(self, "base_step", check_choice("base_step", self.base_step, BASE_STEPS))
        set_(
            self,
            "dynamic_weighting",
            check_choice("dynamic_weighting", self.dynamic_weighting, tuple(DYNAMIC_WEIGHTING)),
        )
        check_int_range("sb_iterations", self.sb_iterations, 1)
        check_number("richardson_tolerance", self.richardson_tolerance, low=0.0)
        check_number("error_tolerance", self.error_tolerance, low=0.0, low_open=True)
        check_number(
            "marginal_constraint_threshold",
            self.marginal_constraint_threshold,
            low=0.0,
            low_open=True,
        )
        check_number("ot_weight", self.ot_weight, low=0.0, high=1.0)
        check_number("memory_threshold_mb", self.memory_threshold_mb, low=0.0, low_open=True)
        check_number("t_min", self.t_min, low=0.0, high=1.0, low_open=True, high_open=True)
        set_(self, "critical_thresholds", tuple(self.critical_thresholds))
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, reason in DEAD_FIELDS.items():
            if getattr(self, name) != defaults[name]:
                warnings.warn(
                    f"SamplerConfig.{name}={getattr(self, name)!r} has no effect in jaxdiff: "
                    f"{reason}",
                    UserWarning,
                    stacklevel=3,
                )

    def ot_correction(self, kernel_config: KernelConfig | None) -> OTCorrection:
        """The per-step OT: ``kernel_config``'s operator and epsilon, or the memory tiers.

        With ``kernel_config=None`` Sinkhorn runs on the dense / online / sliced geometry
        the memory budget allows, at :class:`~jaxdiff.ot.KernelConfig`'s default epsilon.
        """
        epsilon = (KernelConfig() if kernel_config is None else kernel_config).epsilon
        return OTCorrection(
            epsilon=epsilon,
            weight=self.ot_weight,
            threshold=self.error_tolerance,
            relative_epsilon=self.adaptive_epsilon,
            weight_schedule=DYNAMIC_WEIGHTING[self.dynamic_weighting],
            memory_limit_ot_mb=self.memory_threshold_mb,
            max_iterations=self.sb_iterations,
            kernel=kernel_config,
            max_marginal_error=self.marginal_constraint_threshold,
        )

    def method(self, timesteps, kernel_config: KernelConfig | None, use_ot: bool):
        """The driver method for a checked grid ``timesteps`` (see the module docstring)."""
        common = {
            "prediction_type": self.prediction_type,
            "t_min": self.t_min,
            "denoise_final": self.denoise_final,
            "timesteps": timesteps,
            "ot": self.ot_correction(kernel_config) if use_ot else None,
        }
        if self.hierarchical_sampling:
            tol = self.richardson_tolerance if self.selective_updates else 0.0
            return RichardsonFlow(extrapolate=self.richardson_extrapolation, tol=tol, **common)
        return BridgeMethod(base=self.base_step, **common)
