"""Blocked log-sum-exp reductions over a cost that is never materialised.

The Sinkhorn half-update in the log domain (Peyré & Cuturi 2019, "Computational Optimal
Transport", Remark 4.23) needs, for every source point ``x_i``,

    h_i = epsilon * log sum_j exp((g_j - C(x_i, y_j)) / epsilon),

a soft-min of the costs shifted by the other potential. Here the rows of ``x`` are
processed in blocks of ``block_rows`` so at most a ``block_rows x m`` tile of costs
exists at a time (memory O(block_rows m + n + m), never O(n m)).

:func:`row_lse` carries a hand-written reverse rule (a second blocked pass), so
gradients w.r.t. ``x``, ``y``, ``g`` and ``epsilon`` need no stored tiles either: with
``w_ij = exp((g_j - C_ij - h_i) / epsilon)`` (each row sums to one),

    dh_i/dg_j = w_ij,   dh_i/dC_ij = -w_ij,
    dh_i/depsilon = (h_i - sum_j w_ij (g_j - C_ij)) / epsilon,

and ``dC/dx``, ``dC/dy`` come from the tile cost's own VJP. For the squared Euclidean
and cosine costs the forward pass can run on a fused GPU kernel
(:mod:`jaxdiff.kernels.lse_dot`) instead of XLA; the reverse pass is always XLA.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxdiff import kernels
from jaxdiff.kernels.lse_dot import PRECISIONS

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "block_rows_for",
    "prepare_points",
    "row_lse",
    "row_lse_weighted",
    "transport_cost",
]

#: Forward-pass implementations of :func:`row_lse`.
BACKENDS = ("xla", "pallas", "triton")

# Tile costs after :func:`prepare_points`: cosine becomes "dot" (1 - <x, y>) on unit rows.
_TILE_COSTS = ("sqeuclidean", "euclidean", "dot")


def block_rows_for(n: int, m: int, tile_elements: int) -> int:
    """Rows per block so a ``block x m`` tile holds at most ``tile_elements`` entries."""
    return int(max(1, min(n, tile_elements // max(m, 1))))


def prepare_points(x: jax.Array, y: jax.Array, cost: str) -> tuple[jax.Array, jax.Array, str]:
    """Map a public cost onto a tile cost with better conditioned points.

    ``sqeuclidean`` and ``euclidean`` are translation invariant: both clouds are shifted
    by the mean of ``x`` so the expansion ``|x|^2 + |y|^2 - 2 <x, y>`` cancels fewer
    digits. ``cosine`` (``1 - <x, y> / (|x| |y|)``) becomes ``"dot"`` on unit rows.
    Differentiable; O((n + m) d).
    """
    if cost == "cosine":
        unit = lambda z: z / jnp.linalg.norm(z, axis=-1, keepdims=True)  # noqa: E731
        return unit(x), unit(y), "dot"
    center = lax.stop_gradient(jnp.mean(x, axis=0))
    return x - center, y - center, cost


def _dot(x: jax.Array, y: jax.Array, precision: str) -> jax.Array:
    """``[b, m]`` products ``x y^T`` at the requested input precision, f32 out."""
    if precision == "bf16":
        return jnp.dot(
            x.astype(jnp.bfloat16), y.astype(jnp.bfloat16).T, preferred_element_type=x.dtype
        )
    prec = lax.Precision.HIGHEST if precision == "float32" else lax.Precision.DEFAULT
    return jnp.dot(x, y.T, precision=prec)


def _tile_cost(x: jax.Array, y: jax.Array, cost: str, precision: str) -> jax.Array:
    """``[b, m]`` costs between a block of rows ``x`` ``[b, d]`` and all of ``y``."""
    if cost == "dot":
        return 1.0 - _dot(x, y, precision)
    sq = jnp.sum(x * x, axis=1)[:, None] + jnp.sum(y * y, axis=1)[None, :]
    sq = jnp.maximum(sq - 2.0 * _dot(x, y, precision), 0.0)
    if cost == "sqeuclidean":
        return sq
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _blocks(arr: jax.Array, block: int, fill: float = 0.0) -> jax.Array:
    """``[n, ...]`` -> ``[ceil(n / block), block, ...]``, padded with ``fill``."""
    n = arr.shape[0]
    pad = -n % block
    arr = jnp.pad(arr, [(0, pad)] + [(0, 0)] * (arr.ndim - 1), constant_values=fill)
    return arr.reshape((n + pad) // block, block, *arr.shape[1:])


def _unblock(arr: jax.Array, n: int) -> jax.Array:
    return arr.reshape(-1, *arr.shape[2:])[:n]


def _xla_forward(x, y, g, eps, cost, precision, block):
    def one(xb):
        return eps * jax.nn.logsumexp((g[None, :] - _tile_cost(xb, y, cost, precision)) / eps, 1)

    return _unblock(lax.map(one, _blocks(x, block)), x.shape[0])


def _kernel_forward(x, y, g, eps, cost, precision, backend):
    """The fused-kernel forward: ``(g_j - C_ij) / eps`` as ``<x_i, s y_j> + bias_j``."""
    fn = kernels.lse_dot_pallas if backend == "pallas" else kernels.lse_dot_triton
    kwargs = {"interpret": jax.default_backend() != "gpu"} if backend == "pallas" else {}
    if cost == "dot":  # (g - 1 + <x, y>) / eps
        lse = fn(x, y / eps, (g - 1.0) / eps, precision=precision, **kwargs)
        return eps * lse
    # sqeuclidean: (g - |y|^2 + 2 <x, y> - |x|^2) / eps
    lse = fn(x, y * (2.0 / eps), (g - jnp.sum(y * y, axis=1)) / eps, precision=precision, **kwargs)
    return eps * lse - jnp.sum(x * x, axis=1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def row_lse(x, y, g, eps, cost, precision, block, backend):
    """``h_i = eps log sum_j exp((g_j - C(x_i, y_j)) / eps)`` without an n x m array.

    Args:
        x: ``[n, d]`` rows (prepared by :func:`prepare_points`).
        y: ``[m, d]`` columns.
        g: ``[m]`` potential on the columns (may hold ``-inf`` for empty columns).
        eps: scalar, absolute regularisation (> 0).
        cost: tile cost, ``"sqeuclidean"``, ``"euclidean"`` or ``"dot"``. Static.
        precision: dot-product input precision, one of :data:`PRECISIONS`. Static.
        block: rows per block (XLA path and the reverse pass). Static.
        backend: forward implementation, one of :data:`BACKENDS`; the fused kernels
            support ``"sqeuclidean"`` and ``"dot"`` only. Static.

    Returns:
        ``[n]`` soft-min values ``h``, in the dtype of ``x``.
    """
    if backend == "xla" or cost == "euclidean":
        return _xla_forward(x, y, g, eps, cost, precision, block)
    return _kernel_forward(x, y, g, eps, cost, precision, backend)


def _row_lse_fwd(x, y, g, eps, cost, precision, block, backend):
    h = row_lse(x, y, g, eps, cost, precision, block, backend)
    return h, (x, y, g, eps, h)


def _row_lse_bwd(cost, precision, block, backend, res, ct):
    del backend
    x, y, g, eps, h = res
    n = x.shape[0]
    finite_g = jnp.isfinite(g)
    g_safe = jnp.where(finite_g, g, 0.0)

    def step(carry, blk):
        dy, dg, deps = carry
        xb, hb, cb = blk
        c_tile, pull = jax.vjp(lambda a, b: _tile_cost(a, b, cost, precision), xb, y)
        ok = jnp.isfinite(hb)[:, None] & finite_g[None, :]
        z = (g_safe[None, :] - c_tile - jnp.where(ok, hb[:, None], 0.0)) / eps
        w = jnp.where(ok, jnp.exp(z), 0.0)  # [b, m], rows sum to 1
        cw = cb[:, None] * w
        dxb, dyb = pull(-cw)
        resid = jnp.where(ok, g_safe[None, :] - c_tile, 0.0)
        deps_b = jnp.sum(cb * jnp.where(jnp.isfinite(hb), hb, 0.0)) - jnp.sum(cw * resid)
        return (dy + dyb, dg + jnp.sum(cw, axis=0), deps + deps_b / eps), dxb

    init = (jnp.zeros_like(y), jnp.zeros_like(g), jnp.zeros((), dtype=x.dtype))
    blocks = (_blocks(x, block), _blocks(h, block), _blocks(ct, block))
    (dy, dg, deps), dx = lax.scan(step, init, blocks)
    deps = jnp.asarray(deps, dtype=jnp.result_type(eps)).reshape(jnp.shape(eps))
    return _unblock(dx, n), dy, dg, deps


row_lse.defvjp(_row_lse_fwd, _row_lse_bwd)


def row_lse_weighted(x, y, f, g, eps, vec, cost, precision, block):
    """Signed soft-sum ``eps log |sum_j exp((f_i + g_j - C_ij) / eps) vec_j|`` and sign.

    The plan applied to a vector (``P vec``) is ``sign * exp(out / eps)``. Blocked over
    rows, each block rematerialised in the reverse pass (``jax.checkpoint``), so neither
    direction stores an n x m array.

    Args:
        x: ``[n, d]`` prepared rows.
        y: ``[m, d]`` prepared columns.
        f: ``[n]`` row potential.
        g: ``[m]`` column potential.
        eps: scalar regularisation.
        vec: ``[m]`` real weights on the columns.
        cost: tile cost, as in :func:`row_lse`.
        precision: dot-product precision, as in :func:`row_lse`.
        block: rows per block.

    Returns:
        ``(out [n], sign [n])``.
    """

    @jax.checkpoint
    def one(blk):
        xb, fb = blk
        logits = (fb[:, None] + g[None, :] - _tile_cost(xb, y, cost, precision)) / eps
        out, sign = jax.nn.logsumexp(logits, axis=1, b=vec[None, :], return_sign=True)
        return eps * out, sign

    out, sign = lax.map(one, (_blocks(x, block), _blocks(f, block)))
    n = x.shape[0]
    return _unblock(out, n), _unblock(sign, n)


def transport_cost(x, y, f, g, eps, cost, precision, block):
    """``<P, C> = sum_ij exp((f_i + g_j - C_ij) / eps) C_ij``, blocked (scalar)."""

    @jax.checkpoint
    def one(blk):
        xb, fb = blk
        c_tile = _tile_cost(xb, y, cost, precision)
        plan = jnp.exp((fb[:, None] + g[None, :] - c_tile) / eps)
        return jnp.sum(jnp.where(plan > 0, plan * c_tile, 0.0))

    return jnp.sum(lax.map(one, (_blocks(x, block), _blocks(f, block, -jnp.inf))))
