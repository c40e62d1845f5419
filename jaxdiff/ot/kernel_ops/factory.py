"""``make_kernel_operator``: build the operator a :class:`KernelConfig` names."""

from __future__ import annotations

import jax

from jaxdiff._keys import as_key
from jaxdiff.ot.kernel_ops import direct, fft, nystrom, rff  # noqa: F401  (register SOLVERS)
from jaxdiff.ot.kernel_ops.base import KernelOperator
from jaxdiff.ot.kernel_ops.config import SOLVERS, KernelConfig

__all__ = ["make_kernel_operator"]

_RANDOM = {"rff": "random features", "nystrom": "landmarks"}


def make_kernel_operator(
    config: KernelConfig,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    key: jax.Array | None = None,
) -> KernelOperator:
    """The Gibbs-kernel operator ``K_ij = exp(-C(x_i, y_j) / epsilon)`` of ``config``.

    The operator is an ott-jax geometry (pass it to
    ``jaxdiff.ot.sinkhorn(geometry=op)``) whose ``epsilon`` is a traced leaf: built
    inside a jitted function from a config whose ``epsilon`` is traced, a new
    ``epsilon`` does not recompile.

    Args:
        config: a :class:`KernelConfig` (structure static, ``epsilon`` traced).
        x: ``[n, d]`` points; for ``solver_type="fft"`` grid coordinates
            ``[*grid_shape, ndim]`` (see :mod:`jaxdiff.ot.kernel_ops.fft`).
        y: ``[m, d]`` points (or the same grid for fft); None means ``y = x``.
        key: typed ``jax.random.key`` (legacy uint32 keys accepted); required for
            ``"rff"`` (frequencies) and ``"nystrom"`` (landmarks), ignored otherwise.

    Returns:
        A :class:`~jaxdiff.ot.kernel_ops.base.KernelOperator` geometry with
        ``shape == (n, m)``, ``apply(v)`` (``K v``, ``v`` ``[m]`` or ``[m, k]``) and
        ``apply_transpose(u)`` (``K^T u``, ``u`` ``[n]`` or ``[n, k]``). Works under
        ``jit``; gradients flow to ``x`` and ``y`` through the kernel entries / features.

    Raises:
        TypeError / ValueError: ``config`` is not a KernelConfig, a required key is
            missing or not a key, the points have the wrong rank, mismatched dimensions
            or (when concrete) non-finite values, or the operator would not fit in the
            device's memory (checked before anything is allocated).
    """
    if not isinstance(config, KernelConfig):
        raise TypeError(f"config must be a KernelConfig, got {type(config).__name__}")
    solver = config.solver_type
    if solver in _RANDOM:
        if key is None:
            raise ValueError(
                f"key is required for solver_type={solver!r} (it draws the "
                f"{_RANDOM[solver]}); pass key=jax.random.key(seed)"
            )
        key = as_key(key, "key")
    return SOLVERS.get(solver)(config, x, y, key)
