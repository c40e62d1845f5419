"""Samplers: one pure step per method, one ``lax.scan`` driver, CFG, and the facade.

A method is a ``flax.struct`` config (structure static, numbers traced) run by
:func:`sample`; :class:`AdvancedSamplingManager` is the original module's facade.
"""

from jaxdiff.samplers.config import SamplingConfig, SamplingMethod
from jaxdiff.samplers.ddim import DDIM
from jaxdiff.samplers.ddpm import DDPM
from jaxdiff.samplers.dpm_solver import DPMSolver
from jaxdiff.samplers.driver import Plan, SampleOutput, sample, step_keys
from jaxdiff.samplers.euler import Euler, EulerAncestral
from jaxdiff.samplers.guidance import guided_model, rescale_guidance
from jaxdiff.samplers.heun import Heun
from jaxdiff.samplers.manager import (
    AdvancedSamplingManager,
    SamplingResult,
    create_advanced_sampling_manager,
    create_sampler,
)
from jaxdiff.samplers.pc import PredictorCorrector
from jaxdiff.samplers.prediction import PREDICTION_TYPES, to_x0_eps
from jaxdiff.samplers.probability_flow import ProbabilityFlow

__all__ = [
    "DDIM",
    "DDPM",
    "PREDICTION_TYPES",
    "AdvancedSamplingManager",
    "DPMSolver",
    "Euler",
    "EulerAncestral",
    "Heun",
    "Plan",
    "PredictorCorrector",
    "ProbabilityFlow",
    "SampleOutput",
    "SamplingConfig",
    "SamplingMethod",
    "SamplingResult",
    "create_advanced_sampling_manager",
    "create_sampler",
    "guided_model",
    "rescale_guidance",
    "sample",
    "step_keys",
    "to_x0_eps",
]
