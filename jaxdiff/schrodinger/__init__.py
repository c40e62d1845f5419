"""Schrödinger-bridge style samplers: FastSB-OT and ATLAS's pieces, built correctly.

:class:`BridgeMethod` is a method for the one sampling driver
(:func:`jaxdiff.samplers.sample`): a textbook reverse step on a continuous schedule,
with an optional per-step entropic-OT pull toward reference samples
(:mod:`~jaxdiff.schrodinger.ot_correction`) and optional kinetic-Langevin corrector rows
whose mass is the batch's diagonal Fisher information (:mod:`~jaxdiff.schrodinger.
fisher`). :class:`RichardsonFlow` adds a per-step error estimate and Richardson
extrapolation with selective updates (:mod:`~jaxdiff.schrodinger.richardson`).
Where each departs from the originals is in its module docstring.
"""

from jaxdiff.schrodinger.fisher import KineticLangevin, KineticState, diagonal_fisher
from jaxdiff.schrodinger.method import BASE_STEPS, BridgeMethod
from jaxdiff.schrodinger.ot_correction import OTCorrection, OTStepInfo, choose_solver, ot_correct
from jaxdiff.schrodinger.richardson import RichardsonFlow, RichardsonState

__all__ = [
    "BASE_STEPS",
    "BridgeMethod",
    "KineticLangevin",
    "KineticState",
    "OTCorrection",
    "OTStepInfo",
    "RichardsonFlow",
    "RichardsonState",
    "choose_solver",
    "diagonal_fisher",
    "ot_correct",
]
