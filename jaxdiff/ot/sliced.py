"""Sliced optimal transport: sliced / max-sliced Wasserstein distances, sliced transport map.

Notation: ``x`` is ``[n, d]`` with weights ``a`` ``[n]``, ``y`` is ``[m, d]`` with weights
``b`` ``[m]``; ``theta`` ``[d, K]`` holds ``K`` unit directions drawn uniformly on the
sphere (Gaussian, then normalised). For one direction, ``W_p^p`` between the 1-D
projections is computed exactly from the quantile functions (Peyré & Cuturi 2019,
"Computational Optimal Transport", Remark 2.30):

    W_p^p(mu, nu) = int_0^1 |F_mu^{-1}(t) - F_nu^{-1}(t)|^p dt,
    W_inf(mu, nu) = sup { |F_mu^{-1}(t) - F_nu^{-1}(t)| : t in (0, 1) }   (p = inf).

The sliced distance follows POT's convention (Bonneel et al. 2015, "Sliced and Radon
Wasserstein Barycenters of Measures", JMIV, Eq. 2):

    SW_p(x, y) = ( (1/K) sum_k W_p^p(theta_k^T x, theta_k^T y) )^(1/p),

and the max-sliced distance (Deshpande et al. 2019, CVPR) is
``max_k W_p^p(theta_k^T x, theta_k^T y)^(1/p)`` over the same random directions. For
``p = inf`` both are the limit ``p -> inf``: ``max_k W_inf(theta_k^T x, theta_k^T y)``.
Everything is differentiable in ``x`` and ``y`` (through the sort) and works under
``jit`` and ``vmap``; ``num_projections`` and ``p`` are static.

Inputs: weights need not sum to 1, they are normalised (``a / sum(a)``); they must be
finite, non-negative, with a positive total. Concrete bad values (NaN/inf points or
weights, negative weights, ``p`` not in ``[1, inf]``, ``step_size <= 0``) raise at once.
Under ``jit`` traced values cannot raise: a distance is then NaN, and
:func:`sliced_transport_map` returns all-NaN points, whenever a point, a weight or
``step_size`` is invalid (never a plausible-looking number).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._keys import as_key
from jaxdiff._validation import check_int_range, check_point_cloud
from jaxdiff.ot.checks import normalized_weights, positive_scalar

__all__ = [
    "max_sliced_wasserstein",
    "random_projections",
    "sliced_transport_map",
    "sliced_wasserstein",
]

#: Largest projection buffers accepted (``(n + m + d) * K`` entries), in bytes.
MAX_PROJECTION_BYTES = 1 << 30
#: Largest ``num_iterations`` accepted by :func:`sliced_transport_map`.
MAX_ITERATIONS = 100_000


def _check_num_projections(num, rows: int, dtype) -> int:
    num = check_int_range("num_projections", num, low=1)
    per_direction = rows * jnp.dtype(dtype).itemsize
    if num * per_direction > MAX_PROJECTION_BYTES:
        raise ValueError(
            f"num_projections={num} needs {num * per_direction / 2**30:.1f} GiB of projections "
            f"for {rows} rows (points and dimensions); allowed: num_projections <= "
            f"{MAX_PROJECTION_BYTES // per_direction} (MAX_PROJECTION_BYTES = 1 GiB)"
        )
    return num


def random_projections(key: jax.Array, d: int, num: int, dtype=jnp.float32) -> jax.Array:
    """``num`` directions uniform on the unit sphere of R^d, as columns ``[d, num]``.

    The layout is POT's ``projections=`` argument (``ot.sliced_wasserstein_distance``).
    """
    key = as_key(key)
    d = check_int_range("d", d, low=1)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype, got {dtype!r}")
    num = _check_num_projections(num, d, dtype)
    theta = jax.random.normal(key, (d, num), dtype=dtype)
    return theta / jnp.linalg.norm(theta, axis=0, keepdims=True)


def _check_p(p) -> float:
    if isinstance(p, bool | np.bool_) or not isinstance(p, int | float | np.integer | np.floating):
        raise TypeError(f"p must be a real number >= 1 (or inf), got {type(p).__name__}: {p!r}")
    if not float(p) >= 1:  # also rejects NaN
        raise ValueError(f"p={p!r} is not allowed; p must be a number >= 1 (or inf)")
    return float(p)


def _check_clouds(key, x, y, num_projections):
    """Checked key, float ``x`` ``[n, d]``, ``y`` ``[m, d]``, ``K`` and a finiteness flag."""
    key = as_key(key)
    x, y = check_point_cloud("x", x), check_point_cloud("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same dimension; got x.shape={x.shape}, y.shape={y.shape}"
        )
    dtype = jnp.result_type(x.dtype, y.dtype, float)
    x, y = x.astype(dtype), y.astype(dtype)
    rows = x.shape[0] + y.shape[0] + x.shape[1]
    num_projections = _check_num_projections(num_projections, rows, dtype)
    finite = jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(y))
    return key, x, y, num_projections, finite


def _per_direction(u, v, a, b, p: float) -> jax.Array:
    """Per column ``W_p^p`` (``W_inf`` if ``p = inf``) of 1-D measures ``u`` [n, K], ``v`` [m, K].

    Uniform equal-size measures: ``|sort(u) - sort(v)|`` row by row. Otherwise the two
    CDFs are merged: on each interval between consecutive cumulative weights both
    quantile functions are constant (Peyré & Cuturi 2019, Remark 2.30). For ``p = inf``
    intervals shorter than the float rounding of the cumulative weights
    (``4 sqrt(n + m)`` machine epsilons) are ignored.
    """
    n, m = u.shape[0], v.shape[0]
    if a is None and b is None and n == m:
        gap = jnp.abs(jnp.sort(u, axis=0) - jnp.sort(v, axis=0))
        return jnp.max(gap, axis=0) if math.isinf(p) else jnp.mean(gap**p, axis=0)
    tol = 4.0 * math.sqrt(n + m) * jnp.finfo(u.dtype).eps

    def cumulative(w, order, size):
        if w is None:  # exact k / size, so equal fractions of both measures compare equal
            return jnp.arange(1, size + 1, dtype=u.dtype) / size
        return jnp.cumsum(w[order])

    def one(uk, vk):
        iu, iv = jnp.argsort(uk), jnp.argsort(vk)
        cu, cv = cumulative(a, iu, n), cumulative(b, iv, m)
        qs = jnp.sort(jnp.concatenate([cu, cv]))
        uq = uk[iu][jnp.clip(jnp.searchsorted(cu, qs), 0, n - 1)]
        vq = vk[iv][jnp.clip(jnp.searchsorted(cv, qs), 0, m - 1)]
        delta = jnp.diff(qs, prepend=jnp.zeros((1,), qs.dtype))
        gap = jnp.abs(uq - vq)
        if math.isinf(p):
            return jnp.max(jnp.where(delta > tol, gap, 0.0))
        return jnp.sum(delta * gap**p)

    return jax.vmap(one, in_axes=(1, 1))(u, v)


def _projected(key, x, y, num_projections, a, b, p):
    """Per-direction values, the checked ``p`` and the validity flag of the inputs."""
    p = _check_p(p)
    key, x, y, num_projections, ok = _check_clouds(key, x, y, num_projections)
    if a is not None:
        a, ok_a = normalized_weights("a", a, x.shape[0], x.dtype)
        ok &= ok_a
    if b is not None:
        b, ok_b = normalized_weights("b", b, y.shape[0], x.dtype)
        ok &= ok_b
    theta = random_projections(key, x.shape[1], num_projections, dtype=x.dtype)
    return _per_direction(x @ theta, y @ theta, a, b, p), p, ok


def sliced_wasserstein(
    key: jax.Array, x: jax.Array, y: jax.Array, *, num_projections: int = 50, a=None, b=None, p=2
) -> jax.Array:
    """Sliced p-Wasserstein distance (not raised to the p-th power; POT's convention).

    Args:
      key: PRNG key for the directions (typed or legacy); ``random_projections(key, d,
        num_projections)`` gives the exact directions used (pass them to POT as
        ``projections=``).
      x: source points ``[n, d]``, real (floating or integer).
      y: target points ``[m, d]``.
      num_projections: number of random directions ``K`` (static, >= 1; the ``[n + m + d,
        K]`` projection buffers must fit in ``MAX_PROJECTION_BYTES``).
      a: source weights ``[n]`` (default uniform): finite, >= 0, positive total;
        normalised to sum 1.
      b: target weights ``[m]``, likewise.
      p: ground-cost exponent (static): a number ``>= 1`` or ``inf``.

    Returns:
      Scalar ``( mean_k W_p^p(theta_k^T x, theta_k^T y) )^(1/p)``
      (``max_k W_inf(...)`` for ``p = inf``); NaN when traced inputs are invalid.

    Raises:
      TypeError: non-key ``key``, non-real arrays, a non-number ``p`` or
        ``num_projections``.
      ValueError: bad shapes, concrete NaN/inf points or weights, negative weights or a
        zero total, ``p`` NaN or below 1, ``num_projections`` below 1 or too large.
    """
    per, p, ok = _projected(key, x, y, num_projections, a, b, p)
    value = jnp.max(per) if math.isinf(p) else jnp.mean(per) ** (1.0 / p)
    return jnp.where(ok, value, jnp.nan)


def max_sliced_wasserstein(
    key: jax.Array, x: jax.Array, y: jax.Array, *, num_projections: int = 50, a=None, b=None, p=2
) -> jax.Array:
    """Max-sliced p-Wasserstein distance over ``num_projections`` random directions.

    Deshpande et al. 2019, "Max-Sliced Wasserstein Distance and its use for GANs", CVPR.
    Same arguments, checks and traced behaviour as :func:`sliced_wasserstein`; returns
    ``max_k W_p^p(...)^(1/p)`` (POT's ``ot.max_sliced_wasserstein_distance`` given the same
    projections).
    """
    per, p, ok = _projected(key, x, y, num_projections, a, b, p)
    value = jnp.max(per) if math.isinf(p) else jnp.max(per) ** (1.0 / p)
    return jnp.where(ok, value, jnp.nan)


def sliced_transport_map(
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    num_projections: int = 50,
    num_iterations: int = 20,
    step_size: float | jax.Array = 1.0,
) -> jax.Array:
    """Move ``x`` toward ``y`` by iterative sliced transport; returns the moved ``[n, d]`` points.

    Each iteration draws ``K`` fresh directions ``theta_k`` and applies (Rabin et al. 2011,
    "Wasserstein Barycenter and its Application to Texture Mixing", SSVM; Bonneel et al.
    2015, Sec. 3, a gradient step on ``SW_2^2``):

        x_i <- x_i + step_size * (1/K) sum_k (q_k(r_ik) - theta_k^T x_i) theta_k,

    where ``r_ik`` is the rank of ``theta_k^T x_i`` among the ``n`` projections and
    ``q_k(r)`` is the matched quantile of the sorted ``theta_k^T y`` (rank ``r`` itself
    when ``n == m``; index ``floor((r + 1/2) m / n)`` otherwise). Uniform weights.
    Since ``E[theta theta^T] = I / d``, one iteration moves about ``1/d`` of the way per
    direction; ``step_size`` up to ``d`` speeds it up. The loop is one ``lax.scan``;
    ``num_projections`` and ``num_iterations`` (in ``[0, MAX_ITERATIONS]``) are static,
    ``step_size`` (finite, > 0) is traced. Under ``jit``, non-finite points or an invalid
    ``step_size`` give all-NaN output.
    """
    key, x, y, num_projections, ok = _check_clouds(key, x, y, num_projections)
    num_iterations = check_int_range("num_iterations", num_iterations, 0, MAX_ITERATIONS)
    step_size, ok_step = positive_scalar("step_size", step_size, x.dtype)
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    match = jnp.floor((jnp.arange(n) + 0.5) * m / n).astype(jnp.int32)

    def step(xt, k):
        theta = random_projections(k, d, num_projections, dtype=x.dtype)
        px, py = xt @ theta, y @ theta  # [n, K], [m, K]
        ranks = jnp.argsort(jnp.argsort(px, axis=0), axis=0)
        target = jnp.sort(py, axis=0)[match]  # [n, K] sorted quantiles of y
        disp = jnp.take_along_axis(target, ranks, axis=0) - px
        return xt + step_size * (disp @ theta.T) / num_projections, None

    keys = jax.random.split(key, num_iterations)
    out, _ = jax.lax.scan(step, x, keys)
    return jnp.where(ok & ok_step, out, jnp.nan)
