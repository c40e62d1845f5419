"""Optimal transport: entropic Sinkhorn over ott-jax, sliced OT, minibatch couplings.

Results are pytrees; everything runs under jit and vmap on device. ``sinkhorn`` runs
ott-jax's solver on a dense geometry or on jaxdiff's online geometry (never n x m; a
Pallas kernel on GPU); ``make_kernel_operator`` builds Gibbs-kernel operators (direct,
FFT on grids, random features, Nystrom) for Sinkhorn in scaling space.
"""

from jaxdiff.ot.kernel_ops import (
    KernelConfig,
    kernel_operator_error,
    make_kernel_operator,
    sinkhorn_scaling,
)
from jaxdiff.ot.online import OnlineGeometry
from jaxdiff.ot.pairs import assignment, ot_pairs
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
    "OTResult",
    "OnlineGeometry",
    "assignment",
    "kernel_operator_error",
    "make_kernel_operator",
    "max_sliced_wasserstein",
    "ot_pairs",
    "random_projections",
    "sinkhorn",
    "sinkhorn_scaling",
    "sliced_transport_map",
    "sliced_wasserstein",
]
