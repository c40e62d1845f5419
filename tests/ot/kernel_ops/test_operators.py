"""Kernel operators against dense oracles (POT's ot.dist, numpy)."""

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from jaxdiff.ot.kernel_ops import (
    KernelConfig,
    grid_points,
    kernel_operator_error,
    make_kernel_operator,
)


def _clouds(n=40, m=30, d=2, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * scale, rng.normal(size=(m, d)) * scale + 0.2


def _dense(kernel_type, x, y, eps):
    """numpy oracle: POT's ot.dist (sqeuclidean, or euclidean for the laplacian)."""
    metric = "sqeuclidean" if kernel_type == "gaussian" else "euclidean"
    return np.exp(-ot.dist(x, y, metric=metric) / eps)


def _grid(shape):
    axes = [np.linspace(-0.5, 0.7, n) * (k + 1) for k, n in enumerate(shape)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1)


@pytest.mark.parametrize("kernel_type", ["gaussian", "laplacian"])
def test_direct_matches_pot_dense_kernel(kernel_type, enable_x64):
    x, y = _clouds()
    eps = 0.2
    op = make_kernel_operator(KernelConfig(kernel_type=kernel_type, epsilon=eps), x, y)
    dense = _dense(kernel_type, x, y, eps)
    assert op.shape == (40, 30)
    np.testing.assert_allclose(op.matrix, dense, rtol=1e-10, atol=1e-13)
    v = np.random.default_rng(1).uniform(size=(30, 3))
    np.testing.assert_allclose(op.apply(v), dense @ v, rtol=1e-10)
    u = np.random.default_rng(2).uniform(size=40)
    np.testing.assert_allclose(op.apply_transpose(u), dense.T @ u, rtol=1e-10)


def test_direct_y_none_is_x_and_float32(key):
    x, _ = _clouds(n=16)
    op = make_kernel_operator(KernelConfig(epsilon=0.5), x.astype(np.float32))
    assert op.shape == (16, 16) and op.matrix.dtype == jnp.float32
    np.testing.assert_allclose(op.matrix, _dense("gaussian", x, x, 0.5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(9,), (5, 6), (3, 4, 5)])
@pytest.mark.parametrize("kernel_type", ["gaussian", "laplacian"])
def test_fft_equals_dense_on_grids(shape, kernel_type, enable_x64):
    g = _grid(shape)
    eps = 0.3
    op = make_kernel_operator(KernelConfig(kernel_type, eps, "fft"), g)
    pts = np.asarray(grid_points(g))
    dense = _dense(kernel_type, pts, pts, eps)
    size = int(np.prod(shape))
    assert op.shape == (size, size)
    rng = np.random.default_rng(2)
    v1, v2 = rng.normal(size=size), rng.normal(size=(size, 3))
    np.testing.assert_allclose(op.apply(v1), dense @ v1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(op.apply(v2), dense @ v2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(op.apply_transpose(v2), dense.T @ v2, rtol=1e-10, atol=1e-12)
    err = kernel_operator_error(jax.random.key(0), op, g, g)
    assert err.apply < 1e-12 and err.apply_transpose < 1e-12


def test_fft_gaussian_rectilinear_grid_float32():
    axes = [np.array([0.0, 0.1, 0.35, 0.4]), np.array([0.0, 0.2, 0.3])]
    g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).astype(np.float32)
    op = make_kernel_operator(KernelConfig("gaussian", 0.1, "fft"), g)
    pts = g.reshape(-1, 2).astype(np.float64)
    v = np.random.default_rng(0).uniform(size=12)
    np.testing.assert_allclose(op.apply(v), _dense("gaussian", pts, pts, 0.1) @ v, rtol=1e-5)


@pytest.mark.parametrize(
    "kernel_type,feature_map",
    [
        ("gaussian", "positive"),
        ("laplacian", "positive"),
        ("laplacian", "fourier"),
    ],
)
def test_rff_error_small_and_decreasing(kernel_type, feature_map, enable_x64):
    x, y = _clouds()
    errors = []
    for r in (64, 4096):
        cfg = KernelConfig(kernel_type, 0.5, "rff", num_features=r, feature_map=feature_map)
        op = make_kernel_operator(cfg, x, y, key=jax.random.key(3))
        assert op.shape == (40, 30)
        if r == 64:  # the approximate kernel [n, m]: positive features keep it > 0
            approx = np.asarray(op.apply(np.eye(30)))
            if feature_map == "positive":
                assert np.all(np.isfinite(approx)) and np.all(approx > 0)
            else:  # the contrast: cosine features can go negative
                assert np.any(approx < 0)
        e = kernel_operator_error(jax.random.key(4), op, x, y)
        errors.append(max(float(e.apply), float(e.apply_transpose)))
    assert errors[1] < errors[0]
    assert errors[1] < 0.06


@pytest.mark.parametrize("kernel_type", ["gaussian", "laplacian"])
def test_nystrom_error_decreasing_and_exact_at_full_rank(kernel_type, enable_x64):
    x, y = _clouds()
    errors = []
    for rank in (4, 64):
        cfg = KernelConfig(kernel_type, 0.5, "nystrom", rank=rank)
        op = make_kernel_operator(cfg, x, y, key=jax.random.key(5))
        e = kernel_operator_error(jax.random.key(6), op, x, y)
        errors.append(max(float(e.apply), float(e.apply_transpose)))
    assert errors[1] < errors[0] and errors[1] < 0.02
    # rank = n with y = x: every point is a landmark, the sketch is the kernel.
    cfg = KernelConfig(kernel_type, 0.05, "nystrom", rank=40, nystrom_rcond=1e-14)
    op = make_kernel_operator(cfg, x, key=jax.random.key(7))
    full = np.asarray(op.apply(np.eye(40)))
    np.testing.assert_allclose(full, _dense(kernel_type, x, x, 0.05), atol=1e-8)


@pytest.mark.parametrize("solver", ["direct", "rff", "nystrom"])
def test_apply_jits_and_accepts_vectors_and_matrices(solver, key):
    x, y = _clouds()
    x, y = x.astype(np.float32), y.astype(np.float32)
    cfg = KernelConfig(epsilon=0.5, solver_type=solver, num_features=128, rank=16)

    @jax.jit
    def run(x, y, v, u):
        op = make_kernel_operator(cfg, x, y, key=key)
        return op.apply(v), op.apply(jnp.stack([v, v], 1)), op.apply_transpose(u)

    kv, kvv, ktu = run(x, y, jnp.ones(30), jnp.ones(40))
    assert kv.shape == (40,) and kvv.shape == (40, 2) and ktu.shape == (30,)
    np.testing.assert_allclose(kvv[:, 1], kv, rtol=1e-6)
    op = make_kernel_operator(cfg, x, y, key=key)
    np.testing.assert_allclose(jax.jit(lambda o, v: o.apply(v))(op, jnp.ones(30)), kv, rtol=1e-5)


def test_fft_laplacian_float32_under_jit_matches_dense():
    g = _grid((4, 5)).astype(np.float32)
    cfg = KernelConfig("laplacian", 0.3, "fft")
    v = jnp.linspace(0.0, 1.0, 20, dtype=jnp.float32)
    jitted = jax.jit(lambda g, v: make_kernel_operator(cfg, g).apply(v))(g, v)
    pts = g.reshape(-1, 2).astype(np.float64)
    expected = _dense("laplacian", pts, pts, 0.3) @ np.asarray(v, np.float64)
    assert jitted.dtype == jnp.float32
    np.testing.assert_allclose(jitted, expected, rtol=1e-5)


def test_laplacian_gradient_is_finite_at_zero_distance():
    x, _ = _clouds(n=8)
    cfg = KernelConfig("laplacian", 0.5)

    def total(x):
        return jnp.sum(make_kernel_operator(cfg, x).apply(jnp.ones(8)))

    grad = jax.grad(total)(jnp.asarray(x, jnp.float32))
    assert grad.shape == (8, 2) and bool(jnp.all(jnp.isfinite(grad)))
