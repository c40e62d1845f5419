"""Sinkhorn in scaling space on any kernel operator.

The balanced entropic plan is ``P = diag(u) K diag(v)`` (Cuturi 2013, "Sinkhorn
Distances", Alg. 1; Peyré & Cuturi 2019, "Computational Optimal Transport", Eq. 4.15),
with the scalings found by the alternating updates

    u <- a / (K v),        v <- b / (K^T u),

which touch ``K`` only through ``apply`` / ``apply_transpose``; so they run on the
direct, fft, rff and Nyström operators alike (Scetbon & Cuturi 2020; Altschuler et al.
2019). The loop is one ``jax.lax.while_loop`` (jit-able, with ``max_iterations`` and
``inner_iterations`` static). Reverse-mode gradients do not pass through a
``while_loop``: differentiate :func:`jaxdiff.ot.sinkhorn` (implicit differentiation)
instead; this solver is for applying plans cheaply.

Positivity guard: ``K v`` and ``K^T u`` are clamped below by ``floor`` (default
``sqrt(finfo.tiny)``, ~1e-19 in float32) before dividing. Exact and positive-feature
kernels are positive and never hit it unless ``K`` underflows; approximations whose
entries can be negative (Fourier features, Nyström) may, and then the scalings can grow
without bound: the result reports ``converged=False`` rather than NaN or a wrong sign.
Scaling space underflows when ``epsilon`` is small against the costs
(``exp(-C / epsilon) == 0``); use :func:`jaxdiff.ot.sinkhorn` (log domain) there.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._validation import check_finite_array, check_int_range
from jaxdiff.ot.kernel_ops.factory import KernelOperator

__all__ = ["ScalingResult", "sinkhorn_scaling"]


@struct.dataclass
class ScalingResult:
    """Scaling-space Sinkhorn solution; the plan ``diag(u) K diag(v)`` is never formed.

    Attributes:
        u: ``[n]`` left scaling.
        v: ``[m]`` right scaling.
        operator: the kernel operator ``K`` (kept to apply the plan).
        a: ``[n]`` source weights.
        b: ``[m]`` target weights.
        marginal_error_a: ``||u * K v - a||_1`` at the end.
        marginal_error_b: ``||v * K^T u - b||_1`` at the end.
        errors: ``[ceil(max_iterations / inner_iterations)]`` values of
            ``marginal_error_a`` every ``inner_iterations`` steps; ``-1`` where not reached.
        converged: both marginal errors below ``threshold`` and everything finite.
        n_iters: iterations run (a multiple of ``inner_iterations``).
    """

    u: jax.Array
    v: jax.Array
    operator: KernelOperator
    a: jax.Array
    b: jax.Array
    marginal_error_a: jax.Array
    marginal_error_b: jax.Array
    errors: jax.Array
    converged: jax.Array
    n_iters: jax.Array

    def apply(self, w: jax.Array) -> jax.Array:
        """``P w = u * K (v * w)``: ``[m]`` or ``[m, k]`` -> ``[n]`` or ``[n, k]``."""
        w = jnp.asarray(w)
        col = (lambda s: s) if w.ndim == 1 else (lambda s: s[:, None])
        return col(self.u) * self.operator.apply(col(self.v) * w)

    def apply_transpose(self, w: jax.Array) -> jax.Array:
        """``P^T w = v * K^T (u * w)``: ``[n]`` or ``[n, k]`` -> ``[m]`` or ``[m, k]``."""
        w = jnp.asarray(w)
        col = (lambda s: s) if w.ndim == 1 else (lambda s: s[:, None])
        return col(self.v) * self.operator.apply_transpose(col(self.u) * w)

    def marginals(self) -> tuple[jax.Array, jax.Array]:
        """Row and column sums ``(P 1 [n], P^T 1 [m])``."""
        n, m = self.operator.shape
        return self.apply(jnp.ones((m,), self.u.dtype)), self.apply_transpose(
            jnp.ones((n,), self.u.dtype)
        )


def _weights(field: str, value, size: int, dtype) -> jax.Array:
    if value is None:
        return jnp.full((size,), 1.0 / size, dtype)
    arr = jnp.asarray(value)
    if arr.shape != (size,):
        raise ValueError(f"{field} must have shape [{size}] (one per point), got {arr.shape}")
    check_finite_array(field, value)
    try:
        host = np.asarray(value, dtype=np.float64)
    except Exception:  # traced: not checked
        return arr.astype(dtype)
    if np.any(host < 0) or host.sum() <= 0:
        raise ValueError(f"{field} must be non-negative with positive mass, got min {host.min()}")
    return arr.astype(dtype)


def sinkhorn_scaling(
    op: KernelOperator,
    a: jax.Array | None = None,
    b: jax.Array | None = None,
    *,
    max_iterations: int = 1000,
    inner_iterations: int = 10,
    threshold: float | jax.Array = 1e-3,
    floor: float | None = None,
) -> ScalingResult:
    """Balanced Sinkhorn ``u = a / K v``, ``v = b / K^T u`` on a kernel operator.

    Args:
        op: an operator from :func:`make_kernel_operator` (shape ``(n, m)``).
        a: ``[n]`` non-negative source weights (uniform if None). ``a`` and ``b`` should
            have equal mass; they are not renormalised.
        b: ``[m]`` target weights, likewise.
        max_iterations: iteration cap (static).
        inner_iterations: iterations between two error checks (static).
        threshold: tolerance on both marginal errors (1-norm); may be traced.
        floor: positive lower clamp of ``K v`` and ``K^T u`` (static; default
            ``sqrt(finfo(dtype).tiny)``); see the module docstring.

    Returns:
        A :class:`ScalingResult`.
    """
    max_iterations = check_int_range("max_iterations", max_iterations, 1)
    inner_iterations = check_int_range("inner_iterations", inner_iterations, 1, max_iterations)
    n, m = op.shape
    dtype = jax.eval_shape(op.apply, jax.ShapeDtypeStruct((m,), jnp.float32)).dtype
    a = _weights("a", a, n, dtype)
    b = _weights("b", b, m, dtype)
    if floor is None:
        floor = float(np.sqrt(np.finfo(dtype).tiny))
    elif not (isinstance(floor, int | float) and floor > 0):
        raise ValueError(f"floor={floor!r} is out of range; allowed: a Python float > 0")
    return _solve(op, a, b, jnp.asarray(threshold, dtype), max_iterations, inner_iterations, floor)


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _solve(op, a, b, threshold, max_iterations: int, inner_iterations: int, floor: float):
    n, m = op.shape
    dtype = a.dtype
    num_checks = -(-max_iterations // inner_iterations)

    def update(_, scalings):
        u, v = scalings
        u = a / jnp.maximum(op.apply(v), floor)
        v = b / jnp.maximum(op.apply_transpose(u), floor)
        return u, v

    def error_a(u, v):
        return jnp.sum(jnp.abs(u * op.apply(v) - a))

    def cond(state):
        _, _, it, err, _ = state
        running = (it < max_iterations) & (err > threshold) & jnp.isfinite(err)
        return (it == 0) | running

    def body(state):
        u, v, it, _, errors = state
        u, v = jax.lax.fori_loop(0, inner_iterations, update, (u, v))
        err = error_a(u, v)
        errors = errors.at[it // inner_iterations].set(err)
        return u, v, it + inner_iterations, err, errors

    init = (
        jnp.ones((n,), dtype),
        jnp.ones((m,), dtype),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(jnp.inf, dtype),
        jnp.full((num_checks,), -1.0, dtype),
    )
    u, v, n_iters, err_a, errors = jax.lax.while_loop(cond, body, init)
    err_b = jnp.sum(jnp.abs(v * op.apply_transpose(u) - b))
    finite = jnp.all(jnp.isfinite(u)) & jnp.all(jnp.isfinite(v))
    converged = finite & (err_a <= threshold) & (err_b <= threshold)
    return ScalingResult(
        u=u,
        v=v,
        operator=op,
        a=a,
        b=b,
        marginal_error_a=err_a,
        marginal_error_b=err_b,
        errors=errors,
        converged=converged,
        n_iters=n_iters,
    )
