"""FastSB-OT's ``self_check``: the transport and Fisher pieces against known answers (new).

The original README promises ``solver.self_check()`` ("validates Sinkhorn convergence,
Fisher estimator stability, and transport symmetry on synthetic data"); no version of the
original has it (spec fastsb-ot section 4). Here it is a report of five checks, each with
the measured number, its tolerance and a pass flag:

1. ``sinkhorn_marginals``: two 2-D Gaussian clouds of 512 points; the L1 error of the
   plan's row and column sums against the uniform marginals, computed from the plan (not
   taken from the solver's own error), must be below 1e-3, and Sinkhorn must converge.
2. ``gaussian_plan_slope``: 512 quantile points of ``N(0, 1)`` and ``N(0, 2^2)``; the
   slope of the barycentric map ``Cov(x, T(x)) / Var(x)`` against the closed-form
   entropic plan between Gaussians (:func:`gaussian_entropic_cross_covariance`, spec
   section 8.3) at ``epsilon = 2``: relative error below 1 %.
3. ``plan_symmetry``: the plan of a cloud onto itself is symmetric and the plan of
   ``(y, x)`` is the transpose of that of ``(x, y)``: ``P v`` against ``P^T v`` for a
   random ``v``, relative error below 1e-3 (float32 Sinkhorn at tolerance 1e-6).
4. ``fisher_fp32_vs_float64``: :func:`~jaxdiff.schrodinger.fisher.diagonal_fisher` of
   float32 scores spanning seven decades against a float64 NumPy ``max(mean(s^2), 1e-6)``
   (the floor included): relative error below 1e-5, finite and above the floor.
5. ``fisher_bf16_vs_float64``: the same scores rounded to bfloat16, accumulated in
   float32 (``use_fp32_fisher``): within 1e-2.

The transports run on the geometry the config's OT correction uses (online when
``use_triton_kernels``, else dense), one compiled program for all four problems.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from jaxdiff._keys import as_key
from jaxdiff._validation import check_bool
from jaxdiff.ot import sinkhorn
from jaxdiff.schrodinger.fisher import diagonal_fisher

__all__ = ["CheckItem", "SelfCheckReport", "gaussian_entropic_cross_covariance", "run_self_check"]

_N = 512  # points per cloud in every transport check
_SLOPE_EPSILON = 2.0
_FISHER_FLOOR = 1e-6


@dataclasses.dataclass(frozen=True)
class CheckItem:
    """One check: ``passed`` when ``value <= tolerance`` (and ``detail`` says what ran)."""

    name: str
    passed: bool
    value: float
    tolerance: float
    detail: str

    def __str__(self) -> str:
        mark = "ok" if self.passed else "FAIL"
        return (
            f"[{mark}] {self.name}: {self.value:.3g} (tolerance {self.tolerance:g}); {self.detail}"
        )


@dataclasses.dataclass(frozen=True)
class SelfCheckReport:
    """The checks of :func:`run_self_check`, in order; ``passed`` when all passed."""

    items: tuple[CheckItem, ...]

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(item.passed for item in self.items)

    def __getitem__(self, name: str) -> CheckItem:
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(f"no check named {name!r}; checks: {[i.name for i in self.items]}")

    def __str__(self) -> str:
        return "\n".join(str(item) for item in self.items)


def gaussian_entropic_cross_covariance(std0: float, std1: float, epsilon: float) -> float:
    """Cross-covariance of the entropic OT plan between ``N(., std0^2)`` and ``N(., std1^2)``.

    Cost ``|x - y|^2`` (not halved), objective ``<C, P> + epsilon KL(P | a x b)``; with
    ``s = epsilon / 2``: ``C = sqrt(4 std0^2 std1^2 + s^2) / 2 - s / 2`` (the scalar case
    of Janati et al. 2020, "Entropic OT between unbalanced Gaussian measures has a closed
    form"; Mallasto et al. 2021). The barycentric map's slope is ``C / std0^2``; as
    ``epsilon -> 0``, ``C -> std0 std1`` (the Brenier map).
    """
    s = epsilon / 2.0
    return 0.5 * math.sqrt(4.0 * std0**2 * std1**2 + s**2) - 0.5 * s


@functools.partial(jax.jit, static_argnames="geometry")
def _plan_stats(x, y, epsilon, v, geometry: str):
    """Row and column sums, barycentric map, ``P v`` and ``P^T v`` of one Sinkhorn plan."""
    res = sinkhorn(x, y, epsilon=epsilon, threshold=1e-6, max_iterations=5000, geometry=geometry)
    n, m = x.shape[0], y.shape[0]
    return {
        "rows": res.plan_apply(jnp.ones(m), axis=1),
        "cols": res.plan_apply(jnp.ones(n), axis=0),
        "a": res.a,
        "b": res.b,
        "map": res.barycentric_map(),
        "pv": res.plan_apply(v, axis=1),
        "ptv": res.plan_apply(v, axis=0),
        "converged": res.converged,
    }


def _item(name, value, tolerance, detail, ok=True) -> CheckItem:
    value = float(value)
    return CheckItem(name, bool(ok and value <= tolerance), value, tolerance, detail)


def _transport_items(key, geometry: str) -> list[CheckItem]:
    kx, ky, kv = jax.random.split(key, 3)
    x = jax.random.normal(kx, (_N, 2))
    y = jnp.array([1.0, -0.5]) + jnp.array([0.5, 2.0]) * jax.random.normal(ky, (_N, 2))
    v = jax.random.normal(kv, (_N,))
    solve = functools.partial(_plan_stats, v=v, geometry=geometry)
    eps = jnp.float32(0.5)
    # 1. marginals, from the plan itself
    s = solve(x, y, eps)
    marg = jnp.sum(jnp.abs(s["rows"] - s["a"])) + jnp.sum(jnp.abs(s["cols"] - s["b"]))
    items = [
        _item(
            "sinkhorn_marginals",
            marg,
            1e-3,
            f"L1 marginal error, {_N} x {_N} 2-D Gaussians, epsilon 0.5, {geometry}",
            bool(s["converged"]),
        )
    ]
    # 2. the closed-form entropic plan between 1-D Gaussians (quantile points, padded to 2-D)
    z = ndtri((jnp.arange(_N, dtype=jnp.float32) + 0.5) / _N)
    pad = jnp.zeros_like(z)
    q = solve(jnp.stack([z, pad], 1), jnp.stack([2.0 * z, pad], 1), jnp.float32(_SLOPE_EPSILON))
    xs, tx = np.asarray(z, np.float64), np.asarray(q["map"][:, 0], np.float64)
    slope = np.mean((xs - xs.mean()) * (tx - tx.mean())) / np.var(xs)
    want = gaussian_entropic_cross_covariance(1.0, 2.0, _SLOPE_EPSILON)
    items.append(
        _item(
            "gaussian_plan_slope",
            abs(slope / want - 1.0),
            1e-2,
            f"barycentric slope {slope:.4f} vs closed form {want:.4f} (N(0,1) -> N(0,4), "
            f"epsilon {_SLOPE_EPSILON})",
            bool(q["converged"]),
        )
    )
    # 3. symmetry: P(x, x) = P(x, x)^T and P(y, x) = P(x, y)^T
    self_plan, xy, yx = solve(x, x, eps), solve(x, y, eps), solve(y, x, eps)

    def rel(a, b):
        return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))

    asym = max(rel(self_plan["pv"], self_plan["ptv"]), rel(yx["pv"], xy["ptv"]))
    healthy = all(bool(p["converged"]) for p in (self_plan, xy, yx))
    items.append(
        _item(
            "plan_symmetry",
            asym,
            1e-3,
            "max relative |P v - P^T v| over (x, x), (x, y)/(y, x)",
            healthy,
        )
    )
    return items


def _fisher_items(key) -> list[CheckItem]:
    # scores spanning seven decades per coordinate, float32; the smallest below the floor
    scales = jnp.logspace(-4.0, 3.0, 8, dtype=jnp.float32)
    scores = jax.random.normal(key, (256, 8), jnp.float32) * scales
    want = np.maximum(np.mean(np.asarray(scores, np.float64) ** 2, axis=0), _FISHER_FLOOR)
    items = []
    for name, s, tol in (
        ("fisher_fp32_vs_float64", scores, 1e-5),
        ("fisher_bf16_vs_float64", scores.astype(jnp.bfloat16), 1e-2),
    ):
        got = np.asarray(diagonal_fisher(s, _FISHER_FLOOR, fp32=True), np.float64)[0]
        ok = bool(np.all(np.isfinite(got)) and np.all(got >= np.float32(_FISHER_FLOOR)))
        err = np.max(np.abs(got - want) / want)
        detail = f"diagonal Fisher of {s.dtype} scores (scales 1e-4..1e3) vs float64"
        items.append(_item(name, err, tol, detail, ok))
    return items


def run_self_check(key, use_triton_kernels: bool = False) -> SelfCheckReport:
    """Run the checks of the module docstring.

    Args:
      key: a ``jax.random.key`` (legacy ``uint32[2]`` keys accepted) for the clouds and
        scores.
      use_triton_kernels: check the online geometry (as the OT correction of a config
        with ``use_triton_kernels=True`` runs) instead of the dense one.

    Returns:
      A :class:`SelfCheckReport`; ``report.passed`` is True when every check passed.
    """
    key = as_key(key)
    geometry = "online" if check_bool("use_triton_kernels", use_triton_kernels) else "dense"
    k_ot, k_fisher = jax.random.split(key)
    return SelfCheckReport(tuple(_transport_items(k_ot, geometry) + _fisher_items(k_fisher)))
