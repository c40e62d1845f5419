"""The sampling configuration users of the original PyTorch module know.

:class:`SamplingConfig` keeps the original's fields and defaults and adds the
diffusers options it lacked, with diffusers' defaults. :func:`build_method` turns a
scheduler config and a sampling config into a method object for
:func:`jaxdiff.samplers.sample`: every field that the method has is passed on; a field
set to a non-default value that the method cannot use produces a warning naming it
(never a silent no-op).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import warnings
from typing import Any

from jaxdiff._registry import Registry
from jaxdiff._validation import check_bool, check_choice, check_int_range
from jaxdiff.samplers.ddim import DDIM
from jaxdiff.samplers.ddpm import DDPM
from jaxdiff.samplers.dpm_solver import DPMSolver
from jaxdiff.samplers.euler import Euler, EulerAncestral
from jaxdiff.samplers.heun import Heun
from jaxdiff.schedules.checks import check_number, check_timesteps
from jaxdiff.schedules.config import NoiseSchedulerConfig

__all__ = ["SamplingMethod", "SamplingConfig", "METHODS", "method_class", "build_method"]


class SamplingMethod(enum.StrEnum):
    """Sampling methods (strings accepted, case-insensitive)."""

    DDPM = "ddpm"
    DDIM = "ddim"
    DPM_SOLVER = "dpm_solver"
    EULER = "euler"
    EULER_ANCESTRAL = "euler_ancestral"
    HEUN = "heun"

    @classmethod
    def parse(cls, value) -> SamplingMethod:
        """Member for a member or a case-insensitive name; ``ValueError`` otherwise."""
        return cls(check_choice("method", value, [m.value for m in cls]))


# method name -> method config class: the facade's boundary registry
METHODS: Registry[type] = Registry("method")
for _name, _cls in (
    (SamplingMethod.DDPM, DDPM),
    (SamplingMethod.DDIM, DDIM),
    (SamplingMethod.DPM_SOLVER, DPMSolver),
    (SamplingMethod.EULER, Euler),
    (SamplingMethod.EULER_ANCESTRAL, EulerAncestral),
    (SamplingMethod.HEUN, Heun),
):
    METHODS.register(_name.value, _cls)


def method_class(method) -> type:
    """The method config class for a :class:`SamplingMethod` or its name."""
    return METHODS.get(SamplingMethod.parse(method).value)


@dataclasses.dataclass
class SamplingConfig:
    """Sampling configuration (original fields first, original defaults).

    Attributes:
      method: a :class:`SamplingMethod` or its name.
      num_inference_steps: denoising steps ``n`` (``1 <= n <= T``).
      eta: DDIM stochasticity.
      guidance_scale: classifier-free guidance weight (used when a prompt is given).
      use_clipped_model_output: DDIM recomputes eps from the clipped x0.
      prediction_type: ``epsilon``, ``v_prediction``, ``sample`` or ``flow``.
      thresholding, dynamic_thresholding_ratio: Imagen dynamic thresholding.
      algorithm_type, solver_type, lower_order_final: DPM-Solver options.
      use_karras_sigmas: Karras et al. (2022) noise levels (DPM-Solver, Euler, Heun).
      solver_order: DPM-Solver order (1-3; diffusers default 2).
      final_sigmas_type: ``zero`` or ``sigma_min`` (DPM-Solver, Euler).
      euler_at_final: DPM-Solver takes a first-order last step.
      variance_type: DDPM variance (``fixed_small``, ``fixed_large``, ``learned_range``...).
      variance_channel_axis: axis of the learned-variance channels in the model output.
      guidance_rescale: Lin et al. (2024) guidance rescale in ``[0, 1]``.
      s_churn, s_tmin, s_tmax, s_noise: Euler stochastic churn (Karras et al. 2022).
      interpolation_type: Euler sigma interpolation, ``linear`` or ``log_linear``.
    """

    method: Any = SamplingMethod.DDPM
    num_inference_steps: int = 50
    eta: float = 0.0
    guidance_scale: float = 7.5
    use_clipped_model_output: bool = False
    prediction_type: str = "epsilon"
    thresholding: bool = False
    dynamic_thresholding_ratio: float = 0.995
    algorithm_type: str = "dpmsolver++"
    solver_type: str = "midpoint"
    lower_order_final: bool = True
    use_karras_sigmas: bool = False
    solver_order: int = 2
    final_sigmas_type: str = "zero"
    euler_at_final: bool = False
    variance_type: str = "fixed_small"
    variance_channel_axis: int = -1
    guidance_rescale: float = 0.0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    interpolation_type: str = "linear"

    def __post_init__(self):
        self.method = SamplingMethod.parse(self.method)
        check_timesteps("num_inference_steps", self.num_inference_steps)
        check_number("eta", self.eta, low=0.0)
        check_number("guidance_scale", self.guidance_scale)
        check_number("guidance_rescale", self.guidance_rescale, low=0.0, high=1.0)
        check_number(
            "dynamic_thresholding_ratio",
            self.dynamic_thresholding_ratio,
            low=0.0,
            low_open=True,
            high=1.0,
        )
        for name in (
            "use_clipped_model_output",
            "thresholding",
            "lower_order_final",
            "use_karras_sigmas",
            "euler_at_final",
        ):
            check_bool(name, getattr(self, name))
        # the remaining fields are checked by the method class build_method constructs


# Fields that configure the facade itself, never a method.
_FACADE_FIELDS = {"method", "guidance_scale", "guidance_rescale"}
# Scheduler-config fields that only describe the schedule pytree.
_SCHEDULE_FIELDS = {
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "schedule_type",
    "rescale_betas_zero_snr",
    "custom_betas",
    "custom_alphas_cumprod",
    "shift",
    "custom_sigmas",
}


def build_method(scheduler_config: NoiseSchedulerConfig, sampling_config: SamplingConfig):
    """Method config object for ``sampling_config.method`` on ``scheduler_config``.

    Raises ``ValueError`` when ``num_inference_steps`` exceeds ``num_train_timesteps``;
    warns (``UserWarning``) for each non-default field the method cannot use.
    """
    check_int_range(
        "num_inference_steps",
        sampling_config.num_inference_steps,
        1,
        scheduler_config.num_train_timesteps,
    )
    cls = method_class(sampling_config.method)
    accepted = {f.name for f in dataclasses.fields(cls)}
    kwargs, unused = {}, []
    for config in (scheduler_config, sampling_config):
        defaults = {f.name: f.default for f in dataclasses.fields(type(config))}
        for name, value in dataclasses.asdict(config).items():
            if name in _FACADE_FIELDS or name in _SCHEDULE_FIELDS:
                continue
            if name in accepted:
                kwargs[name] = value
            elif not _same(value, defaults[name]):
                unused.append(f"{name}={value!r}")
    if unused:
        warnings.warn(
            f"{sampling_config.method.value} does not use {', '.join(unused)}; "
            "these settings have no effect",
            UserWarning,
            stacklevel=3,
        )
    return cls(**kwargs)


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays compare elementwise
        return a is b
