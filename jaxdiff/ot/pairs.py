"""Minibatch OT couplings: re-pair two batches by an exact assignment or a Sinkhorn plan.

This is the pairing step of OT conditional flow matching (Tong et al. 2023, "Improving
and Generalizing Flow-Based Generative Models with Minibatch Optimal Transport", TMLR;
Pooladian et al. 2023, "Multisample Flow Matching"), torchcfm's ``OTPlanSampler``. Unlike
torchcfm (which calls POT on the CPU), both methods here run on device inside ``jit``.

Cost: ``C_ij = |x0_i - x1_j|^2`` with trailing dimensions flattened.

* ``method="exact"``: an optimal permutation by Bertsekas' auction algorithm
  (Bertsekas 1988, "The auction algorithm: a distributed relaxation method for the
  assignment problem", Ann. Oper. Res. 14; Jacobi variant with eps-scaling, Bertsekas &
  Castañón 1991). Costs are rescaled to ``[0, 1]``; the last phase uses
  ``eps = 1e-5 / n``, so the total assignment cost is within ``n * eps * (max C - min C)
  = 1e-5 (max C - min C)`` of the optimum (eps-complementary slackness), i.e. optimal up
  to float32 rounding for the batch sizes this is meant for (n up to a few hundred).
* ``method="sinkhorn"``: an entropic plan from ott-jax's log-domain Sinkhorn on the cost
  matrix, then ``n`` index pairs drawn from the plan with replacement
  (``jax.random.categorical`` on the flattened log-plan), like torchcfm's ``sample_plan``.

Class-conditional pairing (``labels0``, ``labels1``): cross-label pairs get a cost above
every within-label cost, so the exact assignment stays within labels whenever each label
has the same count in both batches (checked when labels are concrete); Sinkhorn sampling
masks cross-label entries of the plan to probability zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

from jaxdiff._validation import check_choice

__all__ = ["METHODS", "assignment", "ot_pairs"]

METHODS = ("exact", "sinkhorn")


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
        top, idx = jax.lax.top_k(values, 2)
        best = idx[:, 0]
        bid = benefit[ar, best] - top[:, 1] + eps  # = price + (v1 - v2) + eps
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


def assignment(cost: jax.Array, *, max_rounds: int = 100_000) -> jax.Array:
    """Minimum-cost permutation for a square cost ``[n, n]``: ``perm[i]`` is i's partner.

    Auction algorithm with eps-scaling (see the module docstring for the tolerance).
    Jit-able; ``max_rounds`` bounds each phase (a safety net: an unfinished phase is
    completed greedily so that the result is always a permutation).
    """
    cost = jnp.asarray(cost)
    n = cost.shape[0]
    if cost.ndim != 2 or cost.shape[1] != n:
        raise ValueError(f"cost must be square [n, n], got shape {cost.shape}")
    if n == 1:
        return jnp.zeros((1,), jnp.int32)
    dtype = jnp.promote_types(cost.dtype, jnp.float32)
    cost = cost.astype(dtype)
    span = jnp.max(cost) - jnp.min(cost)
    benefit = -(cost - jnp.min(cost)) / jnp.where(span > 0, span, 1.0)
    eps_min = 1e-5 / n
    num_phases = int(np.ceil(np.log(0.25 / eps_min) / np.log(6.0))) + 1
    eps_seq = jnp.maximum(0.25 / 6.0 ** jnp.arange(num_phases), eps_min).astype(dtype)

    def phase(prices, eps):
        prices, obj = _auction_phase(benefit, prices, eps, max_rounds)
        return prices, obj

    _, objs = jax.lax.scan(phase, jnp.zeros((n,), dtype), eps_seq)
    obj = objs[-1]
    # Safety net: give unassigned rows the unused columns in order (no-op when finished).
    used = jnp.zeros((n,), bool).at[jnp.where(obj >= 0, obj, n)].set(True, mode="drop")
    free_cols = jnp.argsort(used, stable=True)  # unused columns first
    slot = jnp.cumsum(obj < 0) - 1
    return jnp.where(obj >= 0, obj, free_cols[jnp.clip(slot, 0, n - 1)]).astype(jnp.int32)


def _check_labels(labels0, labels1, n):
    if (labels0 is None) != (labels1 is None):
        raise ValueError("labels0 and labels1 must be given together (both or neither)")
    if labels0 is None:
        return None, None
    l0, l1 = jnp.asarray(labels0), jnp.asarray(labels1)
    for field, lab in (("labels0", l0), ("labels1", l1)):
        if lab.shape != (n,):
            raise ValueError(f"{field} must have shape [{n}] (one label per row), got {lab.shape}")
    try:
        h0, h1 = np.sort(np.asarray(labels0)), np.sort(np.asarray(labels1))
    except Exception:  # traced: counts cannot be checked here
        return l0, l1
    if not np.array_equal(h0, h1):
        raise ValueError(
            "labels0 and labels1 must contain each label the same number of times for "
            "class-conditional pairing (a within-label matching must exist)"
        )
    return l0, l1


def ot_pairs(
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    method: str = "exact",
    epsilon: float = 0.05,
    relative_epsilon: bool = True,
    return_indices: bool = False,
    labels0: jax.Array | None = None,
    labels1: jax.Array | None = None,
):
    """Re-pair two batches ``[n, ...]`` along a minibatch OT coupling.

    Args:
      key: PRNG key (used by ``method="sinkhorn"``; the exact method is deterministic).
      x0: source batch ``[n, ...]``.
      x1: target batch ``[n, ...]`` (same shape as ``x0``).
      method: ``"exact"`` (optimal permutation, auction) or ``"sinkhorn"`` (sample ``n``
        pairs with replacement from the entropic plan). Static.
      epsilon: entropic regularisation for ``"sinkhorn"`` (traced).
      relative_epsilon: if True, ``epsilon`` is multiplied by the mean (within-label)
        cost, as torchcfm/POT users usually tune it; else it is absolute (POT's ``reg``).
      return_indices: also return the index arrays ``(i, j)`` ``[n]``. Static.
      labels0: optional integer labels ``[n]`` of ``x0`` for class-conditional pairing.
      labels1: labels ``[n]`` of ``x1``; given together with ``labels0``.

    Returns:
      ``(x0[i], x1[j])``, plus ``(i, j)`` when ``return_indices``. For ``"exact"``,
      ``i = arange(n)`` and ``j`` is a permutation. Gradients flow to the gathered rows.
    """
    method = check_choice("method", method, METHODS)
    x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
    if x0.ndim < 1 or x0.shape[0] < 1:
        raise ValueError(f"x0 must have shape [n, ...] with n >= 1, got {x0.shape}")
    if x0.shape != x1.shape:
        raise ValueError(
            f"x0 and x1 must have the same shape [n, ...]; got {x0.shape} and {x1.shape}"
        )
    n = x0.shape[0]
    l0, l1 = _check_labels(labels0, labels1, n)
    dtype = jnp.promote_types(jnp.result_type(x0, x1), jnp.float32)
    a, b = x0.reshape(n, -1).astype(dtype), x1.reshape(n, -1).astype(dtype)
    cost = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2.0 * a @ b.T
    cost = jnp.maximum(cost, 0.0)
    same = None if l0 is None else (l0[:, None] == l1[None, :])

    if method == "exact":
        if same is not None:  # any cross-label pair now costs more than any within-label one
            hi, lo = jnp.max(cost), jnp.min(cost)
            cost = jnp.where(same, cost, 2.0 * hi - lo + 1.0)
        i = jnp.arange(n)
        j = assignment(cost)
    else:
        mean = jnp.mean(cost) if same is None else jnp.sum(cost * same) / jnp.sum(same)
        eps = epsilon * mean if relative_epsilon else jnp.asarray(epsilon, dtype)
        if same is not None:
            cost = jnp.where(same, cost, jnp.max(cost) + 50.0 * eps)
        out = ott_sinkhorn.Sinkhorn()(
            linear_problem.LinearProblem(geometry.Geometry(cost_matrix=cost, epsilon=eps))
        )
        g = out.geom
        log_plan = (out.f[:, None] + out.g[None, :] - g.cost_matrix) / g.epsilon
        if same is not None:
            log_plan = jnp.where(same, log_plan, -jnp.inf)
        flat = jax.random.categorical(key, log_plan.reshape(-1), shape=(n,))
        i, j = flat // n, flat % n
    if return_indices:
        return x0[i], x1[j], i, j
    return x0[i], x1[j]
