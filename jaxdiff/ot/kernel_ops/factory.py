"""``make_kernel_operator``: build the operator a :class:`KernelConfig` names."""

from __future__ import annotations

from typing import Union

import jax

from jaxdiff.ot.kernel_ops.config import KernelConfig
from jaxdiff.ot.kernel_ops.direct import DirectKernel, make_direct
from jaxdiff.ot.kernel_ops.fft import GridKernel, make_fft
from jaxdiff.ot.kernel_ops.nystrom import make_nystrom
from jaxdiff.ot.kernel_ops.rff import FeatureKernel, make_rff

__all__ = ["KernelOperator", "make_kernel_operator"]

#: Any operator built here; all have ``shape``, ``apply`` and ``apply_transpose``.
KernelOperator = Union[DirectKernel, GridKernel, FeatureKernel]  # noqa: UP007

_RANDOM = ("rff", "nystrom")


def make_kernel_operator(
    config: KernelConfig,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    key: jax.Array | None = None,
) -> KernelOperator:
    """The Gibbs-kernel operator ``K_ij = exp(-C(x_i, y_j) / epsilon)`` of ``config``.

    Args:
        config: a :class:`KernelConfig` (static).
        x: ``[n, d]`` points; for ``solver_type="fft"`` grid coordinates
            ``[*grid_shape, ndim]`` (see :mod:`jaxdiff.ot.kernel_ops.fft`).
        y: ``[m, d]`` points (or the same grid for fft); None means ``y = x``.
        key: typed ``jax.random.key`` (legacy uint32 keys accepted); required for
            ``"rff"`` (frequencies) and ``"nystrom"`` (landmarks), ignored otherwise.

    Returns:
        A pytree operator with ``shape == (n, m)``, ``apply(v)`` (``K v``, ``v`` ``[m]``
        or ``[m, k]``) and ``apply_transpose(u)`` (``K^T u``, ``u`` ``[n]`` or
        ``[n, k]``). Works under ``jit`` with ``config`` static; gradients flow to
        ``x`` and ``y`` through the kernel entries / features.

    Raises:
        TypeError / ValueError: ``config`` is not a KernelConfig, a required key is
            missing, the points have the wrong rank, mismatched dimensions or (when
            concrete) non-finite values.
    """
    if not isinstance(config, KernelConfig):
        raise TypeError(f"config must be a KernelConfig, got {type(config).__name__}")
    solver = config.solver_type
    if solver in _RANDOM and key is None:
        raise ValueError(
            f"key is required for solver_type={solver!r} (it draws the "
            f"{'random features' if solver == 'rff' else 'landmarks'}); "
            "pass key=jax.random.key(seed)"
        )
    if solver == "direct":
        return make_direct(config, x, y)
    if solver == "fft":
        return make_fft(config, x, y)
    if solver == "rff":
        return make_rff(config, x, y, key=key)
    return make_nystrom(config, x, y, key=key)
