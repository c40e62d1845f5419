"""Minibatch OT couplings: re-pair two batches by an exact assignment or a Sinkhorn plan.

This is the pairing step of OT conditional flow matching (Tong et al. 2023, "Improving
and Generalizing Flow-Based Generative Models with Minibatch Optimal Transport", TMLR;
Pooladian et al. 2023, "Multisample Flow Matching"), torchcfm's ``OTPlanSampler``. Unlike
torchcfm (which calls POT on the CPU), both methods here run on device inside ``jit``.

Cost: ``C_ij = |x0_i - x1_j|^2`` with trailing dimensions flattened.

* ``method="exact"``: an optimal permutation, by shortest augmenting paths
  (``solver="shortest_path"``, :func:`jaxdiff.ot.shortest_path.shortest_path_assignment`,
  scipy's algorithm) or by the auction algorithm (``solver="auction"``,
  :func:`jaxdiff.ot.auction.auction`; optimal up to ``1e-5`` of the cost range).
  ``solver="auto"`` (the default) takes the faster one measured on the backend
  (``benchmarks/RESULTS.md``, n = 256): shortest paths on the CPU (34 ms against the
  auction's 1.7 s: ~1.5 µs per sequential step) and the auction elsewhere (H200: 53 ms
  against 289 ms in an OT-CFM step: the sequential steps are kernel launches there).
* ``method="sinkhorn"``: an entropic plan from :func:`jaxdiff.ot.sinkhorn` (the library's
  one Sinkhorn front door), then ``n`` index pairs drawn from the plan with replacement
  (a row from the plan's row masses, then a column from that row: the same law as
  torchcfm's ``sample_plan`` draw from the flattened plan, in ``O(n^2)`` memory).

Class-conditional pairing (``labels0``, ``labels1``): cross-label pairs get a cost above
every within-label cost, so the exact assignment stays within labels whenever each label
has the same count in both batches (checked when labels are concrete); Sinkhorn sampling
masks cross-label entries of the plan to probability zero. For Sinkhorn the penalty is
carried by extra coordinates ``s * [l_i == l0_k]_k`` appended to the points, whose squared
distance is 0 within a label and at least ``s^2`` across labels.

Health (:class:`Pairs`): concrete bad input raises at once. Under ``jit`` non-finite points
or a non-finite / non-positive ``epsilon`` cannot raise; the pairing then falls back to
the identity ``i = j = arange(n)`` (the independent coupling of the two batches) and
``converged`` / ``all_finite`` are False.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._keys import as_key
from jaxdiff._validation import (
    check_bool,
    check_choice,
    check_int_range,
    check_real_array,
    concrete_value,
)
from jaxdiff.ot.auction import MAX_ROUNDS, auction
from jaxdiff.ot.checks import positive_scalar
from jaxdiff.ot.shortest_path import shortest_path_assignment
from jaxdiff.ot.sinkhorn import sinkhorn

__all__ = ["METHODS", "SOLVERS", "Pairs", "assignment", "ot_pairs"]

METHODS = ("exact", "sinkhorn")
#: Solvers of the exact assignment; see :func:`assignment`.
SOLVERS = ("auto", "shortest_path", "auction")
#: Upper bound accepted for ``max_iterations`` of the Sinkhorn pairing.
MAX_SINKHORN_ITERATIONS = 100_000


@struct.dataclass
class Pairs:
    """Paired batches and the health of the coupling that paired them (a pytree).

    Attributes:
      x0: ``[n, ...]`` source rows ``x0[i]``.
      x1: ``[n, ...]`` target rows ``x1[j]``.
      i: ``[n]`` int32 source indices (``arange(n)`` for ``method="exact"``).
      j: ``[n]`` int32 target indices (a permutation for ``method="exact"``).
      converged: bool scalar. Exact: the solver finished and the inputs were finite.
        Sinkhorn: :attr:`OTResult.converged` (marginal error below the threshold, finite
        inputs and ``epsilon``).
      auction_finished: bool scalar, False when the auction ran out of ``max_rounds`` and
        its greedy completion filled some rows (always True for ``solver="shortest_path"``
        and ``method="sinkhorn"``).
      all_finite: bool scalar, all entries of ``x0`` and ``x1`` are finite.
      method: static, ``"exact"`` or ``"sinkhorn"``.
    """

    x0: jax.Array
    x1: jax.Array
    i: jax.Array
    j: jax.Array
    converged: jax.Array
    auction_finished: jax.Array
    all_finite: jax.Array
    method: str = struct.field(pytree_node=False, default="exact")

    @classmethod
    def create(cls, **kwargs) -> Pairs:
        """Build a result from keyword fields (see the class attributes)."""
        return cls(**kwargs)


def _solve(cost, solver, max_rounds):
    """``(perm, finished)`` of a finite square cost by the named solver (checked)."""
    if solver == "auto":
        solver = "shortest_path" if jax.default_backend() == "cpu" else "auction"
    if solver == "auction":
        return auction(cost, max_rounds=max_rounds)
    return shortest_path_assignment(cost), jnp.asarray(True)


def assignment(cost: jax.Array, *, solver: str = "auto", max_rounds: int = 100_000) -> jax.Array:
    """Minimum-cost permutation for a finite square cost ``[n, n]``: ``perm[i]`` is i's partner.

    ``solver``: ``"shortest_path"`` (exact; fastest on the CPU), ``"auction"`` (optimal
    up to ``1e-5`` of the cost range, data-parallel rounds, fastest on a GPU;
    ``max_rounds`` per eps phase, see :func:`jaxdiff.ot.auction.auction`, which also says
    whether it finished) or ``"auto"`` (by the default backend; module docstring). Static.
    jit-able.
    """
    solver = check_choice("solver", solver, SOLVERS)
    max_rounds = check_int_range("max_rounds", max_rounds, 1, MAX_ROUNDS)
    cost = jnp.asarray(cost)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1] or cost.shape[0] < 1:
        raise ValueError(f"cost must be square [n, n] with n >= 1, got shape {cost.shape}")
    return _solve(cost, solver, max_rounds)[0]


def _check_labels(labels0, labels1, n):
    if (labels0 is None) != (labels1 is None):
        raise ValueError("labels0 and labels1 must be given together (both or neither)")
    if labels0 is None:
        return None, None
    out = []
    for field, lab in (("labels0", labels0), ("labels1", labels1)):
        if isinstance(lab, str | bytes):
            raise TypeError(f"{field} must be an integer array [{n}], got a string {lab!r:.40}")
        arr = jnp.asarray(lab)
        if arr.dtype == jnp.bool_ or not jnp.issubdtype(arr.dtype, jnp.integer):
            raise TypeError(f"{field} must be an integer array (class ids), got dtype {arr.dtype}")
        if arr.shape != (n,):
            raise ValueError(f"{field} must have shape [{n}] (one label per row), got {arr.shape}")
        out.append(arr)
    h0, h1 = concrete_value(out[0]), concrete_value(out[1])
    if h0 is not None and h1 is not None and not np.array_equal(np.sort(h0), np.sort(h1)):
        raise ValueError(
            "labels0 and labels1 must contain each label the same number of times for "
            "class-conditional pairing (a within-label matching must exist)"
        )
    return out[0], out[1]


def ot_pairs(
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    method: str = "exact",
    epsilon: float | jax.Array = 0.05,
    relative_epsilon: bool = True,
    labels0: jax.Array | None = None,
    labels1: jax.Array | None = None,
    max_iterations: int = 2000,
    solver: str = "auto",
    max_rounds: int = 100_000,
) -> Pairs:
    """Re-pair two batches ``[n, ...]`` along a minibatch OT coupling.

    Args:
      key: PRNG key (typed or legacy); used by ``method="sinkhorn"`` (the exact method is
        deterministic, the key is still checked).
      x0: source batch ``[n, ...]``, real (floating or integer), ``n >= 1``.
      x1: target batch ``[n, ...]`` (same shape as ``x0``).
      method: ``"exact"`` (optimal permutation) or ``"sinkhorn"`` (sample ``n``
        pairs with replacement from the entropic plan). Static.
      epsilon: entropic regularisation for ``"sinkhorn"``, finite and ``> 0`` (traced;
        checked for every method when concrete).
      relative_epsilon: if True, ``epsilon`` is multiplied by the mean (within-label)
        cost, as torchcfm/POT users usually tune it; else it is absolute (POT's ``reg``).
        A real bool. Static.
      labels0: optional integer labels ``[n]`` of ``x0`` for class-conditional pairing.
      labels1: labels ``[n]`` of ``x1``; given together with ``labels0``.
      max_iterations: Sinkhorn iteration cap, in ``[1, 100_000]``. Static.
      solver: the exact method's solver, ``"auto"``, ``"shortest_path"`` or
        ``"auction"`` (see :func:`assignment`). Static.
      max_rounds: auction rounds per eps phase, in ``[1, 10**7]``. Static.

    Returns:
      A :class:`Pairs` with ``x0[i]``, ``x1[j]``, the indices and the health report.
      Gradients flow to the gathered rows.

    Raises:
      TypeError: a non-key ``key``, non-real or bool arrays, strings for numbers or bools,
        non-integer labels.
      ValueError: unknown ``method``, shapes that differ or are empty, concrete NaN/inf
        points, ``epsilon`` not finite and ``> 0``, labels of the wrong shape or counts,
        counts out of range.
    """
    key = as_key(key)
    method = check_choice("method", method, METHODS)
    relative_epsilon = check_bool("relative_epsilon", relative_epsilon)
    max_iterations = check_int_range("max_iterations", max_iterations, 1, MAX_SINKHORN_ITERATIONS)
    solver = check_choice("solver", solver, SOLVERS)
    max_rounds = check_int_range("max_rounds", max_rounds, 1, MAX_ROUNDS)
    x0, x1 = check_real_array("x0", x0), check_real_array("x1", x1)
    if x0.shape != x1.shape:
        raise ValueError(
            f"x0 and x1 must have the same shape [n, ...]; got {x0.shape} and {x1.shape}"
        )
    n = x0.shape[0]
    dtype = jnp.promote_types(jnp.result_type(x0, x1), jnp.float32)
    epsilon, eps_ok = positive_scalar("epsilon", epsilon, dtype)
    l0, l1 = _check_labels(labels0, labels1, n)
    a = jax.lax.stop_gradient(x0.reshape(n, -1).astype(dtype))
    b = jax.lax.stop_gradient(x1.reshape(n, -1).astype(dtype))
    all_finite = jnp.all(jnp.isfinite(a)) & jnp.all(jnp.isfinite(b))
    cost = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2.0 * a @ b.T
    cost = jnp.maximum(cost, 0.0)
    same = None if l0 is None else (l0[:, None] == l1[None, :])
    ar = jnp.arange(n, dtype=jnp.int32)

    if method == "exact":
        if same is not None:  # any cross-label pair now costs more than any within-label one
            hi, lo = jnp.max(cost), jnp.min(cost)
            cost = jnp.where(same, cost, 2.0 * hi - lo + 1.0)
        # Non-finite (traced) input: an identity-favouring cost (the solvers end at once).
        cost = jnp.where(all_finite, cost, 1.0 - jnp.eye(n, dtype=dtype))
        j, finished = _solve(cost, solver, max_rounds)
        pairs = dict(i=ar, j=j, converged=finished & all_finite, auction_finished=finished)
    else:
        pairs = _sinkhorn_pairs(
            key, a, b, cost, same, l0, l1, epsilon, relative_epsilon, max_iterations
        )
        usable = pairs.pop("usable") & eps_ok & all_finite
        pairs["i"] = jnp.where(usable, pairs["i"], ar)
        pairs["j"] = jnp.where(usable, pairs["j"], ar)
        pairs["converged"] = pairs["converged"] & usable
    return Pairs.create(
        x0=x0[pairs["i"]], x1=x1[pairs["j"]], all_finite=all_finite, method=method, **pairs
    )


def _sinkhorn_pairs(key, a, b, cost, same, l0, l1, epsilon, relative, max_iterations):
    """Index pairs sampled from the entropic plan of :func:`jaxdiff.ot.sinkhorn`."""
    n = a.shape[0]
    mean = jnp.mean(cost) if same is None else jnp.sum(cost * same) / jnp.sum(same)
    eps = epsilon * jnp.where(mean > 0, mean, 1.0) if relative else epsilon  # mean 0: all equal
    if same is not None:  # cross-label squared distance >= s^2 in the appended coordinates
        scale = jnp.sqrt(jnp.max(jnp.where(same, cost, 0.0)) + 50.0 * eps)
        a = jnp.concatenate([a, scale * (l0[:, None] == l0[None, :])], axis=1)
        b = jnp.concatenate([b, scale * (l1[:, None] == l0[None, :])], axis=1)
    out = sinkhorn(a, b, epsilon=eps, max_iterations=max_iterations)
    log_plan = (out.f[:, None] + out.g[None, :] - cost) / out.epsilon
    if same is not None:
        log_plan = jnp.where(same, log_plan, -jnp.inf)
    usable = jnp.all(jnp.isfinite(out.f)) & jnp.all(jnp.isfinite(out.g))
    # (i, j) ~ P in two exact stages, O(n^2) memory: a row from the row masses, then a
    # column from that row (one categorical over the n^2 entries would draw n x n^2 Gumbels).
    row_key, col_key = jax.random.split(key)
    rows = jax.random.categorical(row_key, jax.nn.logsumexp(log_plan, axis=1), shape=(n,))
    cols = jax.random.categorical(col_key, log_plan[rows], axis=-1)
    return {
        "i": rows.astype(jnp.int32),
        "j": cols.astype(jnp.int32),
        "converged": out.converged,
        "auction_finished": jnp.asarray(True),
        "usable": usable,
    }
