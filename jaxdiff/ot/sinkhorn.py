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

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
from ott.geometry import epsilon_scheduler, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import acceleration
from ott.solvers.linear import sinkhorn as ott_sinkhorn

from jaxdiff._validation import (
    check_choice,
    check_finite_array,
    check_int_range,
    check_point_cloud,
)
from jaxdiff.ot import health, online_reduce
from jaxdiff.ot.online import OnlineGeometry
from jaxdiff.ot.result import COSTS, OTResult, make_cost_fn

__all__ = ["BACKENDS", "GEOMETRIES", "PRECISIONS", "pick_backend", "pick_geometry", "sinkhorn"]

#: Geometry names: the dense cost matrix, the online (blocked) geometry, or a choice by size.
GEOMETRIES = ("auto", "dense", "online")
#: Forward reductions of the online geometry ("auto": the fused kernel on GPU).
BACKENDS = ("auto", *online_reduce.BACKENDS)
#: Input precision of the online geometry's dot products.
PRECISIONS = online_reduce.PRECISIONS
#: Default bound on the dense cost matrix's size before "auto" goes online (2 GiB).
DEFAULT_MEMORY_BUDGET = 2 << 30
_KERNEL_COSTS = ("sqeuclidean", "cosine")


def pick_geometry(geometry: str, n: int, m: int, dtype, memory_budget_bytes: int) -> str:
    """``"dense"`` or ``"online"``: auto goes online when the n x m cost exceeds the budget."""
    if geometry != "auto":
        return geometry
    return "online" if n * m * jnp.dtype(dtype).itemsize > memory_budget_bytes else "dense"


def pick_backend(backend: str, cost: str, precision: str) -> str:
    """Resolve ``backend="auto"`` and check that the backend supports the cost.

    Auto takes the fused Pallas kernel on GPU for tensor-core precisions (``"tf32"``,
    ``"bf16"``) where the cost allows; IEEE float32 products run on CUDA cores there and
    XLA's blocked path (cuBLAS) is faster for them (benchmarks/RESULTS.md, lse_dot).
    """
    if backend == "auto":
        fused = jax.default_backend() == "gpu" and precision != "float32"
        return "pallas" if fused and cost in _KERNEL_COSTS else "xla"
    if backend != "xla" and cost not in _KERNEL_COSTS:
        raise ValueError(
            f"backend={backend!r} supports the costs {list(_KERNEL_COSTS)}, got cost={cost!r}; "
            "use backend='xla' (blocked, any cost) or 'auto'"
        )
    return backend


def _concrete(value):
    """``value`` as a float64 NumPy array, or None when it is a tracer."""
    try:
        return np.asarray(value, dtype=np.float64)
    except Exception:  # traced under jit/vmap/grad: value checks are skipped
        return None


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


