"""The noise-scheduler configuration users of the original PyTorch module know.

:class:`NoiseSchedulerConfig` keeps the original's fields and defaults and adds the
diffusers scheduler options it lacked (``steps_offset``, ``set_alpha_to_one``, ``shift``
for flow schedules) with diffusers' defaults. :func:`create_noise_scheduler` turns it
into a schedule pytree (:class:`~jaxdiff.schedules.discrete.DiscreteSchedule`, or
:class:`~jaxdiff.schedules.flow.FlowSchedule` for ``FLOW``).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from jaxdiff._validation import check_bool, check_choice, check_int_range
from jaxdiff.schedules.checks import check_number, check_timesteps

__all__ = ["NoiseScheduleType", "NoiseSchedulerConfig", "create_noise_scheduler", "build_schedule"]


class NoiseScheduleType(enum.StrEnum):
    """Beta schedule names (strings accepted, case-insensitive)."""

    LINEAR = "linear"
    SCALED_LINEAR = "scaled_linear"
    COSINE = "cosine"
    QUADRATIC = "quadratic"
    SIGMOID = "sigmoid"
    EXPONENTIAL = "exponential"
    CUSTOM = "custom"
    FLOW = "flow"

    @classmethod
    def parse(cls, value) -> NoiseScheduleType:
        """Member for a member or a case-insensitive name; ``ValueError`` otherwise."""
        if isinstance(value, str) and value.lower() == "squaredcos_cap_v2":
            return cls.COSINE
        return cls(check_choice("schedule_type", value, [m.value for m in cls]))


@dataclasses.dataclass
class NoiseSchedulerConfig:
    """Noise schedule configuration (original fields first, original defaults).

    Attributes:
      num_train_timesteps: ``T``.
      beta_start, beta_end: first and last beta of named schedules.
      schedule_type: a :class:`NoiseScheduleType` or its name.
      clip_sample, clip_sample_range: clip predicted x0 (DDPM, DDIM).
      sample_max_value: upper bound of dynamic thresholding.
      timestep_spacing: ``leading``, ``trailing`` or ``linspace``.
      rescale_betas_zero_snr: zero terminal SNR (Lin et al. 2024).
      custom_betas, custom_alphas_cumprod: ``[T]`` arrays for ``CUSTOM``.
      steps_offset: offset added to ``leading`` timesteps (diffusers).
      set_alpha_to_one: DDIM's final ``alpha_bar`` is 1 (diffusers).
      shift: flow-matching timestep shift (``FLOW`` only; SD3 uses 3.0).
      custom_sigmas: descending flow sigmas in (0, 1] (``FLOW`` only).
    """

    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    schedule_type: Any = NoiseScheduleType.LINEAR
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    sample_max_value: float = 1.0
    timestep_spacing: str = "leading"
    rescale_betas_zero_snr: bool = False
    custom_betas: Any = None
    custom_alphas_cumprod: Any = None
    steps_offset: int = 0
    set_alpha_to_one: bool = True
    shift: float = 1.0
    custom_sigmas: Any = None

    def __post_init__(self):
        self.schedule_type = NoiseScheduleType.parse(self.schedule_type)
        check_timesteps("num_train_timesteps", self.num_train_timesteps)
        check_int_range("steps_offset", self.steps_offset, 0, self.num_train_timesteps - 1)
        self.timestep_spacing = check_choice(
            "timestep_spacing", self.timestep_spacing, ("leading", "trailing", "linspace")
        )
        for name in ("beta_start", "beta_end"):
            check_number(
                name, getattr(self, name), low=0.0, high=1.0, low_open=True, high_open=True
            )
        for name in ("shift", "clip_sample_range", "sample_max_value"):
            check_number(name, getattr(self, name), low=0.0, low_open=True)
        for name in ("clip_sample", "rescale_betas_zero_snr", "set_alpha_to_one"):
            check_bool(name, getattr(self, name))


def build_schedule(config: NoiseSchedulerConfig):
    """The schedule pytree described by ``config``."""
    if config.schedule_type is NoiseScheduleType.FLOW:
        from jaxdiff.schedules.flow import FlowSchedule

        return FlowSchedule.create(
            num_train_timesteps=config.num_train_timesteps,
            shift=config.shift,
            sigmas=config.custom_sigmas,
        )
    from jaxdiff.schedules.discrete import DiscreteSchedule

    return DiscreteSchedule.create(
        config.schedule_type.value,
        config.num_train_timesteps,
        config.beta_start,
        config.beta_end,
        betas=config.custom_betas,
        alphas_cumprod=config.custom_alphas_cumprod,
        rescale_betas_zero_snr=config.rescale_betas_zero_snr,
    )


def create_noise_scheduler(schedule_type=NoiseScheduleType.LINEAR, **kwargs):
    """Build a schedule from a type and :class:`NoiseSchedulerConfig` keyword fields.

    Example::

        sched = create_noise_scheduler("cosine", num_train_timesteps=1000)
        sched.get_schedule_info()["betas_range"]
    """
    names = {f.name for f in dataclasses.fields(NoiseSchedulerConfig)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"unknown NoiseSchedulerConfig fields {unknown}; allowed: {sorted(names)}")
    return build_schedule(NoiseSchedulerConfig(schedule_type=schedule_type, **kwargs))
