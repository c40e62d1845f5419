"""Schrödinger-bridge style samplers: FastSB-OT and ATLAS's pieces, built correctly.

:class:`BridgeMethod` is a method for the one sampling driver
(:func:`jaxdiff.samplers.sample`): a textbook reverse step on a continuous schedule,
with an optional per-step entropic-OT pull toward reference samples
(:mod:`~jaxdiff.schrodinger.ot_correction`) and optional kinetic-Langevin corrector rows
whose mass is the batch's diagonal Fisher information (:mod:`~jaxdiff.schrodinger.
fisher`). :class:`RichardsonFlow` adds a per-step error estimate and Richardson
extrapolation with selective updates (:mod:`~jaxdiff.schrodinger.richardson`).
:class:`FastSBOTSolver` is the FastSB-OT facade (the seed's names: ``FastSBOTConfig``
with presets, ``make_schedule``, ``NoisePredictorToScoreWrapper``, ``self_check``,
``PersistentKernelCache``). :class:`AdvancedHierarchicalDiffusionSampler` is ATLAS's
(``SamplerConfig``, ``KernelConfig``, ``karras_noise_schedule``). Where each departs from
the originals is in its module docstring.
"""

from jaxdiff.ot import KernelConfig
from jaxdiff.schedules.karras import karras_noise_schedule
from jaxdiff.schrodinger.atlas import (
    AdvancedHierarchicalDiffusionSampler,
    ATLASResult,
    resolve_noise_schedule,
)
from jaxdiff.schrodinger.atlas_config import SamplerConfig
from jaxdiff.schrodinger.coarse import CoarseToFineScore
from jaxdiff.schrodinger.fastsb import (
    FastSBOTConfig,
    FastSBOTProfile,
    FastSBOTResult,
    FastSBOTSolver,
    NoisePredictorToScoreWrapper,
    PersistentKernelCache,
    make_schedule,
)
from jaxdiff.schrodinger.fastsb_check import SelfCheckReport
from jaxdiff.schrodinger.fisher import KineticLangevin, KineticState, diagonal_fisher
from jaxdiff.schrodinger.method import BASE_STEPS, BridgeMethod
from jaxdiff.schrodinger.ot_correction import OTCorrection, OTStepInfo, choose_solver, ot_correct
from jaxdiff.schrodinger.richardson import RichardsonFlow, RichardsonState
from jaxdiff.schrodinger.runner import RunProfile

__all__ = [
    "ATLASResult",
    "AdvancedHierarchicalDiffusionSampler",
    "KernelConfig",
    "BASE_STEPS",
    "BridgeMethod",
    "CoarseToFineScore",
    "FastSBOTConfig",
    "FastSBOTProfile",
    "FastSBOTResult",
    "FastSBOTSolver",
    "KineticLangevin",
    "KineticState",
    "NoisePredictorToScoreWrapper",
    "OTCorrection",
    "OTStepInfo",
    "PersistentKernelCache",
    "RichardsonFlow",
    "RichardsonState",
    "RunProfile",
    "SamplerConfig",
    "SelfCheckReport",
    "choose_solver",
    "diagonal_fisher",
    "karras_noise_schedule",
    "make_schedule",
    "ot_correct",
    "resolve_noise_schedule",
]
