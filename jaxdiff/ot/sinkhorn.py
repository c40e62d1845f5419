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

A kernel operator from :func:`~jaxdiff.ot.kernel_ops.make_kernel_operator` may be passed
as ``geometry``: ott-jax then iterates on it in the log domain where the operator has a
log-domain form (direct, gaussian grid) and in scaling space (``lse_mode=False``,
Cuturi 2013, Alg. 1: ``u = a / K v``, ``v = b / K^T u``) where it has only kernel
products (random features, Nyström, laplacian grid).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from jaxdiff._validation import (
    check_bool,
    check_choice,
    check_int_range,
    check_point_cloud,
    check_real,
    is_concrete,
)
from jaxdiff.ot import health, online_reduce
from jaxdiff.ot.checks import check_fraction, check_positive_scalar, check_weights
from jaxdiff.ot.costs import COSTS
from jaxdiff.ot.kernel_ops import KernelOperator
from jaxdiff.ot.memory import check_allocation
from jaxdiff.ot.progress import print_progress
from jaxdiff.ot.result import OTResult
from jaxdiff.ot.solve import cloud_geometry, package, run_solver, with_divergence

__all__ = ["BACKENDS", "GEOMETRIES", "PRECISIONS", "pick_backend", "pick_geometry", "sinkhorn"]

#: Geometry names: the dense cost matrix, the online (blocked) geometry, or a choice by size.
GEOMETRIES = ("auto", "dense", "online")
#: Forward reductions of the online geometry ("auto": the fused kernel on GPU).
BACKENDS = ("auto", *online_reduce.BACKENDS)
#: Input precision of the online geometry's dot products.
PRECISIONS = online_reduce.PRECISIONS
#: Default bound on the dense cost matrix's size before "auto" goes online (2 GiB).
DEFAULT_MEMORY_BUDGET = 2 << 30
#: Iterations between two recorded errors when ``inner_iterations`` is not given.
DEFAULT_INNER_ITERATIONS = 10
#: The iteration counter is int32 on device.
MAX_ITERATIONS = 2**31 - 1
_KERNEL_COSTS = ("sqeuclidean", "cosine")
_CLOUD_DEFAULTS = {
    "cost": "sqeuclidean",
    "backend": "auto",
    "precision": "float32",
    "memory_budget_bytes": DEFAULT_MEMORY_BUDGET,
}


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


def sinkhorn(
    x: jax.Array | None = None,
    y: jax.Array | None = None,
    a: jax.Array | None = None,
    b: jax.Array | None = None,
    *,
    epsilon: float | jax.Array | None = None,
    cost: str = "sqeuclidean",
    relative_epsilon: bool = False,
    max_iterations: int = 2000,
    min_iterations: int = 0,
    threshold: float = 1e-3,
    inner_iterations: int | None = None,
    tau_a: float = 1.0,
    tau_b: float = 1.0,
    epsilon_init: float = 1.0,
    epsilon_decay: float = 1.0,
    geometry: str | KernelOperator = "auto",
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    backend: str = "auto",
    precision: str = "float32",
    divergence: bool = False,
    debug: bool = False,
    progress: bool = False,
) -> OTResult:
    """Entropic OT between ``x`` and ``y`` with ott-jax's Sinkhorn solver.

    Works under ``jit`` (structure arguments static), ``vmap`` over a batch of problems
    and ``grad`` (implicit differentiation through the fixed point).

    Args:
        x: ``[n, d]`` source points (None when ``geometry`` is an operator).
        y: ``[m, d]`` target points (None when ``geometry`` is an operator).
        a: ``[n]`` non-negative source weights; uniform if None. Must sum to 1 when
            balanced (checked when concrete).
        b: ``[m]`` target weights, likewise.
        epsilon: entropic regularisation, > 0; absolute (POT's ``reg``) unless
            ``relative_epsilon``. Traced: changing it does not recompile. Required for
            point clouds; None for an operator (its epsilon is a leaf of the operator).
        cost: ``"sqeuclidean"`` (``|x - y|^2``, not halved; default), ``"euclidean"``
            or ``"cosine"``. Static.
        relative_epsilon: if True the regularisation used is ``epsilon * mean(C)``
            (the mean is not differentiated through). Static.
        max_iterations: iteration cap, at most ``2**31 - 1``; the error trace
            (``ceil(max_iterations / inner_iterations)`` entries) must fit in memory.
            Static.
        min_iterations: iterations run before convergence is tested. Static.
        threshold: tolerance on the marginal error (1-norm), ott-jax's meaning.
        inner_iterations: iterations between two error evaluations; None (default)
            takes ``min(10, max_iterations)``. Static.
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
            :class:`~jaxdiff.ot.online.OnlineGeometry`), ``"auto"`` (default: online
            when the dense cost would exceed ``memory_budget_bytes``), or a kernel
            operator from :func:`~jaxdiff.ot.kernel_ops.make_kernel_operator` (a pytree:
            traced, with its epsilon; ``x``, ``y``, ``epsilon`` are then None, and
            ``relative_epsilon``, annealing and ``divergence`` are not available;
            ``cost``, ``precision`` and ``memory_budget_bytes`` are point-cloud
            settings and must keep their defaults; ``backend`` is ignored).
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
            the solver did not converge. Called eagerly, the check runs at once (one
            compiled program per shape and static configuration, cached); under
            ``jit`` the checks are ``checkify.check`` calls and the caller wraps the
            jitted function in ``checkify.checkify`` to receive them. Static.
        progress: print ``sinkhorn: iteration k/max, error e`` to stderr every
            ``inner_iterations`` iterations, from the compiled loop (a host callback;
            also under ``jit`` and ``vmap``, one line per problem). Results are
            unchanged. Meant for long solves (the online geometry at 10^6 points): the
            solver state goes to the host after every iteration (about 1 ms per
            iteration on an H200 at 65,536 points). With ``divergence`` the two
            symmetric solves print too. Static.

    Returns:
        An :class:`OTResult` with potentials ``f`` ``[n]``, ``g`` ``[m]``, costs,
        ``converged``, ``n_iters`` and ``errors``.

    Raises:
        TypeError / ValueError: bad shapes, dtypes, names or (concrete) values, or an
            error trace (``max_iterations / inner_iterations``) that cannot fit.
    """
    statics = _check_statics(
        cost=cost,
        relative_epsilon=relative_epsilon,
        max_iterations=max_iterations,
        min_iterations=min_iterations,
        inner_iterations=inner_iterations,
        tau_a=tau_a,
        tau_b=tau_b,
        epsilon_init=epsilon_init,
        epsilon_decay=epsilon_decay,
        memory_budget_bytes=memory_budget_bytes,
        backend=backend,
        precision=precision,
        divergence=divergence,
        progress=progress,
    )
    operator = _check_geometry(geometry, statics, x, y, epsilon)
    threshold = check_positive_scalar("threshold", threshold)
    if operator is None:
        if epsilon is None:
            raise TypeError("epsilon is required for point clouds (a number > 0), got None")
        epsilon = check_positive_scalar("epsilon", epsilon)
        geometry = check_choice("geometry", geometry, GEOMETRIES)
    if check_bool("debug", debug) and is_concrete((x, y, a, b, epsilon, threshold, operator)):
        name = geometry if operator is None else None
        program = _checked_program(tuple(sorted({**statics, "geometry": name}.items())))
        err, result = program(x, y, a, b, epsilon, threshold, operator)
        if err.get() is not None:
            raise FloatingPointError(err.get())
        return result
    if operator is not None:
        return _solve_operator(operator, a, b, threshold, debug, **statics)
    return _solve_clouds(x, y, a, b, epsilon, threshold, geometry, debug, **statics)


