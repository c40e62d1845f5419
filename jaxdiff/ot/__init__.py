"""Optimal transport: entropic Sinkhorn over ott-jax, sliced OT, minibatch couplings.

Results are pytrees; everything runs under jit and vmap on device. This version has the
dense Sinkhorn front door; the online (never n x m) geometry with its Pallas kernel and
the kernel operators are tracked in the OT issue.
"""

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
    "OTResult",
    "assignment",
    "max_sliced_wasserstein",
    "ot_pairs",
    "random_projections",
    "sinkhorn",
    "sliced_transport_map",
    "sliced_wasserstein",
]
