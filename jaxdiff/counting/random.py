"""Exact integer samplers for counting bridges: thinning, (multivariate) hypergeometric, Bessel.

JAX has no hypergeometric or Bessel sampler, and its binomial (rejection loops) dominated
the bridge's time on the GPU; the bridges of Counting Flows (paper: "Counting Flows";
code: github.com/njwfish/counting_flows, ``bridges/cupy/sampling``) need all three. All
have log-concave pmfs, so one routine serves them: *inversion by walking from the mode*.

Algorithm (``_logconcave_inversion``), per element and fully vectorised:

1. Start at a mode ``m0`` with relative log-weight 0. Walk down and up one integer at a
   time with the pmf ratio ``p(m±1)/p(m)`` (no factorials, no normaliser), stopping a side
   at the edge of the support or once its relative weight drops below ``exp(LOG_EPS)``.
   Log-concavity makes the weights decrease monotonically away from the mode, so the
   neglected tails hold less than ``exp(LOG_EPS) / (1 - r)`` of the mass (``r`` < 1 the
   ratio at the cut) -- with ``LOG_EPS = -40`` this is below float32 resolution of the
   running sum, so the samplers are exact to floating-point rounding (no normal or
   Poisson approximation anywhere). The walk keeps the weight ``Z_up`` of ``[m0, hi]``
   and ``Z_down`` of ``[lo, m0)`` apart.
2. Draw ``u ~ U(0, Z_up + Z_down)`` and invert the CDF of the support ordered outwards
   from the mode: ``m0, m0 + 1, ..., hi`` first, then ``m0 - 1, m0 - 2, ..., lo``. Any
   fixed order of the support gives an exact inversion; this one stops after
   ``|X - m0| + 1`` steps (a few ``sd``) instead of walking from ``lo``.

Cost: two ``lax.while_loop`` s whose trip counts are the widest window in the batch,
``~ 9 sd`` (both sides walk at once, ``sqrt(2 |LOG_EPS|) sd`` each), and the largest
``|X - m0|``, for standard deviation ``sd``, in iterations of ``UNROLL`` masked steps each on a GPU
(fewer loop round trips; finished elements do not move); memory ``O(size)``. Counts must stay below
``MAX_COUNT = 2**24`` (float32 ratios; the bridges check inputs against it and report it in
their sampling health).

Multivariate hypergeometric and multinomial splits over the leading axis of ``n`` rows use
a binary tree of conditional hypergeometric / binomial draws (exact: the multivariate laws
factor into the conditional law of a left block's total given its node's total, times the
laws inside each block). Level ``l`` of the ``ceil(log2 n)`` levels draws only for its
``<= 2**l`` non-empty nodes, so the total work is ``O(n)`` per trailing index and the
wide, high-``sd`` draws near the root run on tiny arrays (the while-loop trip count is
the widest window of a level, which shrinks with the node totals towards the leaves).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "MAX_COUNT",
    "bessel",
    "binomial_thin",
    "hypergeometric",
    "multinomial_split",
    "multivariate_hypergeometric",
    "poisson",
]

LOG_EPS = -40.0
MAX_COUNT = 2**24  # the largest float32-exact integer: the documented range of every count
# Steps per while-loop iteration off the CPU. Finished elements are masked, so extra
# steps are no-ops and the draw is unchanged; on a GPU each iteration costs a predicate
# copy to the host, and the unrolled elementwise steps fuse into one kernel (8 was the
# best of 1/4/8/16 on an H100). On the CPU there is no round trip and unrolling only
# lengthens compilation, so it runs one step per iteration.
UNROLL = 8


def _unroll() -> int:
    return 1 if jax.default_backend() == "cpu" else UNROLL


_BIG = 2**30


def _float():
    return jnp.result_type(float)


def _repeat(body):
    """``body`` applied ``_unroll()`` times (one while-loop iteration, see ``UNROLL``)."""
    steps = _unroll()

    def many(state):
        for _ in range(steps):
            state = body(state)
        return state

    return many


def _logconcave_inversion(key, mode, lo_lim, hi_lim, log_up):
    """Exact draw from a log-concave pmf on ``[lo_lim, hi_lim]`` given its ratios.

    Args:
        key: PRNG key.
        mode: int array, a start point inside the support (ideally the mode).
        lo_lim: int array, lower support bound (inclusive), broadcast with ``mode``.
        hi_lim: int array, upper support bound (inclusive).
        log_up: ``m -> log p(m+1) / p(m)`` (float array of the shape of ``m``); only called
            with ``lo_lim <= m < hi_lim``. The down ratio is ``log p(m-1)/p(m) =
            -log_up(m - 1)``.

    Returns:
        int32 array of the shape of ``mode``.
    """
    ft = _float()
    zero = jnp.zeros(mode.shape, ft)

    def walk_cond(s):
        return jnp.any(s[-2] | s[-1])

    def walk_body(s):
        lo, hi, lw_lo, lw_hi, z_dn, z_up, go_lo, go_hi = s
        c_lo = lw_lo - log_up(lo - 1)
        ok_lo = go_lo & (c_lo > LOG_EPS)
        c_hi = lw_hi + log_up(hi)
        ok_hi = go_hi & (c_hi > LOG_EPS)
        z_dn = z_dn + jnp.where(ok_lo, jnp.exp(c_lo), 0.0)
        z_up = z_up + jnp.where(ok_hi, jnp.exp(c_hi), 0.0)
        lo = jnp.where(ok_lo, lo - 1, lo)
        hi = jnp.where(ok_hi, hi + 1, hi)
        lw_lo = jnp.where(ok_lo, c_lo, lw_lo)
        lw_hi = jnp.where(ok_hi, c_hi, lw_hi)
        return lo, hi, lw_lo, lw_hi, z_dn, z_up, ok_lo & (lo > lo_lim), ok_hi & (hi < hi_lim)

    init = (mode, mode, zero, zero, zero, zero + 1.0, mode > lo_lim, mode < hi_lim)
    lo, hi, _, _, z_dn, z_up, _, _ = jax.lax.while_loop(walk_cond, _repeat(walk_body), init)

    # Outward inversion: [mode, hi] upwards first, then [lo, mode) downwards.
    u = jax.random.uniform(key, mode.shape, ft) * (z_up + z_dn)
    up = (u < z_up) | (lo >= mode)
    step = jnp.where(up, 1, -1)
    target = jnp.where(up, u, u - z_up)
    end = jnp.where(up, hi, lo)
    lw0 = jnp.where(up, zero, -log_up(jnp.where(up, mode, mode - 1)))
    m0 = jnp.where(up, mode, mode - 1)
    cum0 = jnp.exp(lw0)

    def inv_cond(s):
        return jnp.any(~s[-1])

    def inv_body(s):
        m, lw, cum, done = s
        nxt = m + step
        lw_n = lw + step.astype(ft) * log_up(jnp.minimum(m, nxt))
        go = ~done
        m = jnp.where(go, nxt, m)
        lw = jnp.where(go, lw_n, lw)
        cum = jnp.where(go, cum + jnp.exp(lw_n), cum)
        return m, lw, cum, done | (cum > target) | (m == end)

    init = (m0, lw0, cum0, (cum0 > target) | (m0 == end))
    m, _, _, _ = jax.lax.while_loop(inv_cond, _repeat(inv_body), init)
    return m.astype(jnp.int32)


def hypergeometric(key, ngood, nbad, nsample):
    """Exact hypergeometric draws: good items among ``nsample`` drawn without replacement.

    pmf ``C(ngood, k) C(nbad, nsample - k) / C(ngood + nbad, nsample)`` on
    ``max(0, nsample - nbad) <= k <= min(nsample, ngood)``. Inversion from the mode
    (module docstring): ``O(sd)`` loop iterations, exact to float rounding.

    Args:
        key: PRNG key.
        ngood: non-negative int array, good items (broadcast with the others).
        nbad: non-negative int array, bad items.
        nsample: non-negative int array, draws, ``nsample <= ngood + nbad``. Values are
            not checked (they may be traced).

    Returns:
        int32 array of the broadcast shape.
    """
    ngood, nbad, nsample = jnp.broadcast_arrays(
        *(jnp.asarray(a, jnp.int32) for a in (ngood, nbad, nsample))
    )
    ft = _float()
    kf, bf, nf = ngood.astype(ft), nbad.astype(ft), nsample.astype(ft)
    lo_lim = jnp.maximum(0, nsample - nbad)
    hi_lim = jnp.minimum(nsample, ngood)
    mode = jnp.floor((nf + 1.0) * (kf + 1.0) / (kf + bf + 2.0)).astype(jnp.int32)
    mode = jnp.clip(mode, lo_lim, hi_lim)

    def log_up(k):
        k = k.astype(ft)
        return jnp.log(kf - k) + jnp.log(nf - k) - jnp.log(k + 1.0) - jnp.log(bf - nf + k + 1.0)

    return _logconcave_inversion(key, mode, lo_lim, hi_lim, log_up)


def bessel(key, lam_p, lam_m, order):
    """Exact Bessel(order, 2 sqrt(lam_p lam_m)) draws.

    Law as in Devroye (2002), "Simulating Bessel random variables", Statist. Probab.
    Lett. 57: pmf ``P(M = m) = lam^(m + d/2) / (m! (m + d)! I_d(2 sqrt(lam)))`` with
    ``lam = lam_p * lam_m`` and ``d = order``: the law of the smaller of two Poisson counts
    (rates ``lam_p``, ``lam_m``) given their difference ``d`` -- the Skellam bridge slack of
    Counting Flows (``bridges/*/sampling/bessel.py`` upstream). Sampled by inversion from the
    mode ``floor((sqrt(4 lam + d^2) - d) / 2)`` (module docstring), not Devroye's rejection
    scheme, which needs ``I_d`` (absent from ``jax.scipy``): ``O(sqrt(m0 + 1))`` iterations.
    ``lam = 0`` gives 0.

    Args:
        key: PRNG key.
        lam_p: non-negative float array, birth intensity (broadcast with ``order``).
        lam_m: non-negative float array, death intensity.
        order: non-negative int array ``d``.

    Returns:
        int32 array of the broadcast shape.
    """
    ft = _float()
    lam_p, lam_m, order = jnp.broadcast_arrays(
        jnp.asarray(lam_p, ft), jnp.asarray(lam_m, ft), jnp.asarray(order, jnp.int32)
    )
    lam = lam_p * lam_m
    df = order.astype(ft)
    pos = lam > 0
    log_lam = jnp.log(jnp.where(pos, lam, 1.0))
    mode = jnp.floor((jnp.sqrt(4.0 * lam + df * df) - df) / 2.0).astype(jnp.int32)
    mode = jnp.maximum(mode, 0)
    hi_lim = jnp.where(pos, _BIG, 0)

    def log_up(m):
        m = m.astype(ft)
        return log_lam - jnp.log(m + 1.0) - jnp.log(m + 1.0 + df)

    out = _logconcave_inversion(key, mode, jnp.zeros_like(mode), hi_lim, log_up)
    return jnp.where(pos, out, 0)


def poisson(key, rate):
    """Exact ``Poisson(rate)`` draws by inversion from the mode ``floor(rate)``.

    pmf ratio ``p(k+1)/p(k) = rate / (k + 1)`` (module docstring); ``rate = 0`` gives 0.
    Used instead of ``jax.random.poisson`` for the same reason as in ``binomial_thin``
    (its rejection loops cost 1.2 ms per bridge call at 4096 x 15 on an H100).
    ``O(sqrt(rate))`` steps.

    Args:
        key: PRNG key.
        rate: non-negative float array.

    Returns:
        int32 array of the shape of ``rate``.
    """
    ft = _float()
    rate = jnp.asarray(rate, ft)
    pos = rate > 0
    log_rate = jnp.log(jnp.where(pos, rate, 1.0))
    mode = jnp.floor(rate).astype(jnp.int32)
    hi_lim = jnp.where(pos, _BIG, 0)

    def log_up(k):
        return log_rate - jnp.log(k.astype(ft) + 1.0)

    out = _logconcave_inversion(key, mode, jnp.zeros_like(mode), hi_lim, log_up)
    return jnp.where(pos, out, 0)


def binomial_thin(key, n, p):
    """Binomial thinning: keep each of ``n`` items independently with probability ``p``.

    Exact ``Binomial(n, p)`` by inversion from the mode ``floor((n + 1) p)`` with the pmf
    ratio ``p(k+1)/p(k) = (n - k) p / ((k + 1)(1 - p))`` (module docstring). Not
    ``jax.random.binomial``: its rejection loops took 1.3 of the 1.5 ms of a Skellam bridge
    call at 4096 x 15 on an H100 (benchmarks/RESULTS.md), this takes ~0.2 ms. ``p`` is
    clipped to ``[0, 1]``; ``n = 0`` or ``p = 0`` gives 0, ``p = 1`` gives ``n``. Cost
    ``O(sqrt(n p (1 - p)))`` steps, so for ``n`` in the millions BTRS would be cheaper.

    Args:
        key: PRNG key.
        n: non-negative int array.
        p: float array broadcastable with ``n``.

    Returns:
        int32 array of the broadcast shape.
    """
    ft = _float()
    n, p = jnp.broadcast_arrays(jnp.asarray(n, jnp.int32), jnp.asarray(p, ft))
    p = jnp.clip(p, 0.0, 1.0)
    nf = n.astype(ft)
    lo_lim = jnp.where(p >= 1.0, n, 0)
    hi_lim = jnp.where(p <= 0.0, 0, n)
    mode = jnp.clip(jnp.floor((nf + 1.0) * p).astype(jnp.int32), lo_lim, hi_lim)
    log_odds = jnp.log(p) - jnp.log1p(-p)

    def log_up(k):
        k = k.astype(ft)
        return jnp.log(nf - k) - jnp.log(k + 1.0) + log_odds

    return _logconcave_inversion(key, mode, lo_lim, hi_lim, log_up)


def _tree_split(key, weights, total, split_fn):
    """Split ``total`` over the leading axis of ``weights`` by a binary tree of draws.

    Node sums are built bottom-up by pairwise sums (a zero-weight block sums to exactly
    zero, also for float weights), padding a level with one zero row when it is odd, so
    level ``l`` (root ``l = 0``) has ``ceil(n / 2**(levels - l))`` nodes. Going down, level
    ``l`` makes one ``split_fn(key_l, left_weight, right_weight, node_total)`` draw per
    node on arrays of shape ``[nodes_l, ...]`` (a static Python loop: each level has its
    own shape), interleaves ``(left, node_total - left)`` into the children and drops a
    padding child (it has weight zero, hence allocation zero). ``O(n)`` work per trailing
    index; the allocation sums to ``total`` exactly by construction.

    Args:
        key: PRNG key; level ``l`` uses ``fold_in(key, l)``.
        weights: ``[n, ...]`` array, node weights (int urn sizes or float probabilities).
        total: int array broadcastable to ``weights.shape[1:]``.
        split_fn: ``(key, wl, wr, n) -> left`` int32 draw of the left share of ``n``.

    Returns:
        ``[n, ...]`` int32 allocation.
    """
    n = weights.shape[0]
    tail = weights.shape[1:]
    if n == 0:
        return jnp.zeros(weights.shape, jnp.int32)
    alloc = jnp.broadcast_to(jnp.asarray(total, jnp.int32), tail)[None]
    sums = [weights]  # sums[-1] is the coarsest level built so far
    while sums[-1].shape[0] > 1:
        w = sums[-1]
        if w.shape[0] % 2:
            w = jnp.concatenate([w, jnp.zeros_like(w[:1])])
        sums.append(w.reshape((-1, 2) + tail).sum(1))
    levels = len(sums) - 1
    for lvl in range(levels):
        child = sums[levels - lvl - 1]
        nodes = alloc.shape[0]
        if child.shape[0] < 2 * nodes:
            child = jnp.concatenate([child, jnp.zeros_like(child[:1])])
        child = child.reshape((nodes, 2) + tail)
        left = split_fn(jax.random.fold_in(key, lvl), child[:, 0], child[:, 1], alloc)
        alloc = jnp.stack([left, alloc - left], axis=1).reshape((2 * nodes,) + tail)
        alloc = alloc[: sums[levels - lvl - 1].shape[0]]
    return alloc


def multivariate_hypergeometric(key, pop, total):
    """Draw ``total`` items without replacement from the urns ``pop`` along axis 0.

    Args:
        key: PRNG key.
        pop: ``[n, ...]`` non-negative int array, urn sizes.
        total: ``[...]`` int array with ``0 <= total <= pop.sum(0)``.

    Returns:
        ``[n, ...]`` int32 counts, ``0 <= out <= pop``, ``out.sum(0) == total`` exactly.
    """
    pop = jnp.asarray(pop, jnp.int32)
    return _tree_split(key, pop, jnp.asarray(total, jnp.int32), hypergeometric)


def multinomial_split(key, total, weights):
    """Multinomial allocation of ``total`` counts over axis 0 with probabilities ``weights``.

    Args:
        key: PRNG key.
        total: ``[...]`` non-negative int array.
        weights: ``[n, ...]`` non-negative floats (normalised per trailing index; each
            trailing index with positive ``total`` needs a positive weight).

    Returns:
        ``[n, ...]`` int32 counts summing exactly to ``total`` along axis 0.
    """
    weights = jnp.asarray(weights, _float())

    def split(k, wl, wr, n):
        den = wl + wr
        p = jnp.where(den > 0, wl / jnp.where(den > 0, den, 1.0), 0.0)
        return binomial_thin(k, n, p)

    return _tree_split(key, weights, jnp.asarray(total, jnp.int32), split)
