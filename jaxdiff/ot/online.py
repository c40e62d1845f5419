"""An ott-jax point cloud whose cost matrix is never materialised.

:class:`OnlineGeometry` subclasses ott-jax's :class:`~ott.geometry.pointcloud.PointCloud`
and replaces the few methods through which ott-jax's Sinkhorn solver (and its implicit
differentiation) touches the cost: the log-domain kernel application
(``apply_lse_kernel``, with and without a weight vector), the scaling-domain
``apply_kernel`` and the mean cost used by ``relative_epsilon``. Each is a blocked
reduction from :mod:`jaxdiff.ot.online_reduce`, so memory stays O(n + m) plus one
``block_rows x m`` tile, for every cost jaxdiff offers. Anything that would need the
dense ``n x m`` matrix (``cost_matrix``, ``kernel_matrix``, the dense plan) raises
instead of silently allocating it (the failure ott-jax#504 reports).

ott-jax 0.6.0's own online mode (``PointCloud(batch_size=...)``) fails on JAX >= 0.9
(ott-jax/ott#700); this class does not use it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import costs, pointcloud

from jaxdiff.ot import online_reduce as red
from jaxdiff.ot.costs import cost_name

__all__ = ["OnlineGeometry", "default_tile_elements"]

#: Points sampled per side to estimate the mean cost of non-quadratic costs.
MEAN_COST_SAMPLE = 1024


def default_tile_elements() -> int:
    """Cost-tile size of the XLA reduction: 4 Mi entries on CPU (cache), 64 Mi elsewhere."""
    return 1 << 22 if jax.default_backend() == "cpu" else 1 << 26


@jax.tree_util.register_pytree_node_class
class OnlineGeometry(pointcloud.PointCloud):
    """Point-cloud geometry reduced tile by tile (never ``n x m`` in memory).

    Args:
        x: ``[n, d]`` source points.
        y: ``[m, d]`` target points.
        cost_fn: an ott-jax ``SqEuclidean``, ``Euclidean`` or ``Cosine`` cost.
        epsilon: absolute regularisation, or the multiplier of the mean cost when
            ``relative_epsilon="mean"``.
        relative_epsilon: None or ``"mean"`` (the mean is exact for the squared
            Euclidean cost and estimated on a strided subsample of
            :data:`MEAN_COST_SAMPLE` points per side otherwise).
        backend: forward reduction, ``"xla"`` (blocked, any backend), ``"pallas"`` or
            ``"triton"`` (fused GPU kernels; squared Euclidean and cosine only).
        precision: dot-product input precision, ``"float32"``, ``"tf32"`` or ``"bf16"``.
        tile_elements: the largest cost tile (entries) the XLA path forms at once;
            None picks :func:`default_tile_elements` for the default device.
    """

    def __init__(
        self,
        x: jax.Array,
        y: jax.Array,
        cost_fn: costs.CostFn,
        epsilon=None,
        relative_epsilon: str | None = None,
        backend: str = "xla",
        precision: str = "float32",
        tile_elements: int | None = None,
    ):
        super().__init__(x, y, cost_fn=cost_fn, epsilon=epsilon, relative_epsilon=relative_epsilon)
        self.backend = backend
        self.precision = precision
        self.tile_elements = default_tile_elements() if tile_elements is None else tile_elements

    # --- pytree -------------------------------------------------------------------
    def tree_flatten(self):  # noqa: D102
        children = (self.x, self.y, self._epsilon_init, self.cost_fn)
        aux = {
            "relative_epsilon": self._relative_epsilon,
            "backend": self.backend,
            "precision": self.precision,
            "tile_elements": self.tile_elements,
        }
        return children, aux

    @classmethod
    def tree_unflatten(cls, aux_data, children):  # noqa: D102
        x, y, epsilon, cost_fn = children
        return cls(x, y, cost_fn=cost_fn, epsilon=epsilon, **aux_data)

    # --- what ott-jax asks of an online geometry -----------------------------------
    @property
    def is_online(self) -> bool:  # noqa: D102
        return True

    @property
    def batch_size(self) -> int:
        """Rows per block of the XLA reduction."""
        n, m = self.shape
        return red.block_rows_for(n, m, self.tile_elements)

    def _prepared(self, transpose: bool):
        x, y, cost = red.prepare_points(self.x, self.y, cost_name(self.cost_fn))
        return (y, x, cost) if transpose else (x, y, cost)

    def apply_lse_kernel(self, f, g, eps, vec=None, axis=0):
        """ott-jax's stabilised kernel application, computed block by block.

        ``axis=1`` returns ``eps log sum_j exp((f_i + g_j - C_ij) / eps) - f_i`` over the
        rows ``[n]``; ``axis=0`` the same over the columns ``[m]`` (minus ``g_j``). With
        ``vec`` the sum is weighted by it and the sign is returned too.
        """
        transpose = axis == 0
        rows, cols, cost = self._prepared(transpose)
        own, other = (g, f) if transpose else (f, g)
        block = red.block_rows_for(rows.shape[0], cols.shape[0], self.tile_elements)
        eps = jnp.asarray(eps, dtype=self.dtype)
        if vec is None:
            out = red.row_lse(rows, cols, other, eps, cost, self.precision, block, self.backend)
            return out, jnp.ones((1,), dtype=self.dtype)
        out, sign = red.row_lse_weighted(
            rows, cols, own, other, eps, vec, cost, self.precision, block
        )
        return out - jnp.where(jnp.isfinite(own), own, 0.0), sign

    def apply_kernel(self, vec, eps=None, axis=0):
        """``K vec`` (``axis=1``) or ``K^T vec`` (``axis=0``), ``K = exp(-C / eps)``."""
        eps = self.epsilon if eps is None else eps
        zeros_f = jnp.zeros(self.shape[0], dtype=self.dtype)
        zeros_g = jnp.zeros(self.shape[1], dtype=self.dtype)
        out, sign = self.apply_lse_kernel(zeros_f, zeros_g, eps, vec=vec, axis=axis)
        return sign * jnp.exp(out / eps)

    def transport_cost(self, f, g) -> jax.Array:
        """``<P, C>`` for the plan of the potentials ``f`` ``[n]``, ``g`` ``[m]`` (scalar)."""
        x, y, cost = self._prepared(False)
        block = self.batch_size
        eps = jnp.asarray(self.epsilon, dtype=self.dtype)
        return red.transport_cost(x, y, f, g, eps, cost, self.precision, block)

    @property
    def mean_cost_matrix(self) -> jax.Array:
        """Mean of ``C`` over all pairs, without forming it (see the class docstring)."""
        name = cost_name(self.cost_fn)
        if name == "sqeuclidean":  # E|x - y|^2 = E|x|^2 + E|y|^2 - 2 <E x, E y>
            x, y, _ = self._prepared(False)
            sq = jnp.mean(jnp.sum(x * x, 1)) + jnp.mean(jnp.sum(y * y, 1))
            return sq - 2.0 * jnp.dot(jnp.mean(x, 0), jnp.mean(y, 0))
        n, m = self.shape
        rows = np.linspace(0, n - 1, min(n, MEAN_COST_SAMPLE)).astype(np.int32)
        cols = np.linspace(0, m - 1, min(m, MEAN_COST_SAMPLE)).astype(np.int32)
        return jnp.mean(self.cost_fn.all_pairs(self.x[rows], self.y[cols]))

    # --- the dense views are refused -------------------------------------------------
    @property
    def cost_matrix(self):  # noqa: D102
        n, m = self.shape
        raise ValueError(
            f"the online geometry never materialises the {n} x {m} cost matrix; use "
            "geometry='dense' for small problems, or the plan through plan_apply"
        )

    @property
    def kernel_matrix(self):  # noqa: D102
        return self.cost_matrix

    @property
    def can_LRC(self) -> bool:  # noqa: D102, N802
        return False
