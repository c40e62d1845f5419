"""Flow matching: probability paths, conditional flow-matching objectives, ODE solvers.

Time convention (jaxdiff's, :mod:`jaxdiff.train.objectives`): ``t = 0`` is data ``x_0``,
``t = 1`` is the source/noise ``x_1``; generation integrates from ``t = 1`` to 0,
inversion from 0 to 1 (:mod:`jaxdiff.flows.paths` states the mapping to torchcfm's).

* :mod:`~jaxdiff.flows.paths`: independent (rectified), Schrödinger-bridge and
  stochastic-interpolant paths ``x_t = alpha_t x_0 + beta_t x_1 + gamma_t z``;
* :mod:`~jaxdiff.flows.objectives`: CFM, OT-CFM, SB-CFM and interpolant objectives for
  :func:`jaxdiff.train.fit` (minibatch OT pairs on device, class-conditional pairing,
  time samplers, label dropout for classifier-free guidance);
* :mod:`~jaxdiff.flows.ode`: fixed-step Euler / midpoint / Heun / RK4 (Butcher tableaux)
  for the one sampling driver, both directions;
* :mod:`~jaxdiff.flows.sde`: Euler-Maruyama for a velocity-and-score model, any diffusion
  ``eps >= 0``, keeping the ODE's marginals (SB-CFM / interpolants with a score head);
* :mod:`~jaxdiff.flows.adaptive`: adaptive Dopri5 through diffrax;
* :mod:`~jaxdiff.flows.latent_files`: images to (VAE) latents on disk, atomically.
"""

from jaxdiff.flows.adaptive import AdaptiveODE, AdaptiveOutput, solve_adaptive
from jaxdiff.flows.latent_files import (
    StyleLatents,
    load_latents,
    preprocess_to_latents,
    vae_encode_fn,
)
from jaxdiff.flows.objectives import (
    CFMObjective,
    CoupledBatch,
    TimeSampler,
    cfm_objective,
    interpolant_objective,
    ot_cfm_objective,
    sb_cfm_objective,
)
from jaxdiff.flows.ode import TABLEAUX, ButcherTableau, FlowODE
from jaxdiff.flows.paths import (
    ProbabilityPath,
    independent_path,
    interpolant_path,
    schrodinger_bridge_path,
)
from jaxdiff.flows.sde import FlowSDE

__all__ = [
    "TABLEAUX",
    "AdaptiveODE",
    "AdaptiveOutput",
    "ButcherTableau",
    "CFMObjective",
    "CoupledBatch",
    "FlowODE",
    "FlowSDE",
    "ProbabilityPath",
    "StyleLatents",
    "TimeSampler",
    "cfm_objective",
    "independent_path",
    "interpolant_objective",
    "interpolant_path",
    "load_latents",
    "ot_cfm_objective",
    "preprocess_to_latents",
    "sb_cfm_objective",
    "schrodinger_bridge_path",
    "solve_adaptive",
    "vae_encode_fn",
]
