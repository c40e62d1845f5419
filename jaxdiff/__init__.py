"""jaxdiff: diffusion sampling, optimal transport and flow matching in one JAX stack.

The names users of the original noise-scheduler module know are importable from here;
the pure building blocks live in :mod:`jaxdiff.schedules` and :mod:`jaxdiff.samplers`.
"""

from jaxdiff.samplers.config import SamplingConfig, SamplingMethod
from jaxdiff.samplers.manager import (
    AdvancedSamplingManager,
    SamplingResult,
    create_advanced_sampling_manager,
    create_sampler,
)
from jaxdiff.schedules.config import NoiseSchedulerConfig, NoiseScheduleType, create_noise_scheduler

__version__ = "0.1.0"

__all__ = [
    "AdvancedSamplingManager",
    "NoiseScheduleType",
    "NoiseSchedulerConfig",
    "SamplingConfig",
    "SamplingMethod",
    "SamplingResult",
    "create_advanced_sampling_manager",
    "create_noise_scheduler",
    "create_sampler",
]
