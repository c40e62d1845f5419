"""ConstrainedSkellamBridge: batch totals exact (closed form) at every time and every step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

from jaxdiff.counting import (
    BesselM,
    ConstantM,
    ConstrainedSkellamBridge,
    ReflectedSkellamBridge,
    constrained_thin,
    make_weight_schedule,
    project_column_sums,
)
from tests.counting.test_random import chisq_pvalue

rng = np.random.default_rng(0)
X0 = rng.poisson(4.0, (12, 3)).astype(np.int32)
X1 = rng.poisson([1.0, 9.0, 4.0], (12, 3)).astype(np.int32)


def cosine(t):
    """w(t) as the library evaluates it (float32; closed form tested in test_schedules),
    so that round() ties break the same way."""
    w = 0.5 * (1 - np.cos(np.pi * np.asarray(t, float)))
    lib = np.asarray(make_weight_schedule("cosine")(np.asarray(t, np.float32)))
    np.testing.assert_allclose(lib, w, atol=1e-6)
    return lib.astype(np.float64)


def test_forward_totals_exact_and_endpoints(key):
    bridge = ConstrainedSkellamBridge(BesselM(3.0, 3.0), schedule_type="cosine")
    call = jax.jit(bridge.__call__)
    for i, t in enumerate((0.0, 0.15, 0.5, 0.9, 1.0)):
        t_out, x_t, target = call(jax.random.fold_in(key, i), X0, X1, jnp.full((12, 1), t))
        want = X0.sum(0) + np.round(cosine(t) * (X1 - X0).sum(0))
        np.testing.assert_array_equal(np.asarray(x_t).sum(0), want)
        np.testing.assert_array_equal(target, X0)
        assert t_out.shape == (12, 1) and x_t.dtype == jnp.int32
        if t == 0.0:
            np.testing.assert_array_equal(x_t, X0)
        if t == 1.0:
            np.testing.assert_array_equal(x_t, X1)


def model(key, x_t, t, context):
    """A noisy, sometimes negative, float prediction: exercises rounding, clipping, projection."""
    return context * 1.3 + 2.0 * jax.random.normal(key, x_t.shape) - 0.5


def test_sample_totals_exact_at_every_step(key):
    bridge = ConstrainedSkellamBridge(ConstantM(2), schedule_type="cosine")
    mu0 = np.array([2.5, 6.0, 0.0])
    n_steps = 7
    run = jax.jit(
        lambda k: bridge.sample(k, X1, model, n_steps, mu0=mu0, context=X0, return_trajectory=True)
    )
    out = run(key)
    x0, traj = out.samples, out.trajectory
    assert bool(out.all_finite) and bool(out.in_range)
    assert x0.dtype == jnp.int32 and traj.shape == (n_steps + 1, *X1.shape)
    s0 = np.round(12 * mu0)
    w = cosine(np.linspace(0, 1, n_steps + 1))
    want = s0 + np.round(w[:, None] * (X1.sum(0) - s0))  # T_k, k = 0..n_steps
    np.testing.assert_array_equal(np.asarray(traj).sum(1), want[::-1])
    np.testing.assert_array_equal(np.asarray(x0).sum(0), s0)
    assert np.all(np.asarray(x0) >= 0)
    jaxpr = jax.make_jaxpr(lambda k: bridge.sample(k, X1, model, 3, mu0=mu0, context=X0))(key)
    assert [e.primitive.name for e in jaxpr.jaxpr.eqns].count("scan") == 1


def test_constrained_thin_bounds(key):
    up = jnp.array([[3, 0], [5, 1], [0, 7], [2, 2]])
    down = jnp.array([[1, 4], [0, 0], [6, 2], [2, 9]])
    net = jnp.array([1, -2])  # between 0 and sum(up) - sum(down) = [1, -5], same sign
    u, d = jax.jit(constrained_thin)(key, up, down, net, 0.5)
    np.testing.assert_array_equal((u - d).sum(0), net)
    assert bool(jnp.all((u >= 0) & (u <= up) & (d >= 0) & (d <= down)))


def test_project_column_sums(key):
    x = jnp.array([[0, 4, 0], [2, 0, 0], [5, 1, 0]])
    target = jnp.array([3, 9, 4])
    y = np.asarray(jax.jit(project_column_sums)(key, x, target))
    np.testing.assert_array_equal(y.sum(0), target)
    assert np.all(y >= 0)
    assert np.all(y[:, 0] <= np.asarray(x)[:, 0])  # removal only takes existing counts
    assert np.all(y[:, 1] >= np.asarray(x)[:, 1])  # addition only adds


def test_constrained_bad_inputs(key):
    bridge = ConstrainedSkellamBridge(ConstantM(1))
    with pytest.raises(ValueError, match="same for every row"):
        bridge(key, X0, X1, jnp.linspace(0, 1, 12)[:, None])
    with pytest.raises(TypeError, match="x1"):
        bridge(key, X0, X1 * 1.0)
    with pytest.raises(ValueError, match="mu0"):
        bridge.sample(key, X1, model, 3, mu0=np.ones(2))
    with pytest.raises(ValueError, match="mu0"):
        bridge.sample(key, X1, model, 3, mu0=-np.ones(3))
    with pytest.raises(ValueError, match="schedule_type"):
        ConstrainedSkellamBridge(ConstantM(1), schedule_type="cos")


def test_reflected_bridge_folded_law_and_nonnegative_sampling(key):
    """Forward marginal = folded law of x0 + Bin(B_1, w) - Bin(N_1 - B_1, w); samples >= 0."""
    m, w, reps = 3, 0.5, 4000
    x0 = np.array([[0, 1]], np.int32)
    x1 = np.array([[2, 0]], np.int32)
    bridge = ReflectedSkellamBridge(ConstantM(m), delta=True)
    t = np.concatenate([np.zeros((1, 1)), np.ones((1, 1)), np.full((reps, 1), w)])
    xa = np.concatenate([x0, x0, np.tile(x0, (reps, 1))])
    xb = np.concatenate([x1, x1, np.tile(x1, (reps, 1))])
    _, x_t, target = jax.jit(bridge.__call__)(key, xa, xb, t.astype(np.float32))
    np.testing.assert_array_equal(x_t[0], x0[0])
    np.testing.assert_array_equal(x_t[1], x1[0])
    np.testing.assert_array_equal(target, xa - np.asarray(x_t))
    for j in range(2):
        d = int(x1[0, j] - x0[0, j])
        n1 = abs(d) + 2 * m
        b1 = (n1 + d) // 2
        signed = np.convolve(
            st.binom(b1, w).pmf(np.arange(b1 + 1)),
            st.binom(n1 - b1, w).pmf(np.arange(n1 - b1 + 1))[::-1],
        )
        values = x0[0, j] + np.arange(-(n1 - b1), b1 + 1)
        support = np.arange(0, np.abs(values).max() + 1)
        folded = np.array([signed[np.abs(values) == v].sum() for v in support])
        assert chisq_pvalue(np.asarray(x_t)[2:, j], support, folded) > 1e-3

    noisy = lambda k, x, t, c: 3.0 * jax.random.normal(k, x.shape)  # noqa: E731
    traj = jax.jit(lambda k: bridge.sample(k, X1, noisy, 5, return_trajectory=True))(key).trajectory
    assert traj.dtype == jnp.int32 and bool(jnp.all(traj >= 0))
    with pytest.raises(ValueError, match="x0 must be non-negative"):
        bridge(key, -np.ones((1, 2), np.int32), x1)
