"""Scaling-space Sinkhorn on kernel operators against POT's ot.sinkhorn."""

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from jaxdiff.ot import sinkhorn
from jaxdiff.ot.kernel_ops import KernelConfig, make_kernel_operator, sinkhorn_scaling


def _problem(n=12, m=9, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)) * 0.5, rng.normal(size=(m, 2)) * 0.5 + 0.3
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
    return x, y, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_direct_plan_matches_pot(eps, enable_x64):
    x, y, a, b = _problem()
    op = make_kernel_operator(KernelConfig(epsilon=eps), x, y)
    res = sinkhorn_scaling(op, a, b, threshold=1e-12, max_iterations=5000)
    expected = ot.sinkhorn(a, b, ot.dist(x, y), reg=eps, stopThr=1e-13, numItermax=100000)
    plan = np.asarray(res.apply(np.eye(9)))
    np.testing.assert_allclose(plan, expected, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(res.apply_transpose(np.eye(12)), expected.T, rtol=1e-6, atol=1e-12)
    assert bool(res.converged) and int(res.n_iters) % 10 == 0
    rows, cols = res.marginals()
    np.testing.assert_allclose(rows, a, atol=1e-10)
    np.testing.assert_allclose(cols, b, atol=1e-10)


def test_direct_gaussian_is_sinkhorn_gibbs_kernel(enable_x64):
    """The direct gaussian kernel is jaxdiff.ot.sinkhorn's (sqeuclidean) kernel."""
    x, y, a, b = _problem(seed=1)
    eps = 0.3
    solve = jax.jit(sinkhorn, static_argnames=("threshold", "max_iterations"))
    out = solve(x, y, a, b, epsilon=eps, threshold=1e-11, max_iterations=20000)
    res = sinkhorn_scaling(
        make_kernel_operator(KernelConfig(epsilon=eps), x, y), a, b, threshold=1e-11
    )
    log_plan = (out.f[:, None] + out.g[None, :] - ot.dist(x, y)) / eps
    np.testing.assert_allclose(res.apply(np.eye(9)), np.exp(log_plan), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("solver", ["rff", "nystrom"])
def test_approximate_operators_solve_close_to_direct(solver, enable_x64):
    x, y, a, b = _problem(n=30, m=25)
    eps = 0.5
    exact = sinkhorn_scaling(make_kernel_operator(KernelConfig(epsilon=eps), x, y), a, b)
    cfg = KernelConfig(epsilon=eps, solver_type=solver, num_features=4096, rank=40)
    res = sinkhorn_scaling(make_kernel_operator(cfg, x, y, key=jax.random.key(0)), a, b)
    assert bool(res.converged)
    w = np.random.default_rng(0).uniform(size=25)
    ref = exact.apply(w)
    assert np.linalg.norm(res.apply(w) - ref) / np.linalg.norm(ref) < 0.1


def test_fft_grid_sinkhorn_matches_pot(enable_x64):
    r = np.linspace(0.0, 1.0, 5)
    g = np.stack(np.meshgrid(r, r, indexing="ij"), -1)
    pts = g.reshape(-1, 2)
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.5, 1.5, 25), rng.uniform(0.5, 1.5, 25)
    a, b = a / a.sum(), b / b.sum()
    op = make_kernel_operator(KernelConfig("gaussian", 0.2, "fft"), g)
    res = sinkhorn_scaling(op, a, b, threshold=1e-12, max_iterations=5000)
    expected = ot.sinkhorn(a, b, ot.dist(pts, pts), reg=0.2, stopThr=1e-13, numItermax=100000)
    np.testing.assert_allclose(res.apply(np.eye(25)), expected, rtol=1e-6, atol=1e-12)


def test_jit_and_nonconvergence_reported():
    x, y, a, b = _problem()
    x, y = x.astype(np.float32), y.astype(np.float32)
    op = make_kernel_operator(KernelConfig(epsilon=0.5), x, y)
    solve = jax.jit(sinkhorn_scaling, static_argnames=("max_iterations", "inner_iterations"))
    res = solve(op, jnp.asarray(a), jnp.asarray(b), max_iterations=200)
    assert bool(res.converged) and res.u.shape == (12,) and res.v.shape == (9,)
    short = solve(
        op, jnp.asarray(a), jnp.asarray(b), max_iterations=1, inner_iterations=1, threshold=1e-9
    )
    assert not bool(short.converged) and int(short.n_iters) == 1
    assert short.errors.shape == (1,) and float(short.errors[0]) > 1e-9


def test_scaling_input_errors():
    op = make_kernel_operator(KernelConfig(), np.zeros((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"a must have shape \[3\]"):
        sinkhorn_scaling(op, np.ones(4) / 4)
    with pytest.raises(ValueError, match="b must be non-negative"):
        sinkhorn_scaling(op, None, np.array([0.5, 0.5, 0.5, -0.5]))
    with pytest.raises(ValueError, match="max_iterations"):
        sinkhorn_scaling(op, max_iterations=0)