def _check_statics(**kw) -> dict:
    """Validated, normalised static settings (hashable: the debug program's cache key)."""
    kw["cost"] = COSTS.canonical(kw["cost"])
    kw["precision"] = check_choice("precision", kw["precision"], PRECISIONS)
    backend = check_choice("backend", kw["backend"], BACKENDS)
    kw["backend"] = pick_backend(backend, kw["cost"], kw["precision"])
    kw["memory_budget_bytes"] = check_int_range("memory_budget_bytes", kw["memory_budget_bytes"], 1)
    kw["relative_epsilon"] = check_bool("relative_epsilon", kw["relative_epsilon"])
    kw["divergence"] = check_bool("divergence", kw["divergence"])
    kw["progress"] = check_bool("progress", kw["progress"])
    top = check_int_range("max_iterations", kw["max_iterations"], 1, MAX_ITERATIONS)
    kw["max_iterations"] = top
    kw["min_iterations"] = check_int_range("min_iterations", kw["min_iterations"], 0, top)
    inner = kw["inner_iterations"]
    inner = min(DEFAULT_INNER_ITERATIONS, top) if inner is None else inner
    kw["inner_iterations"] = check_int_range("inner_iterations", inner, 1, top)
    kw["epsilon_init"] = check_real("epsilon_init", kw["epsilon_init"], 1.0)
    kw["epsilon_decay"] = check_fraction("epsilon_decay", kw["epsilon_decay"])
    kw["tau_a"] = check_fraction("tau_a", kw["tau_a"])
    kw["tau_b"] = check_fraction("tau_b", kw["tau_b"])
    solves = 3 if kw["divergence"] else 1
    trace = -(-top // kw["inner_iterations"]) * 8 * solves
    check_allocation(
        f"max_iterations={top} with inner_iterations={kw['inner_iterations']} (the error trace)",
        trace,
        "lower max_iterations or raise inner_iterations (errors are recorded every "
        "inner_iterations steps)",
    )
    return kw


def _check_geometry(geometry, statics: dict, x, y, epsilon) -> KernelOperator | None:
    """The operator passed as ``geometry`` (None for a geometry name), its misuse refused."""
    if isinstance(geometry, str):
        return None
    if not isinstance(geometry, KernelOperator):
        raise TypeError(
            f"geometry must be one of {list(GEOMETRIES)} or an operator from "
            f"make_kernel_operator, got {type(geometry).__name__}: {geometry!r}"
        )
    given = {"x": x, "y": y, "epsilon": epsilon}
    for field, value in given.items():
        if value is not None:
            raise ValueError(
                f"{field} must be None when geometry is a kernel operator (the operator "
                "holds its points and epsilon)"
            )
    refused = {
        "relative_epsilon": statics["relative_epsilon"],
        "divergence": statics["divergence"],
        "epsilon_init/epsilon_decay": (statics["epsilon_init"], statics["epsilon_decay"])
        != (1.0, 1.0),
    }
    for field, on in refused.items():
        if on:
            raise ValueError(f"{field} is not available with a kernel operator as geometry")
    for field, default in _CLOUD_DEFAULTS.items():
        if field != "backend" and statics[field] != default:
            raise ValueError(
                f"{field}={statics[field]!r} is a point-cloud setting; a kernel operator "
                f"as geometry takes the default {default!r}"
            )
    return geometry


@functools.lru_cache(maxsize=64)
def _checked_program(statics: tuple):
    """Jitted, checkified ``sinkhorn`` for one static configuration (cached)."""
    kwargs = dict(statics)

    def run(x, y, a, b, epsilon, threshold, operator):
        geometry = kwargs["geometry"] if operator is None else operator
        options = {**kwargs, "geometry": geometry, "debug": True}
        return sinkhorn(x, y, a, b, epsilon=epsilon, threshold=threshold, **options)

    return jax.jit(checkify.checkify(run, errors=checkify.user_checks))


def _solver_kwargs(statics: dict, threshold, lse_mode: bool) -> dict:
    return {
        "threshold": threshold,
        "max_iterations": statics["max_iterations"],
        "min_iterations": statics["min_iterations"],
        "inner_iterations": statics["inner_iterations"],
        "lse_mode": lse_mode,
        "progress_fn": print_progress if statics["progress"] else None,
    }


def _solve_operator(op: KernelOperator, a, b, threshold, debug: bool, **statics) -> OTResult:
    """Sinkhorn on a kernel operator: log domain where it has one, else scaling space."""
    tau_a, tau_b = statics["tau_a"], statics["tau_b"]
    balanced = tau_a == 1.0 and tau_b == 1.0
    n, m = op.shape
    a = check_weights("a", a, n, op.dtype, balanced)
    b = check_weights("b", b, m, op.dtype, balanced)
    out = run_solver(op, a, b, tau_a, tau_b, _solver_kwargs(statics, threshold, op.log_domain))
    flags = health.input_flags(None, None, a, b, op.epsilon, balanced)
    result, finite = package(
        out,
        op,
        out.primal_cost if op.log_domain else None,
        flags,
        statics["inner_iterations"],
        a=a,
        b=b,
        x=None,
        y=None,
        operator=op,
        cost=None,
        tau_a=tau_a,
        tau_b=tau_b,
        lse_mode=op.log_domain,
    )
    if debug:
        health.check_all(flags, finite, result.converged)
    return result


def _solve_clouds(x, y, a, b, epsilon, threshold, geometry: str, debug: bool, **st) -> OTResult:
    """Sinkhorn between point clouds on the dense or online geometry."""
    balanced = st["tau_a"] == 1.0 and st["tau_b"] == 1.0
    x = check_point_cloud("x", x)
    y = check_point_cloud("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got x {x.shape} and y {y.shape}")
    dtype = jnp.result_type(x.dtype, y.dtype, float)
    x, y = x.astype(dtype), y.astype(dtype)
    a = check_weights("a", a, x.shape[0], dtype, balanced)
    b = check_weights("b", b, y.shape[0], dtype, balanced)
    geometry = pick_geometry(geometry, x.shape[0], y.shape[0], dtype, st["memory_budget_bytes"])
    online = geometry == "online"
    geom_args = {
        "online": online,
        "cost": st["cost"],
        "backend": st["backend"],
        "precision": st["precision"],
        "epsilon_init": st["epsilon_init"],
        "epsilon_decay": st["epsilon_decay"],
    }
    solver_kwargs = _solver_kwargs(st, threshold, True)
    eps = jnp.asarray(epsilon, dtype=dtype)
    geom = cloud_geometry(x, y, eps, st["relative_epsilon"], **geom_args)
    out = run_solver(geom, a, b, st["tau_a"], st["tau_b"], solver_kwargs)
    primal = geom.transport_cost(out.f, out.g) if online else out.primal_cost
    flags = health.input_flags(x, y, a, b, geom.epsilon, balanced)
    result, finite = package(
        out,
        geom,
        primal,
        flags,
        st["inner_iterations"],
        a=a,
        b=b,
        x=x,
        y=y,
        cost=st["cost"],
        tau_a=st["tau_a"],
        tau_b=st["tau_b"],
        online=online,
        backend=st["backend"],
        precision=st["precision"],
    )
    if st["divergence"]:
        result = with_divergence(result, geom_args, solver_kwargs)
    if debug:
        health.check_all(flags, finite, result.converged)
    return result
