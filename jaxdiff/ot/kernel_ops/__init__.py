"""Kernel operators for entropic OT (ATLAS): direct, FFT (grids), random features, Nyström.

Each operator is an ott-jax geometry applying the Gibbs kernel
``K_ij = exp(-C(x_i, y_j) / epsilon)`` (gaussian: ``C = |x - y|^2``; laplacian:
``C = |x - y|``), with ``epsilon`` a traced leaf, and also ``apply`` / ``apply_transpose``.
``jaxdiff.ot.sinkhorn(geometry=op)`` solves OT on it (log domain where the operator has
one, scaling space otherwise); :func:`kernel_operator_error` measures an approximation
against the direct kernel.
"""

from jaxdiff.ot.kernel_ops.base import KernelOperator
from jaxdiff.ot.kernel_ops.config import FEATURE_MAPS, KERNEL_TYPES, SOLVERS, KernelConfig
from jaxdiff.ot.kernel_ops.direct import DirectGeometry
from jaxdiff.ot.kernel_ops.error import OperatorErrorReport, kernel_operator_error
from jaxdiff.ot.kernel_ops.factory import make_kernel_operator
from jaxdiff.ot.kernel_ops.fft import GaussianGridGeometry, LaplacianGridGeometry, grid_points
from jaxdiff.ot.kernel_ops.rff import FeatureGeometry

__all__ = [
    "FEATURE_MAPS",
    "KERNEL_TYPES",
    "SOLVERS",
    "DirectGeometry",
    "FeatureGeometry",
    "GaussianGridGeometry",
    "KernelConfig",
    "KernelOperator",
    "LaplacianGridGeometry",
    "OperatorErrorReport",
    "grid_points",
    "kernel_operator_error",
    "make_kernel_operator",
]
