"""Run ott-jax's Sinkhorn on one geometry and package the :class:`OTResult`.

The front door (:func:`jaxdiff.ot.sinkhorn`) validates arguments and builds the
geometry; this module holds the pieces both of its paths share: the point-cloud
geometries (dense or online, epsilon annealed when asked), the solver call, the
debiased divergence and the result with its health report.
"""

from __future__ import annotations

import jax.numpy as jnp
from ott.geometry import epsilon_scheduler, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import acceleration
from ott.solvers.linear import sinkhorn as ott_sinkhorn

from jaxdiff.ot.costs import make_cost_fn
from jaxdiff.ot.online import OnlineGeometry
from jaxdiff.ot.result import OTResult

__all__ = ["cloud_geometry", "package", "run_solver", "with_divergence"]


def cloud_geometry(
    x, y, epsilon, relative, *, online, cost, backend, precision, epsilon_init, epsilon_decay
):
    """The ott-jax geometry of one point-cloud problem (epsilon annealed when asked)."""

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


def run_solver(geom, a, b, tau_a, tau_b, solver_kwargs, symmetric=False):
    """Run ott-jax's Sinkhorn on ``geom`` (``solver_kwargs`` include ``lse_mode``).

    Symmetric problems (``x = y``, ``a = b``) use averaged updates with momentum 0.5,
    which converge where alternating updates oscillate (ott-jax's choice for the
    divergence's autocorrelation terms).
    """
    problem = linear_problem.LinearProblem(geom, a=a, b=b, tau_a=tau_a, tau_b=tau_b)
    if symmetric:
        momentum = acceleration.Momentum(start=0, value=0.5)
        solver_kwargs = {**solver_kwargs, "parallel_dual_updates": True, "momentum": momentum}
    return ott_sinkhorn.Sinkhorn(**solver_kwargs)(problem)


def package(out, geom, primal, flags, inner_iterations: int, **fields):
    """The :class:`OTResult` of ott-jax's output ``out`` on ``geom``, and its finiteness.

    Args:
        out: ott-jax's ``SinkhornOutput``.
        geom: the geometry it was solved on (gives the absolute ``epsilon``).
        primal: ``<P, C>`` or None where it cannot be formed.
        flags: ``[len(INPUT_CHECKS)]`` input flags (see :mod:`jaxdiff.ot.health`).
        inner_iterations: iterations between two recorded errors (static).
        **fields: the remaining :class:`OTResult` fields (weights, points, statics).

    Returns:
        ``(result, finite)``: finite is the bool scalar "potentials and costs finite".
    """
    errors = out.errors if out.errors.ndim == 1 else out.errors[:, 0]
    a, b = fields["a"], fields["b"]
    costs = [out.reg_ot_cost] if primal is None else [primal, out.reg_ot_cost]
    finite = jnp.all(jnp.isfinite(jnp.stack(costs)))
    finite &= jnp.all(jnp.isfinite(out.f) | (a == 0)) & jnp.all(jnp.isfinite(out.g) | (b == 0))
    result = OTResult(
        f=out.f,
        g=out.g,
        epsilon=jnp.asarray(geom.epsilon, dtype=a.dtype),
        primal_cost=primal,
        reg_ot_cost=out.reg_ot_cost,
        converged=jnp.asarray(out.converged) & finite & ~jnp.any(flags),
        input_errors=flags,
        n_iters=jnp.sum(errors != -1) * inner_iterations,
        errors=errors,
        **fields,
    )
    return result, finite


def with_divergence(result: OTResult, geom_args: dict, solver_kwargs: dict) -> OTResult:
    """Add the debiased divergence from the two symmetric problems of ``result``."""
    value = result.reg_ot_cost + 0.5 * result.epsilon * (jnp.sum(result.a) - jnp.sum(result.b)) ** 2
    converged = result.converged
    for points, weights in ((result.x, result.a), (result.y, result.b)):
        geom = cloud_geometry(points, points, result.epsilon, False, **geom_args)
        out = run_solver(geom, weights, weights, result.tau_a, result.tau_b, solver_kwargs, True)
        value = value - 0.5 * out.reg_ot_cost
        converged &= jnp.asarray(out.converged) & jnp.isfinite(out.reg_ot_cost)
    return result.replace(divergence=value, converged=converged)
