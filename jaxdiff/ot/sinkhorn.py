"""Entropic optimal transport between point clouds: the Sinkhorn front door.

Solves (Cuturi 2013, "Sinkhorn Distances", NeurIPS; Peyré & Cuturi 2019,
"Computational Optimal Transport", Eq. 4.2, KL form as in ott-jax)

    min_P  <P, C> + epsilon KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b),

with ``rho = epsilon tau / (1 - tau)`` (``tau = 1``: the marginal is a hard constraint;
Séjourné et al. 2019, "Sinkhorn divergences for unbalanced optimal transport"). The
unbalanced plan equals POT's ``ot.unbalanced.sinkhorn_unbalanced(a, b, C, reg=epsilon,
reg_m=rho, reg_type="entropy")`` (kernel ``exp(-C / epsilon)``), with
``tau = rho / (rho + epsilon)`` (tested). Balanced plans equal POT's ``ot.sinkhorn``.

ott-jax's :class:`~ott.solvers.linear.sinkhorn.Sinkhorn` runs underneath, in the log
domain, with implicit differentiation of the fixed point (Luise et al. 2018; ott-jax's
default), so gradients w.r.t. ``x``, ``y``, ``a``, ``b`` cost one linear solve.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

from jaxdiff._validation import check_choice, check_finite_array, check_int_range
from jaxdiff.ot.result import COSTS, OTResult, make_cost_fn

__all__ = ["GEOMETRIES", "sinkhorn"]

#: Geometry names known to the front door; only "dense" is available in this version.
GEOMETRIES = ("dense", "online", "auto")
_AVAILABLE_GEOMETRIES = ("dense",)


def _concrete(value):
    """``value`` as a float64 NumPy array, or None when it is a tracer."""
    try:
        return np.asarray(value, dtype=np.float64)
    except Exception:  # traced under jit/vmap/grad: value checks are skipped
        return None


def _check_points(field: str, value) -> jax.Array:
    arr = jnp.asarray(value)
    if arr.dtype == jnp.bool_ or not (
        jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
    ):
        raise TypeError(f"{field} must be a real floating (or integer) array, got {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{field} must have shape [num_points, dim] (2-D), got {arr.shape}")
    check_finite_array(field, value)
    return arr


def _check_weights(field: str, value, size: int, dtype, balanced: bool) -> jax.Array:
    if value is None:
        return jnp.full((size,), 1.0 / size, dtype=dtype)
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating) and not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"{field} must be a real floating array, got {arr.dtype}")
    if arr.shape != (size,):
        raise ValueError(f"{field} must have shape [{size}] (one per point), got {arr.shape}")
    check_finite_array(field, value)
    host = _concrete(value)
    if host is not None:
        if np.any(host < 0):
            raise ValueError(f"{field} must be non-negative, got min {host.min()}")
        if host.sum() <= 0:
            raise ValueError(f"{field} must have positive total mass, got {host.sum()}")
        if balanced and not np.isclose(host.sum(), 1.0, rtol=0, atol=1e-5):
            raise ValueError(
                f"{field} must sum to 1 for a balanced problem (tau_a = tau_b = 1), "
                f"got sum {host.sum()}"
            )
    return arr.astype(dtype)


def _check_tau(field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{field} must be a Python float in (0, 1], got {value!r}")
    if not 0.0 < float(value) <= 1.0:
        raise ValueError(f"{field}={value} is out of range; allowed: 0 < {field} <= 1")
    return float(value)


def sinkhorn(
    x: jax.Array,
    y: jax.Array,
    a: jax.Array | None = None,
    b: jax.Array | None = None,
    *,
    epsilon: float | jax.Array,
    cost: str = "sqeuclidean",
    relative_epsilon: bool = False,
    max_iterations: int = 2000,
    min_iterations: int = 0,
    threshold: float = 1e-3,
    inner_iterations: int = 10,
    tau_a: float = 1.0,
    tau_b: float = 1.0,
    geometry: str = "dense",
) -> OTResult:
    """Entropic OT between ``x`` and ``y`` with ott-jax's Sinkhorn solver.

    Works under ``jit`` (structure arguments static), ``vmap`` over a batch of problems
    and ``grad`` (implicit differentiation through the fixed point).

    Args:
        x: ``[n, d]`` source points.
        y: ``[m, d]`` target points.
        a: ``[n]`` non-negative source weights; uniform if None. Must sum to 1 when
            balanced (checked when concrete).
        b: ``[m]`` target weights, likewise.
        epsilon: entropic regularisation, > 0; absolute (POT's ``reg``) unless
            ``relative_epsilon``. Traced: changing it does not recompile.
        cost: ``"sqeuclidean"`` (``|x - y|^2``, not halved; default), ``"euclidean"``
            or ``"cosine"``. Static.
        relative_epsilon: if True the regularisation used is ``epsilon * mean(C)``
            (the mean is not differentiated through). Static.
        max_iterations: iteration cap. Static.
        min_iterations: iterations run before convergence is tested. Static.
        threshold: tolerance on the marginal error (1-norm), ott-jax's meaning.
        inner_iterations: iterations between two error evaluations. Static.
        tau_a: ott-jax unbalancedness on ``a`` in (0, 1]; 1 is balanced. Static.
        tau_b: same on ``b``. Static.
        geometry: ``"dense"`` (the cost matrix is materialised). Static.

    Returns:
        An :class:`OTResult` with potentials ``f`` ``[n]``, ``g`` ``[m]``, costs,
        ``converged``, ``n_iters`` and ``errors``.

    Raises:
        TypeError / ValueError: bad shapes, dtypes, names or (concrete) values.
    """
    geometry = check_choice("geometry", geometry, GEOMETRIES)
    if geometry not in _AVAILABLE_GEOMETRIES:
        raise ValueError(
            f"geometry={geometry!r} is not available in this version; only 'dense' is "
            f"(choices: {list(_AVAILABLE_GEOMETRIES)})"
        )
    cost = check_choice("cost", cost, COSTS)
    if not isinstance(relative_epsilon, bool):
        raise TypeError(f"relative_epsilon must be a bool, got {relative_epsilon!r}")
    max_iterations = check_int_range("max_iterations", max_iterations, 1)
    min_iterations = check_int_range("min_iterations", min_iterations, 0, max_iterations)
    inner_iterations = check_int_range("inner_iterations", inner_iterations, 1, max_iterations)
    tau_a = _check_tau("tau_a", tau_a)
    tau_b = _check_tau("tau_b", tau_b)
    balanced = tau_a == 1.0 and tau_b == 1.0

    x = _check_points("x", x)
    y = _check_points("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got x {x.shape} and y {y.shape}")
    dtype = jnp.result_type(x.dtype, y.dtype, float)
    x, y = x.astype(dtype), y.astype(dtype)
    a = _check_weights("a", a, x.shape[0], dtype, balanced)
    b = _check_weights("b", b, y.shape[0], dtype, balanced)

    for field, value in (("epsilon", epsilon), ("threshold", threshold)):
        if jnp.ndim(value) != 0:
            raise ValueError(f"{field} must be a scalar, got shape {jnp.shape(value)}")
        host = _concrete(value)
        if host is not None and not (np.isfinite(host) and host > 0):
            raise ValueError(f"{field} must be a finite number > 0, got {value!r}")

    geom = pointcloud.PointCloud(
        x,
        y,
        cost_fn=make_cost_fn(cost),
        epsilon=jnp.asarray(epsilon, dtype=dtype),
        relative_epsilon="mean" if relative_epsilon else None,
    )
    problem = linear_problem.LinearProblem(geom, a=a, b=b, tau_a=tau_a, tau_b=tau_b)
    solver = ott_sinkhorn.Sinkhorn(
        threshold=threshold,
        max_iterations=max_iterations,
        min_iterations=min_iterations,
        inner_iterations=inner_iterations,
    )
    out = solver(problem)
    errors = out.errors if out.errors.ndim == 1 else out.errors[:, 0]
    return OTResult(
        f=out.f,
        g=out.g,
        a=a,
        b=b,
        x=x,
        y=y,
        epsilon=jnp.asarray(geom.epsilon, dtype=dtype),
        primal_cost=out.primal_cost,
        reg_ot_cost=out.reg_ot_cost,
        converged=jnp.asarray(out.converged),
        n_iters=jnp.sum(errors != -1) * inner_iterations,
        errors=errors,
        cost=cost,
        tau_a=tau_a,
        tau_b=tau_b,
    )
