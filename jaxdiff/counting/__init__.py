"""Counting Flows: Skellam birth-death bridges for integer data.

Paper: Counting Flows ("Count-based Flow Matching"); reference code:
github.com/njwfish/counting_flows (CuPy/NumPy). Data ``x0`` at ``t = 0``, source ``x1`` at
``t = 1``; every array of counts is int32 ``[batch, d]`` and every sampler takes a PRNG key
first. Every count lies in ``[-MAX_COUNT, MAX_COUNT]`` (``2**24``, the float32-exact
integers); ``bridge.sample`` returns a ``CountingSampleOutput`` (samples, optional
trajectory, health report) for every bridge and every flag.
"""

from jaxdiff.counting.bridge import SkellamBridge, skellam_reverse_step, skellam_thin
from jaxdiff.counting.constrained import (
    ConstrainedSkellamBridge,
    ReflectedSkellamBridge,
    constrained_thin,
    project_column_sums,
)
from jaxdiff.counting.data import (
    CONDITION_TYPES,
    BetaBinomialDataset,
    PoissonMixtureDataset,
    paired_batches,
)
from jaxdiff.counting.energy import (
    EnergyScoreObjective,
    EnergyScorePosterior,
    posterior_apply,
    posterior_sampler,
)
from jaxdiff.counting.random import (
    MAX_COUNT,
    bessel,
    binomial_thin,
    hypergeometric,
    multinomial_split,
    multivariate_hypergeometric,
    poisson,
)
from jaxdiff.counting.sampling import INVALID_COUNT, CountingSampleOutput
from jaxdiff.counting.schedules import SCHEDULE_TYPES, WeightSchedule, make_weight_schedule
from jaxdiff.counting.slack import BesselM, ConstantM, PoissonM

__all__ = [
    "CONDITION_TYPES",
    "INVALID_COUNT",
    "MAX_COUNT",
    "SCHEDULE_TYPES",
    "BesselM",
    "BetaBinomialDataset",
    "ConstantM",
    "ConstrainedSkellamBridge",
    "CountingSampleOutput",
    "EnergyScoreObjective",
    "EnergyScorePosterior",
    "PoissonM",
    "PoissonMixtureDataset",
    "ReflectedSkellamBridge",
    "SkellamBridge",
    "WeightSchedule",
    "bessel",
    "binomial_thin",
    "constrained_thin",
    "hypergeometric",
    "make_weight_schedule",
    "multinomial_split",
    "multivariate_hypergeometric",
    "paired_batches",
    "poisson",
    "posterior_apply",
    "posterior_sampler",
    "project_column_sums",
    "skellam_reverse_step",
    "skellam_thin",
]
