"""Optimal transport: entropic Sinkhorn over ott-jax, with results as pytrees.

This version has the dense front door; the online (never n x m) geometry with its
Pallas kernel, kernel operators, sliced OT and minibatch couplings are tracked in the
OT issue.
"""

from jaxdiff.ot.result import OTResult
from jaxdiff.ot.sinkhorn import sinkhorn

__all__ = ["OTResult", "sinkhorn"]
