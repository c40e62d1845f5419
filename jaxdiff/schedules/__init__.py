"""Noise schedules: discrete (DDPM family), flow matching, continuous SDEs.

Every schedule is a ``flax.struct`` pytree: it passes through ``jit`` and ``vmap``.
"""

from jaxdiff.schedules.betas import BETA_SCHEDULES, make_betas, rescale_zero_terminal_snr
from jaxdiff.schedules.config import NoiseSchedulerConfig, NoiseScheduleType, create_noise_scheduler
from jaxdiff.schedules.continuous import (
    ContinuousSchedule,
    VPCosineSchedule,
    VPLinearSchedule,
    make_schedule,
)
from jaxdiff.schedules.discrete import DiscreteSchedule
from jaxdiff.schedules.flow import FlowSchedule
from jaxdiff.schedules.karras import KarrasSchedule, karras_noise_schedule
from jaxdiff.schedules.sigmas import karras_sigmas, sigma_to_t
from jaxdiff.schedules.spacing import TIMESTEP_SPACINGS, spaced_timesteps

__all__ = [
    "BETA_SCHEDULES",
    "TIMESTEP_SPACINGS",
    "ContinuousSchedule",
    "DiscreteSchedule",
    "FlowSchedule",
    "KarrasSchedule",
    "NoiseScheduleType",
    "NoiseSchedulerConfig",
    "VPCosineSchedule",
    "VPLinearSchedule",
    "create_noise_scheduler",
    "karras_noise_schedule",
    "karras_sigmas",
    "make_betas",
    "make_schedule",
    "rescale_zero_terminal_snr",
    "sigma_to_t",
    "spaced_timesteps",
]
