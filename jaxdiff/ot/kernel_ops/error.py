"""How far an approximate operator is from the exact (direct) kernel, on probe vectors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxdiff._keys import as_key
from jaxdiff._validation import check_int_range
from jaxdiff.ot.kernel_ops.base import KernelOperator
from jaxdiff.ot.kernel_ops.config import KernelConfig
from jaxdiff.ot.kernel_ops.factory import make_kernel_operator
from jaxdiff.ot.kernel_ops.fft import grid_points

__all__ = ["OperatorErrorReport", "kernel_operator_error"]


@struct.dataclass
class OperatorErrorReport:
    """Relative errors of an operator against the direct kernel (a report, not an exception).

    Attributes:
        apply: ``||K_op V - K V||_F / ||K V||_F`` over the probes ``V`` ``[m, p]``.
        apply_transpose: ``||K_op^T U - K^T U||_F / ||K^T U||_F``, ``U`` ``[n, p]``.
    """

    apply: jax.Array
    apply_transpose: jax.Array


def kernel_operator_error(
    key: jax.Array,
    op: KernelOperator,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    num_probes: int = 8,
) -> OperatorErrorReport:
    """Relative error of ``op`` against the direct operator on the same points.

    Probes are uniform on ``[0, 1)`` (non-negative, like Sinkhorn scalings: signed
    probes make ``K v`` small by cancellation and the relative error meaningless for
    wide kernels). The direct kernel is formed, so use small problems (``n m`` entries).

    Args:
        key: draws the probe vectors.
        op: an operator from :func:`make_kernel_operator`.
        x: the points it was built from (grid coordinates for fft).
        y: likewise (None: ``y = x``).
        num_probes: number of probe vectors ``p`` (static, >= 1).

    Returns:
        An :class:`OperatorErrorReport` with the two scalar relative errors.
    """
    if not isinstance(op, KernelOperator):
        raise TypeError(
            f"op must be an operator from make_kernel_operator, got {type(op).__name__}"
        )
    key = as_key(key)
    num_probes = check_int_range("num_probes", num_probes, 1)
    if op.solver_type == "fft":
        x = grid_points(x)
        y = None if y is None else grid_points(y)
    config = KernelConfig(op.kernel_type, op.epsilon, "direct")
    exact = make_kernel_operator(config, x, y)
    n, m = exact.shape
    if tuple(op.shape) != (n, m):
        raise ValueError(f"op has shape {tuple(op.shape)} but the points give {(n, m)}")
    return _relative_errors(op, exact, key, num_probes)


def _relative_errors(op, exact, key, num_probes: int) -> OperatorErrorReport:
    n, m = exact.shape
    k_v, k_u = jax.random.split(key)
    dtype = exact.dtype
    v = jax.random.uniform(k_v, (m, num_probes), dtype)
    u = jax.random.uniform(k_u, (n, num_probes), dtype)

    def rel(approx, ref):
        return jnp.linalg.norm(approx - ref) / jnp.linalg.norm(ref)

    return OperatorErrorReport(
        apply=rel(op.apply(v), exact.apply(v)),
        apply_transpose=rel(op.apply_transpose(u), exact.apply_transpose(u)),
    )