def _check_fraction(field: str, value) -> float:
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
    epsilon_init: float = 1.0,
    epsilon_decay: float = 1.0,
    geometry: str = "auto",
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    backend: str = "auto",
    precision: str = "float32",
    divergence: bool = False,
    debug: bool = False,
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
        epsilon_init: annealing (epsilon scaling, Schmitzer 2019, "Stabilized sparse
            scaling algorithms for entropy regularized transport problems", Sec. 3.2):
            iteration ``k`` uses ``max(epsilon_init * epsilon_decay**k, 1) * epsilon``,
            starting blurry and sharpening to the target; 1.0 (default) disables it.
            With ``relative_epsilon`` this is FastSB-OT's adaptive epsilon: the target
            tracks each batch's cost scale and the value used is returned in
            ``OTResult.epsilon``. Static, >= 1.
        epsilon_decay: geometric decay per iteration, in (0, 1]. Static.
        geometry: ``"dense"`` (the cost matrix is materialised), ``"online"`` (never
            ``n x m``: costs are recomputed tile by tile, see
            :class:`~jaxdiff.ot.online.OnlineGeometry`) or ``"auto"`` (default: online
            when the dense cost would exceed ``memory_budget_bytes``). Static.
        memory_budget_bytes: size bound of the dense cost for ``geometry="auto"``
            (default 2 GiB). Static.
        backend: the online geometry's forward reduction: ``"xla"`` (blocked, every
            cost and device), ``"pallas"`` or ``"triton"`` (fused GPU kernels, costs
            ``sqeuclidean`` and ``cosine``; on CPU Pallas runs in interpret mode, for
            tests), or ``"auto"`` (Pallas on GPU for tf32/bf16 where the cost allows,
            else XLA).
            Ignored by the dense geometry. Static.
        precision: input precision of the online geometry's dot products:
            ``"float32"`` (default, exact products), ``"tf32"`` or ``"bf16"`` (tensor
            cores, faster on GPU). The squared-Euclidean expansion
            ``|x|^2 + |y|^2 - 2 <x, y>`` then carries an absolute error of about
            ``u |x| |y|`` (``u`` = 2^-11 for tf32, 2^-8 for bf16, points centred
            first), which must stay well below ``epsilon``: see the precision table in
            benchmarks/RESULTS.md. Never chosen silently. Static.
        divergence: also solve the ``(x, x)`` and ``(y, y)`` problems (same absolute
            epsilon, geometry and settings) and return the debiased Sinkhorn divergence
            ``OT(a, b) - (OT(a, a) + OT(b, b)) / 2 + epsilon (sum a - sum b)^2 / 2`` in
            ``OTResult.divergence`` (Feydy et al. 2019, "Interpolating between optimal
            transport and MMD using Sinkhorn divergences"; the mass term for unbalanced
            problems as in ott-jax). ``converged`` then covers all three solves. Static.
        debug: raise ``FloatingPointError`` when an input check of
            :data:`~jaxdiff.ot.health.INPUT_CHECKS` fails, an output is not finite or
            the solver did not converge. Called eagerly, the check runs at once; under
            ``jit`` the checks are ``checkify.check`` calls and the caller wraps the
            jitted function in ``checkify.checkify`` to receive them. Static.

    Returns:
        An :class:`OTResult` with potentials ``f`` ``[n]``, ``g`` ``[m]``, costs,
        ``converged``, ``n_iters`` and ``errors``.

    Raises:
        TypeError / ValueError: bad shapes, dtypes, names or (concrete) values.
    """
    if debug and not health.any_traced(x, y, a, b, epsilon, threshold):
        kwargs = {k: v for k, v in locals().items() if k not in ("x", "y", "a", "b")}
        solve = functools.partial(sinkhorn, **{**kwargs, "debug": True})
        err, result = jax.jit(checkify.checkify(solve, errors=checkify.user_checks))(x, y, a, b)
        if err.get() is not None:
            raise FloatingPointError(err.get())
        return result
    geometry = check_choice("geometry", geometry, GEOMETRIES)
    cost = check_choice("cost", cost, COSTS)
    precision = check_choice("precision", precision, PRECISIONS)
    backend = pick_backend(check_choice("backend", backend, BACKENDS), cost, precision)
    memory_budget_bytes = check_int_range("memory_budget_bytes", memory_budget_bytes, 1)
    if not isinstance(relative_epsilon, bool):
        raise TypeError(f"relative_epsilon must be a bool, got {relative_epsilon!r}")
    max_iterations = check_int_range("max_iterations", max_iterations, 1)
    min_iterations = check_int_range("min_iterations", min_iterations, 0, max_iterations)
    inner_iterations = check_int_range("inner_iterations", inner_iterations, 1, max_iterations)
    if isinstance(epsilon_init, bool) or not isinstance(epsilon_init, int | float):
        raise TypeError(f"epsilon_init must be a Python float >= 1, got {epsilon_init!r}")
    if not epsilon_init >= 1.0:
        raise ValueError(f"epsilon_init={epsilon_init} is out of range; allowed: >= 1")
    epsilon_decay = _check_fraction("epsilon_decay", epsilon_decay)
    tau_a = _check_fraction("tau_a", tau_a)
    tau_b = _check_fraction("tau_b", tau_b)
    balanced = tau_a == 1.0 and tau_b == 1.0

    x = check_point_cloud("x", x)
    y = check_point_cloud("y", y)
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

    geometry = pick_geometry(geometry, x.shape[0], y.shape[0], dtype, memory_budget_bytes)
    geom_args = {
        "online": geometry == "online",
        "cost": cost,
        "backend": backend,
        "precision": precision,
        "epsilon_init": epsilon_init,
        "epsilon_decay": epsilon_decay,
    }
    solver_kwargs = {
        "threshold": threshold,
        "max_iterations": max_iterations,
        "min_iterations": min_iterations,
        "inner_iterations": inner_iterations,
    }
    geom = _geometry(x, y, jnp.asarray(epsilon, dtype=dtype), relative_epsilon, **geom_args)
    out = _solve(geom, a, b, tau_a, tau_b, solver_kwargs)
    errors = out.errors if out.errors.ndim == 1 else out.errors[:, 0]
    primal = geom.transport_cost(out.f, out.g) if geometry == "online" else out.primal_cost
    flags = health.input_flags(x, y, a, b, geom.epsilon, balanced)
    finite = jnp.all(jnp.isfinite(jnp.stack([primal, out.reg_ot_cost])))
    finite &= jnp.all(jnp.isfinite(out.f) | (a == 0)) & jnp.all(jnp.isfinite(out.g) | (b == 0))
    result = OTResult(
        f=out.f,
        g=out.g,
        a=a,
        b=b,
        x=x,
        y=y,
        epsilon=jnp.asarray(geom.epsilon, dtype=dtype),
        primal_cost=primal,
        reg_ot_cost=out.reg_ot_cost,
        converged=jnp.asarray(out.converged) & finite & ~jnp.any(flags),
        input_errors=flags,
        n_iters=jnp.sum(errors != -1) * inner_iterations,
        errors=errors,
        cost=cost,
        tau_a=tau_a,
        tau_b=tau_b,
        online=geometry == "online",
        backend=backend,
        precision=precision,
    )
    if divergence:
        result = _with_divergence(result, geom_args, solver_kwargs)
    if debug:
        health.check_all(flags, finite, result.converged)
    return result


def _geometry(
    x, y, epsilon, relative, *, online, cost, backend, precision, epsilon_init, epsilon_decay
):
    """The ott-jax geometry of one problem (epsilon annealed when asked)."""

    def make(**kwargs):
        kwargs["cost_fn"] = make_cost_fn(cost)
        if online:
            return OnlineGeometry(x, y, backend=backend, precision=precision, **kwargs)
        return pointcloud.PointCloud(x, y, **kwargs)

    geom = make(epsilon=epsilon, relative_epsilon="mean" if relative else None)
    if epsilon_init != 1.0 or epsilon_decay != 1.0:  # anneal down to the target epsilon
        schedule = epsilon_scheduler.Epsilon(geom.epsilon, init=epsilon_init, decay=epsilon_decay)
        geom = make(epsilon=schedule)
    return geom


def _solve(geom, a, b, tau_a, tau_b, solver_kwargs, symmetric=False):
    """Run ott-jax's Sinkhorn on ``geom``.

    Symmetric problems (``x = y``, ``a = b``) use averaged updates with momentum 0.5,
    which converge where alternating updates oscillate (ott-jax's choice for the
    divergence's autocorrelation terms).
    """
    problem = linear_problem.LinearProblem(geom, a=a, b=b, tau_a=tau_a, tau_b=tau_b)
    if symmetric:
        momentum = acceleration.Momentum(start=0, value=0.5)
        solver_kwargs = {**solver_kwargs, "parallel_dual_updates": True, "momentum": momentum}
    return ott_sinkhorn.Sinkhorn(**solver_kwargs)(problem)


def _with_divergence(result: OTResult, geom_args: dict, solver_kwargs: dict) -> OTResult:
    """Add the debiased divergence from the two symmetric problems of ``result``."""
    value = result.reg_ot_cost + 0.5 * result.epsilon * (jnp.sum(result.a) - jnp.sum(result.b)) ** 2
    converged = result.converged
    for points, weights in ((result.x, result.a), (result.y, result.b)):
        geom = _geometry(points, points, result.epsilon, False, **geom_args)
        out = _solve(geom, weights, weights, result.tau_a, result.tau_b, solver_kwargs, True)
        value = value - 0.5 * out.reg_ot_cost
        converged &= jnp.asarray(out.converged) & jnp.isfinite(out.reg_ot_cost)
    return result.replace(divergence=value, converged=converged)
