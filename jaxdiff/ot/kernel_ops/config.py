"""``KernelConfig``: which Gibbs kernel ATLAS applies and how it is approximated.

The kernel is the Gibbs kernel of entropic OT (Cuturi 2013, "Sinkhorn Distances"),

    K_ij = exp(-C(x_i, y_j) / epsilon),

with ``C = |x - y|^2`` (``"gaussian"``: not halved, as :func:`jaxdiff.ot.sinkhorn`'s
default ``"sqeuclidean"`` cost and POT's ``ot.dist``) or ``C = |x - y|`` (``"laplacian"``:
the Euclidean norm). ``solver_type`` picks the operator that applies it: ``"direct"``
(dense Gram matrix), ``"fft"`` (points on a regular grid), ``"rff"`` (random features)
or ``"nystrom"`` (low-rank landmark sketch); the builders register themselves in
:data:`SOLVERS`.
"""

from __future__ import annotations

import dataclasses

import jax

from jaxdiff._registry import Registry
from jaxdiff._validation import check_choice, check_int_range
from jaxdiff.ot.checks import check_positive_scalar

__all__ = ["FEATURE_MAPS", "KERNEL_TYPES", "SOLVERS", "KernelConfig"]

#: Kernel names: the cost in ``exp(-C / epsilon)``.
KERNEL_TYPES = ("gaussian", "laplacian")
#: ``solver_type`` name -> builder ``(config, x, y, key) -> operator`` (filled by the
#: operator modules: direct, fft, rff, nystrom).
SOLVERS = Registry("solver_type")
#: Random-feature maps of the ``"rff"`` operator.
FEATURE_MAPS = ("positive", "fourier")
#: Largest feature count / rank (array dimensions are int32 on device).
MAX_SIZE = 2**31 - 1
_STATIC = ("kernel_type", "solver_type", "num_features", "rank", "feature_map")
_TRACED = ("epsilon", "nystrom_rcond")


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Description of a kernel operator: static structure, traced numbers (a pytree).

    Names, ``num_features`` and ``rank`` are static (they set shapes and code paths);
    ``epsilon`` and ``nystrom_rcond`` are pytree leaves, so a jitted function taking the
    config as an argument does not recompile when they change. Names are
    case-insensitive and stored in lower case. Concrete values are validated at
    construction; traced ones (a config built inside ``jit``) only by shape and dtype.

    Attributes:
        kernel_type: ``"gaussian"`` (``exp(-|x - y|^2 / epsilon)``) or ``"laplacian"``
            (``exp(-|x - y| / epsilon)``).
        epsilon: entropic regularisation / bandwidth, in units of the cost
            (squared distance for gaussian, distance for laplacian); > 0. Traced.
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
            in ``(0, 1)``. Traced.
    """

    kernel_type: str = "gaussian"
    epsilon: float | jax.Array = 0.1
    solver_type: str = "direct"
    num_features: int = 1024
    rank: int = 256
    feature_map: str = "positive"
    nystrom_rcond: float | jax.Array = 1e-6

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise in place once
        set_(self, "kernel_type", check_choice("kernel_type", self.kernel_type, KERNEL_TYPES))
        set_(self, "solver_type", SOLVERS.canonical(self.solver_type))
        set_(self, "feature_map", check_choice("feature_map", self.feature_map, FEATURE_MAPS))
        set_(self, "epsilon", check_positive_scalar("epsilon", self.epsilon))
        set_(self, "num_features", check_int_range("num_features", self.num_features, 1, MAX_SIZE))
        set_(self, "rank", check_int_range("rank", self.rank, 1, MAX_SIZE))
        rcond = check_positive_scalar("nystrom_rcond", self.nystrom_rcond, high=1.0)
        set_(self, "nystrom_rcond", rcond)

    def tree_flatten(self):  # noqa: D102
        return tuple(getattr(self, k) for k in _TRACED), tuple(getattr(self, k) for k in _STATIC)

    @classmethod
    def tree_unflatten(cls, aux_data, children):  # noqa: D102
        obj = object.__new__(cls)  # leaves may be tracers or placeholders: not re-validated
        for name, value in (
            *zip(_STATIC, aux_data, strict=True),
            *zip(_TRACED, children, strict=True),
        ):
            object.__setattr__(obj, name, value)
        return obj
