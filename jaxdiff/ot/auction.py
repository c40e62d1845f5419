"""Minimum-cost assignment on device: Bertsekas' auction with eps-scaling.

Bertsekas 1988, "The auction algorithm: a distributed relaxation method for the
assignment problem", Ann. Oper. Res. 14; Jacobi variant with eps-scaling (Bertsekas &
Castañón 1991). Costs are rescaled to ``[0, 1]``; the last phase uses ``eps = 1e-5 / n``,
so the total assignment cost is within ``n * eps * (max C - min C) = 1e-5 (max C - min C)``
of the optimum (eps-complementary slackness), i.e. optimal up to float32 rounding for the
batch sizes this is meant for (n up to a few hundred).

Each phase is a ``lax.while_loop`` bounded by ``max_rounds``. A phase that runs out of
rounds is completed greedily (unassigned rows take the unused columns in order), so the
result is always a permutation; :func:`auction` reports whether the last phase, the one
the optimality bound rests on, finished on its own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._validation import check_int_range

__all__ = ["MAX_ROUNDS", "auction"]

#: Upper bound accepted for ``max_rounds`` (a safety net, not a tuning knob).
MAX_ROUNDS = 10**7


def _auction_phase(benefit, prices, eps, max_rounds):
    """One Jacobi auction at fixed ``eps`` from an empty assignment; returns (prices, obj)."""
    n = benefit.shape[0]
    ar = jnp.arange(n)

    def cond(state):
        _, obj, _, it = state
        return jnp.any(obj < 0) & (it < max_rounds)

    def body(state):
        prices, obj, owner, it = state
        values = benefit - prices[None, :]
        # best and second-best values by two reductions (lax.top_k is ~10x slower on CPU)
        best = jnp.argmax(values, axis=1)
        second = jnp.max(jnp.where(ar[None, :] == best[:, None], -jnp.inf, values), axis=1)
        bid = benefit[ar, best] - second + eps  # = price + (v1 - v2) + eps
        bidding = obj < 0
        bids = jnp.where(bidding[:, None] & (best[:, None] == ar[None, :]), bid[:, None], -jnp.inf)
        win_bid = jnp.max(bids, axis=0)
        winner = jnp.argmax(bids, axis=0)
        has_bid = win_bid > -jnp.inf
        prices = jnp.where(has_bid, win_bid, prices)
        loser = jnp.where(has_bid & (owner >= 0), owner, n)
        obj = obj.at[loser].set(-1, mode="drop")
        obj = obj.at[jnp.where(has_bid, winner, n)].set(ar, mode="drop")
        owner = jnp.where(has_bid, winner, owner)
        return prices, obj, owner, it + 1

    minus = -jnp.ones((n,), jnp.int32)
    prices, obj, _, _ = jax.lax.while_loop(cond, body, (prices, minus, minus, 0))
    return prices, obj


def auction(cost: jax.Array, *, max_rounds: int = 100_000) -> tuple[jax.Array, jax.Array]:
    """Minimum-cost permutation of a finite square cost and whether the auction finished.

    Args:
      cost: ``[n, n]`` real costs (finite; callers check).
      max_rounds: bidding rounds allowed per eps phase, in ``[1, MAX_ROUNDS]``. Static.

    Returns:
      ``(perm, finished)``: ``perm`` ``[n]`` int32, ``perm[i]`` is row i's column (always a
      permutation); ``finished`` a bool scalar, False when the last phase ran out of rounds
      and the greedy completion filled some rows (the permutation may then be suboptimal).
    """
    max_rounds = check_int_range("max_rounds", max_rounds, 1, MAX_ROUNDS)
    cost = jnp.asarray(cost)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1] or cost.shape[0] < 1:
        raise ValueError(f"cost must be square [n, n] with n >= 1, got shape {cost.shape}")
    n = cost.shape[0]
    if n == 1:
        return jnp.zeros((1,), jnp.int32), jnp.asarray(True)
    dtype = jnp.promote_types(cost.dtype, jnp.float32)
    cost = cost.astype(dtype)
    span = jnp.max(cost) - jnp.min(cost)
    benefit = -(cost - jnp.min(cost)) / jnp.where(span > 0, span, 1.0)
    eps_min = 1e-5 / n
    num_phases = int(np.ceil(np.log(0.25 / eps_min) / np.log(6.0))) + 1
    eps_seq = jnp.maximum(0.25 / 6.0 ** jnp.arange(num_phases), eps_min).astype(dtype)

    def phase(prices, eps):
        return _auction_phase(benefit, prices, eps, max_rounds)

    _, objs = jax.lax.scan(phase, jnp.zeros((n,), dtype), eps_seq)
    obj = objs[-1]
    finished = jnp.all(obj >= 0)
    # Greedy completion: unassigned rows take the unused columns in order (no-op when finished).
    used = jnp.zeros((n,), bool).at[jnp.where(obj >= 0, obj, n)].set(True, mode="drop")
    free_cols = jnp.argsort(used, stable=True)  # unused columns first
    slot = jnp.cumsum(obj < 0) - 1
    perm = jnp.where(obj >= 0, obj, free_cols[jnp.clip(slot, 0, n - 1)]).astype(jnp.int32)
    return perm, finished
