"""Shared pieces of the kernel operators: the operator interface, input checks, costs.

Every operator is an ott-jax :class:`~ott.geometry.geometry.Geometry` (so
:func:`jaxdiff.ot.sinkhorn` and ott-jax's solvers take it as it is) that also derives
from :class:`KernelOperator`: ``shape = (n, m)``, ``apply(v)`` (``K v``: ``[m]`` or
``[m, k]`` -> ``[n]`` or ``[n, k]``) and ``apply_transpose(u)`` (``K^T u``). Each lists
its pytree children explicitly; ``epsilon`` is always one of them (a traced leaf).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff._validation import check_point_cloud

__all__ = [
    "KernelOperator",
    "as_matrix",
    "check_points",
    "check_same_dim",
    "gibbs",
    "pairwise_cost",
    "point_pair",
]


class KernelOperator:
    """Mixin of the kernel-operator geometries: ``K v`` and ``K^T u`` on vectors or matrices.

    Subclasses set ``solver_type`` and ``kernel_type`` (static names), and
    ``log_domain``: True when the geometry has a log-domain (``apply_lse_kernel``) form,
    so :func:`jaxdiff.ot.sinkhorn` runs in the log domain on it; False where only the
    kernel product exists (scaling-space iterations, ott-jax's ``lse_mode=False``).
    """

    solver_type: str
    kernel_type: str
    log_domain: bool

    def apply(self, v: jax.Array) -> jax.Array:
        """``K v``: ``[m]`` or ``[m, k]`` -> ``[n]`` or ``[n, k]``."""
        return as_matrix("v", v, self.shape[1], lambda w: _kernel_columns(self, w, 1), self.dtype)

    def apply_transpose(self, u: jax.Array) -> jax.Array:
        """``K^T u``: ``[n]`` or ``[n, k]`` -> ``[m]`` or ``[m, k]``."""
        return as_matrix("u", u, self.shape[0], lambda w: _kernel_columns(self, w, 0), self.dtype)


@functools.partial(jax.jit, static_argnums=2)
def _kernel_columns(op: KernelOperator, w: jax.Array, axis: int) -> jax.Array:
    """``apply_kernel`` on each column of ``w`` ``[size, k]`` (one compiled program)."""
    return jax.vmap(lambda c: op.apply_kernel(c, axis=axis), in_axes=1, out_axes=1)(w)


def check_points(field: str, value) -> jax.Array:
    """``value`` as a ``[num_points, dim]`` floating array; NaN checked when concrete."""
    arr = check_point_cloud(field, value)
    return arr.astype(jnp.result_type(arr.dtype, float))


def point_pair(x, y) -> tuple[jax.Array, jax.Array, bool]:
    """Checked ``(x, y, y_given)``: ``y=None`` means ``y = x``; one dtype, same dimension."""
    x = check_points("x", x)
    y_given = y is not None
    y = check_points("y", y) if y_given else x
    x, y = check_same_dim(x, y)
    return x, y, y_given


def check_same_dim(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Raise unless ``x`` and ``y`` have the same dimension; cast both to one dtype."""
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got x {x.shape} and y {y.shape}")
    dtype = jnp.result_type(x.dtype, y.dtype)
    return x.astype(dtype), y.astype(dtype)


def pairwise_cost(kernel_type: str, x: jax.Array, y: jax.Array) -> jax.Array:
    """``[n, m]`` cost: ``|x_i - y_j|^2`` (gaussian) or ``|x_i - y_j|`` (laplacian).

    Gaussian: both clouds are shifted by a common centre (the cost is translation
    invariant) and the matmul expansion ``|x|^2 + |y|^2 - 2 <x, y>`` is used (as POT's
    ``ot.dist``), negative round-off clamped to 0. Laplacian: the square root would turn
    the expansion's round-off near 0 (~1e-16 in float64) into a ~1e-8 error, so the
    differences are summed directly (XLA fuses the subtract-square-reduce into one
    reduction); the square root is safe at 0 (zero gradient there, not NaN).
    """
    centre = 0.5 * (jnp.mean(x, axis=0) + jnp.mean(y, axis=0))
    x, y = x - centre, y - centre
    if kernel_type == "gaussian":
        sq = jnp.sum(x**2, 1)[:, None] + jnp.sum(y**2, 1)[None, :] - 2.0 * x @ y.T
        return jnp.maximum(sq, 0.0)
    sq = jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def gibbs(kernel_type: str, x: jax.Array, y: jax.Array, epsilon) -> jax.Array:
    """``[n, m]`` Gibbs kernel ``exp(-C(x_i, y_j) / epsilon)``."""
    return jnp.exp(-pairwise_cost(kernel_type, x, y) / epsilon)


def as_matrix(field: str, v, size: int, fn: Callable[[jax.Array], jax.Array], dtype) -> jax.Array:
    """Apply ``fn`` (``[size, k] -> [out, k]``) to ``v`` of shape ``[size]`` or ``[size, k]``.

    Returns ``[out]`` for a vector input and ``[out, k]`` for a matrix input.
    """
    v = jnp.asarray(v)
    if v.ndim not in (1, 2) or v.shape[0] != size:
        raise ValueError(f"{field} must have shape [{size}] or [{size}, k], got {v.shape}")
    v = v.astype(jnp.result_type(v.dtype, dtype))
    out = fn(v[:, None] if v.ndim == 1 else v)
    return out[:, 0] if v.ndim == 1 else out
