"""Kernel operators for entropic OT (ATLAS): direct, FFT (grids), random features, Nyström.

Each operator applies the Gibbs kernel ``K_ij = exp(-C(x_i, y_j) / epsilon)`` (gaussian:
``C = |x - y|^2``; laplacian: ``C = |x - y|``) through ``apply`` / ``apply_transpose``;
:func:`kernel_operator_error` measures an approximation against the direct kernel, and
:func:`sinkhorn_scaling` runs Sinkhorn in scaling space on any of them.
"""

from jaxdiff.ot.kernel_ops.config import FEATURE_MAPS, KERNEL_TYPES, SOLVER_TYPES, KernelConfig
from jaxdiff.ot.kernel_ops.direct import DirectKernel
from jaxdiff.ot.kernel_ops.error import OperatorError, kernel_operator_error
from jaxdiff.ot.kernel_ops.factory import KernelOperator, make_kernel_operator
from jaxdiff.ot.kernel_ops.fft import GridKernel, grid_points
from jaxdiff.ot.kernel_ops.rff import FeatureKernel
from jaxdiff.ot.kernel_ops.scaling_sinkhorn import ScalingResult, sinkhorn_scaling

__all__ = [
    "FEATURE_MAPS",
    "KERNEL_TYPES",
    "SOLVER_TYPES",
    "DirectKernel",
    "FeatureKernel",
    "GridKernel",
    "KernelConfig",
    "KernelOperator",
    "OperatorError",
    "ScalingResult",
    "grid_points",
    "kernel_operator_error",
    "make_kernel_operator",
    "sinkhorn_scaling",
]
