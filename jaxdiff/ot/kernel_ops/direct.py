"""The direct operator: the dense ``[n, m]`` Gibbs kernel, exact, ``O(n m)`` memory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxdiff.ot.kernel_ops.base import as_matrix, gibbs, point_pair
from jaxdiff.ot.kernel_ops.config import KernelConfig

__all__ = ["DirectKernel", "make_direct"]

_gibbs = jax.jit(gibbs, static_argnums=0)  # one compiled program per kernel type


@struct.dataclass
class DirectKernel:
    """Materialised Gibbs kernel ``K_ij = exp(-C(x_i, y_j) / epsilon)``.

    With ``kernel_type="gaussian"`` this is exactly the Gibbs kernel of
    :func:`jaxdiff.ot.sinkhorn` with ``cost="sqeuclidean"`` (and POT's
    ``exp(-ot.dist(x, y) / reg)``).

    Attributes:
        matrix: ``[n, m]`` kernel matrix.
        config: static :class:`KernelConfig`.
    """

    matrix: jax.Array
    config: KernelConfig = struct.field(pytree_node=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, m)``."""
        return tuple(self.matrix.shape)

    def apply(self, v: jax.Array) -> jax.Array:
        """``K v``: ``[m]`` or ``[m, k]`` -> ``[n]`` or ``[n, k]``."""
        return as_matrix("v", v, self.shape[1], lambda w: self.matrix @ w, self.matrix.dtype)

    def apply_transpose(self, u: jax.Array) -> jax.Array:
        """``K^T u``: ``[n]`` or ``[n, k]`` -> ``[m]`` or ``[m, k]``."""
        return as_matrix("u", u, self.shape[0], lambda w: self.matrix.T @ w, self.matrix.dtype)


def make_direct(config: KernelConfig, x: jax.Array, y: jax.Array | None = None) -> DirectKernel:
    """Dense operator between ``x`` ``[n, d]`` and ``y`` ``[m, d]`` (``y=None``: ``x``)."""
    x, y, _ = point_pair(x, y)
    eps = jnp.asarray(config.epsilon, x.dtype)
    return DirectKernel(matrix=_gibbs(config.kernel_type, x, y, eps), config=config)
