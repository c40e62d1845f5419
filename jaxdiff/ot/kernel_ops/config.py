"""``KernelConfig``: which Gibbs kernel ATLAS applies and how it is approximated.

The kernel is the Gibbs kernel of entropic OT (Cuturi 2013, "Sinkhorn Distances"),

    K_ij = exp(-C(x_i, y_j) / epsilon),

with ``C = |x - y|^2`` (``"gaussian"``: not halved, as :func:`jaxdiff.ot.sinkhorn`'s
default ``"sqeuclidean"`` cost and POT's ``ot.dist``) or ``C = |x - y|`` (``"laplacian"``:
the Euclidean norm). ``solver_type`` picks the operator that applies it: ``"direct"``
(dense Gram matrix), ``"fft"`` (points on a regular grid), ``"rff"`` (random features)
or ``"nystrom"`` (low-rank landmark sketch).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxdiff._validation import check_choice, check_int_range

__all__ = ["FEATURE_MAPS", "KERNEL_TYPES", "SOLVER_TYPES", "KernelConfig"]

#: Kernel names: the cost in ``exp(-C / epsilon)``.
KERNEL_TYPES = ("gaussian", "laplacian")
#: Operator names.
SOLVER_TYPES = ("direct", "fft", "rff", "nystrom")
#: Random-feature maps of the ``"rff"`` operator.
FEATURE_MAPS = ("positive", "fourier")


def _check_positive_float(field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(
            f"{field} must be a Python float > 0, got {type(value).__name__}: {value!r}"
        )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{field}={value!r} is out of range; allowed: finite {field} > 0")
    return float(value)


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Static description of a kernel operator (frozen and hashable: a jit static arg).

    Names are case-insensitive and stored in lower case.

    Attributes:
        kernel_type: ``"gaussian"`` (``exp(-|x - y|^2 / epsilon)``) or ``"laplacian"``
            (``exp(-|x - y| / epsilon)``).
        epsilon: entropic regularisation / bandwidth, in units of the cost
            (squared distance for gaussian, distance for laplacian); > 0.
        solver_type: ``"direct"``, ``"fft"``, ``"rff"`` or ``"nystrom"``.
        num_features: number of random features of ``"rff"`` (>= 1).
        rank: number of Nyström landmarks of ``"nystrom"`` (>= 1); capped at the
            number of distinct candidate points.
        feature_map: ``"positive"`` (default; features ``> 0`` so the approximate
            kernel is positive and scaling Sinkhorn stays valid: Choromanski et al.
            2021, "Rethinking Attention with Performers"; Scetbon & Cuturi 2020,
            "Linear Time Sinkhorn Divergences using Positive Features") or
            ``"fourier"`` (Rahimi & Recht 2007 cosine features: bounded variance,
            but entries of the approximation may be negative).
        nystrom_rcond: relative eigenvalue cut-off of the Nyström pseudo-inverse of
            the landmark Gram matrix (eigenvalues ``<= nystrom_rcond * max`` dropped);
            in ``(0, 1)``.
    """

    kernel_type: str = "gaussian"
    epsilon: float = 0.1
    solver_type: str = "direct"
    num_features: int = 1024
    rank: int = 256
    feature_map: str = "positive"
    nystrom_rcond: float = 1e-6

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise in place once
        set_(self, "kernel_type", check_choice("kernel_type", self.kernel_type, KERNEL_TYPES))
        set_(self, "solver_type", check_choice("solver_type", self.solver_type, SOLVER_TYPES))
        set_(self, "feature_map", check_choice("feature_map", self.feature_map, FEATURE_MAPS))
        set_(self, "epsilon", _check_positive_float("epsilon", self.epsilon))
        set_(self, "num_features", check_int_range("num_features", self.num_features, 1))
        set_(self, "rank", check_int_range("rank", self.rank, 1))
        rcond = _check_positive_float("nystrom_rcond", self.nystrom_rcond)
        if rcond >= 1:
            raise ValueError(f"nystrom_rcond={rcond!r} is out of range; allowed: 0 < value < 1")
        set_(self, "nystrom_rcond", rcond)
