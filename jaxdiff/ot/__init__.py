"""Optimal transport: entropic Sinkhorn over ott-jax, sliced OT, minibatch couplings.

Results are pytrees; everything runs under jit and vmap on device. ``sinkhorn`` runs
ott-jax's solver on a dense geometry or on jaxdiff's online geometry (never n x m; a
Pallas kernel on GPU) or on a Gibbs-kernel operator from ``make_kernel_operator``
(direct, FFT on grids, random features, Nystrom: ott-jax geometries, iterated in the log
domain or in scaling space).
"""

from jaxdiff.ot.kernel_ops import (
    KernelConfig,
    KernelOperator,
    kernel_operator_error,
    make_kernel_operator,
)
from jaxdiff.ot.online import OnlineGeometry
from jaxdiff.ot.pairs import Pairs, assignment, ot_pairs
from jaxdiff.ot.result import OTResult
from jaxdiff.ot.sinkhorn import sinkhorn
from jaxdiff.ot.sliced import (
    max_sliced_wasserstein,
    random_projections,
    sliced_transport_map,
    sliced_wasserstein,
)

__all__ = [
    "KernelConfig",
    "KernelOperator",
    "OTResult",
    "OnlineGeometry",
    "Pairs",
    "assignment",
    "kernel_operator_error",
    "make_kernel_operator",
    "max_sliced_wasserstein",
    "ot_pairs",
    "random_projections",
    "sinkhorn",
    "sliced_transport_map",
    "sliced_wasserstein",
]
