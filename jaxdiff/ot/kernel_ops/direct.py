"""The direct operator: the dense ``[n, m]`` cost, exact, ``O(n m)`` memory.

ott-jax's own :class:`~ott.geometry.geometry.Geometry` on a cost matrix does the job
(log-domain and kernel products, ``epsilon`` a leaf); this subclass only adds the
operator interface and keeps the cost from :func:`~jaxdiff.ot.kernel_ops.base.pairwise_cost`
(centred, exact square root for the laplacian).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ott.geometry import geometry

from jaxdiff.ot.kernel_ops.base import KernelOperator, pairwise_cost, point_pair
from jaxdiff.ot.kernel_ops.config import SOLVERS, KernelConfig
from jaxdiff.ot.memory import check_allocation

__all__ = ["DirectGeometry", "make_direct"]

_pairwise = jax.jit(pairwise_cost, static_argnums=0)  # one compiled program per kernel type


@jax.tree_util.register_pytree_node_class
class DirectGeometry(KernelOperator, geometry.Geometry):
    """Dense Gibbs kernel ``K_ij = exp(-C(x_i, y_j) / epsilon)`` as an ott-jax geometry.

    With ``kernel_type="gaussian"`` this is exactly the Gibbs kernel of
    :func:`jaxdiff.ot.sinkhorn` with ``cost="sqeuclidean"`` (and POT's
    ``exp(-ot.dist(x, y) / reg)``).

    Args:
        cost_matrix: ``[n, m]`` costs ``C``.
        epsilon: scalar regularisation (a pytree leaf: traced under jit).
        kernel_type: ``"gaussian"`` or ``"laplacian"`` (static).
    """

    solver_type = "direct"
    log_domain = True

    def __init__(self, cost_matrix: jax.Array, epsilon, kernel_type: str):
        super().__init__(cost_matrix=cost_matrix, epsilon=epsilon)
        self.kernel_type = kernel_type

    @property
    def matrix(self) -> jax.Array:
        """``[n, m]`` kernel matrix."""
        return self.kernel_matrix

    def tree_flatten(self):  # noqa: D102
        return (self._cost_matrix, self._epsilon_init), (self.kernel_type,)

    @classmethod
    def tree_unflatten(cls, aux_data, children):  # noqa: D102
        return cls(*children, *aux_data)


@SOLVERS.register("direct")
def make_direct(config: KernelConfig, x: jax.Array, y: jax.Array | None, key) -> DirectGeometry:
    """Dense operator between ``x`` ``[n, d]`` and ``y`` ``[m, d]`` (``y=None``: ``x``)."""
    del key  # deterministic
    x, y, _ = point_pair(x, y)
    n, m = x.shape[0], y.shape[0]
    check_allocation(
        f"solver_type='direct' on {n} x {m} points",
        2 * n * m * x.dtype.itemsize,
        "use solver_type='rff' or 'nystrom' for large clouds",
    )
    eps = jnp.asarray(config.epsilon, x.dtype)
    return DirectGeometry(_pairwise(config.kernel_type, x, y), eps, config.kernel_type)
