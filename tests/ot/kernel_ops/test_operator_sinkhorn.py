"""Sinkhorn on kernel operators (sinkhorn(geometry=op)) against POT's ot.sinkhorn."""

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from jaxdiff.ot import sinkhorn
from jaxdiff.ot.kernel_ops import KernelConfig, make_kernel_operator


def _problem(n=12, m=9, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)) * 0.5, rng.normal(size=(m, 2)) * 0.5 + 0.3
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
    return x, y, a / a.sum(), b / b.sum()


def _plan(res):
    """The dense [n, m] plan, column by column through plan_apply (P e_j)."""
    _, m = res.shape
    return np.asarray(res.plan_apply(np.eye(m), axis=1)).T


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_direct_plan_matches_pot(eps, enable_x64):
    x, y, a, b = _problem()
    op = make_kernel_operator(KernelConfig(epsilon=eps), x, y)
    res = sinkhorn(a=a, b=b, geometry=op, threshold=1e-12, max_iterations=5000)
    expected = ot.sinkhorn(a, b, ot.dist(x, y), reg=eps, stopThr=1e-13, numItermax=100000)
    np.testing.assert_allclose(_plan(res), expected, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(res.matrix, expected, rtol=1e-6, atol=1e-12)
    transposed = res.plan_apply(np.eye(12), axis=0)  # rows e_i^T P
    np.testing.assert_allclose(transposed, expected, rtol=1e-6, atol=1e-12)
    assert bool(res.converged) and int(res.n_iters) % 10 == 0 and res.lse_mode
    np.testing.assert_allclose(res.plan_apply(np.ones(9), axis=1), a, atol=1e-10)
    np.testing.assert_allclose(res.plan_apply(np.ones(12), axis=0), b, atol=1e-10)
    np.testing.assert_allclose(res.primal_cost, np.sum(expected * ot.dist(x, y)), rtol=1e-6)


def test_direct_gaussian_is_sinkhorn_gibbs_kernel(enable_x64):
    """The direct gaussian operator gives the point-cloud (sqeuclidean) solution."""
    x, y, a, b = _problem(seed=1)
    eps = 0.3
    solve = jax.jit(sinkhorn, static_argnames=("max_iterations",))
    out = solve(x, y, a, b, epsilon=eps, threshold=1e-11, max_iterations=20000)
    op = make_kernel_operator(KernelConfig(epsilon=eps), x, y)
    res = solve(a=a, b=b, geometry=op, threshold=1e-11, max_iterations=20000)
    np.testing.assert_allclose(_plan(res), out.matrix, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(res.reg_ot_cost, out.reg_ot_cost, rtol=1e-8)


@pytest.mark.parametrize("solver", ["rff", "nystrom"])
def test_approximate_operators_solve_close_to_direct(solver, enable_x64):
    x, y, a, b = _problem(n=30, m=25)
    eps = 0.5
    exact = sinkhorn(a=a, b=b, geometry=make_kernel_operator(KernelConfig(epsilon=eps), x, y))
    cfg = KernelConfig(epsilon=eps, solver_type=solver, num_features=4096, rank=40)
    res = sinkhorn(a=a, b=b, geometry=make_kernel_operator(cfg, x, y, key=jax.random.key(0)))
    assert bool(res.converged) and not res.lse_mode and res.primal_cost is None
    w = np.random.default_rng(0).uniform(size=25)
    ref = exact.plan_apply(w, axis=1)
    assert np.linalg.norm(res.plan_apply(w, axis=1) - ref) / np.linalg.norm(ref) < 0.1
    with pytest.raises(ValueError, match=f"'{solver}' operator never forms"):
        _ = res.matrix
    with pytest.raises(ValueError, match="barycentric_map needs the target points"):
        res.barycentric_map()


@pytest.mark.parametrize("kernel_type", ["gaussian", "laplacian"])
def test_fft_grid_sinkhorn_matches_pot(kernel_type, enable_x64):
    r = np.linspace(0.0, 1.0, 5)
    g = np.stack(np.meshgrid(r, r, indexing="ij"), -1)
    pts = g.reshape(-1, 2)
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.5, 1.5, 25), rng.uniform(0.5, 1.5, 25)
    a, b = a / a.sum(), b / b.sum()
    op = make_kernel_operator(KernelConfig(kernel_type, 0.2, "fft"), g)
    res = sinkhorn(a=a, b=b, geometry=op, threshold=1e-12, max_iterations=5000)
    metric = "sqeuclidean" if kernel_type == "gaussian" else "euclidean"
    cost = ot.dist(pts, pts, metric=metric)
    expected = ot.sinkhorn(a, b, cost, reg=0.2, stopThr=1e-13, numItermax=100000)
    np.testing.assert_allclose(_plan(res), expected, rtol=1e-6, atol=1e-12)
    assert res.lse_mode == (kernel_type == "gaussian")
    if kernel_type == "gaussian":  # ott-jax's Grid has a low-rank cost: <P, C> is exact
        np.testing.assert_allclose(res.primal_cost, np.sum(expected * cost), rtol=1e-6)


def test_jit_and_nonconvergence_reported():
    x, y, a, b = _problem()
    x, y = x.astype(np.float32), y.astype(np.float32)
    op = make_kernel_operator(
        KernelConfig(epsilon=0.5, solver_type="rff"), x, y, key=jax.random.key(1)
    )
    solve = jax.jit(sinkhorn, static_argnames=("max_iterations", "inner_iterations"))
    res = solve(a=jnp.asarray(a), b=jnp.asarray(b), geometry=op, max_iterations=200)
    assert bool(res.converged) and res.f.shape == (12,) and res.g.shape == (9,)
    short = solve(a=jnp.asarray(a), b=jnp.asarray(b), geometry=op, max_iterations=1, threshold=1e-9)
    assert not bool(short.converged) and int(short.n_iters) == 1
    assert short.errors.shape == (1,) and float(short.errors[0]) > 1e-9


def test_three_epsilons_one_compile():
    """epsilon is a traced leaf of the config and of the operator: no recompilation."""
    x, y, a, b = _problem()
    traces = []

    @jax.jit
    def solve(eps):
        traces.append(1)  # runs once per compilation
        cfg = KernelConfig(epsilon=eps, solver_type="rff", num_features=256)
        op = make_kernel_operator(cfg, x, y, key=jax.random.key(0))
        return sinkhorn(a=a, b=b, geometry=op).reg_ot_cost

    costs = [float(solve(jnp.float32(eps))) for eps in (0.3, 0.5, 0.8)]
    assert len(traces) == 1 and len(set(costs)) == 3

    @jax.jit
    def solve_op(op):
        traces.append(1)
        return sinkhorn(a=a, b=b, geometry=op).reg_ot_cost

    traces.clear()
    for eps in (0.3, 0.5, 0.8):
        solve_op(make_kernel_operator(KernelConfig(epsilon=eps), x, y))
    assert len(traces) == 1


def test_operator_misuse_errors():
    x, y, a, b = _problem()
    op = make_kernel_operator(KernelConfig(), x, y)
    with pytest.raises(ValueError, match=r"a must have shape \[12\]"):
        sinkhorn(a=np.ones(9) / 9, geometry=op)
    with pytest.raises(ValueError, match="b must be non-negative"):
        sinkhorn(b=np.array([0.5, 0.5, 0.5, -0.5, 0, 0, 0, 0, 0]), geometry=op)
    with pytest.raises(ValueError, match="max_iterations"):
        sinkhorn(geometry=op, max_iterations=0)
    with pytest.raises(ValueError, match="epsilon must be None"):
        sinkhorn(geometry=op, epsilon=0.1)
    with pytest.raises(ValueError, match="x must be None"):
        sinkhorn(x, geometry=op)
    with pytest.raises(ValueError, match="divergence is not available"):
        sinkhorn(geometry=op, divergence=True)
    with pytest.raises(ValueError, match="cost='cosine' is a point-cloud setting"):
        sinkhorn(geometry=op, cost="cosine")
    with pytest.raises(TypeError, match="geometry must be one of"):
        sinkhorn(x, y, epsilon=0.1, geometry=np.eye(3))
