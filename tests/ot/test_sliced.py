"""Sliced OT: POT oracles, transport map, transformations, invalid inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest

from jaxdiff.ot.sliced import (
    max_sliced_wasserstein,
    random_projections,
    sliced_transport_map,
    sliced_wasserstein,
)


def _clouds(n=40, m=30, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (rng.normal(size=(m, d)) * 0.7 + 1.0).astype(np.float32)
    return x, y


def test_projections_unit_norm(key):
    th = random_projections(key, 4, 7)
    assert th.shape == (4, 7)
    np.testing.assert_allclose(np.linalg.norm(th, axis=0), 1.0, rtol=1e-6)


@pytest.mark.parametrize("n,m,weighted", [(40, 40, False), (40, 30, False), (40, 30, True)])
@pytest.mark.parametrize("p", [1, 2])
def test_sliced_matches_pot(key, n, m, weighted, p):
    x, y = _clouds(n, m)
    a = b = None
    if weighted:
        rng = np.random.default_rng(1)
        a = rng.random(n) + 0.1
        a /= a.sum()
        b = rng.random(m) + 0.1
        b /= b.sum()
    th = np.asarray(random_projections(key, 3, 20), np.float64)
    ours = sliced_wasserstein(key, x, y, num_projections=20, a=a, b=b, p=p)
    ref = ot.sliced_wasserstein_distance(
        x.astype(np.float64), y.astype(np.float64), a, b, n_projections=20, p=p, projections=th
    )
    np.testing.assert_allclose(float(ours), ref, rtol=1e-5)


def test_uniform_equals_explicit_uniform_weights(key):
    x, y = _clouds(25, 25)
    u = jnp.full((25,), 1 / 25)
    fast = sliced_wasserstein(key, x, y, num_projections=10)
    general = sliced_wasserstein(key, x, y, num_projections=10, a=u, b=u)
    np.testing.assert_allclose(float(fast), float(general), rtol=1e-5)


def test_max_sliced_matches_pot(key):
    x, y = _clouds()
    th = np.asarray(random_projections(key, 3, 25), np.float64)
    ours = max_sliced_wasserstein(key, x, y, num_projections=25)
    ref = ot.max_sliced_wasserstein_distance(
        x.astype(np.float64), y.astype(np.float64), n_projections=25, projections=th
    )
    np.testing.assert_allclose(float(ours), ref, rtol=1e-5)
    assert float(ours) >= float(sliced_wasserstein(key, x, y, num_projections=25))


def test_transport_map_gaussian_to_shifted_gaussian(key):
    kx, ky, kt, ks = jax.random.split(key, 4)
    x = jax.random.normal(kx, (300, 2))
    shift = jnp.array([3.0, -2.0])
    y = jax.random.normal(ky, (300, 2)) * 0.5 + shift
    moved = sliced_transport_map(kt, x, y, num_projections=16, num_iterations=60, step_size=2.0)
    assert moved.shape == x.shape
    before = sliced_wasserstein(ks, x, y, num_projections=64)
    after = sliced_wasserstein(ks, moved, y, num_projections=64)
    assert float(after) < 0.1 * float(before)
    np.testing.assert_allclose(np.mean(moved, 0), np.mean(y, 0), atol=0.03)
    np.testing.assert_allclose(np.std(moved, 0), np.std(y, 0), atol=0.03)
    np.testing.assert_allclose(np.mean(y, 0), shift, atol=0.15)


def test_transport_map_unequal_sizes_reduces_distance(key):
    x, y = _clouds(50, 20, d=2)
    moved = sliced_transport_map(key, x, y, num_projections=8, num_iterations=30)
    k2 = jax.random.key(9)
    assert float(sliced_wasserstein(k2, moved, y)) < 0.5 * float(sliced_wasserstein(k2, x, y))


def test_jit_and_vmap(key):
    x, y = _clouds(20, 20)
    f = jax.jit(lambda k, x, y: sliced_wasserstein(k, x, y, num_projections=10))
    np.testing.assert_allclose(
        float(f(key, x, y)), float(sliced_wasserstein(key, x, y, num_projections=10)), rtol=1e-6
    )
    keys = jax.random.split(key, 3)
    batch = jax.vmap(lambda k: sliced_wasserstein(k, x, y, num_projections=10))(keys)
    for k, v in zip(keys, batch, strict=True):
        np.testing.assert_allclose(
            float(v), float(sliced_wasserstein(k, x, y, num_projections=10)), rtol=1e-5
        )
    g = jax.grad(lambda x: sliced_wasserstein(key, x, y, num_projections=10))(jnp.asarray(x))
    assert np.all(np.isfinite(g)) and np.any(g != 0)
    moved = jax.jit(
        lambda k, x: sliced_transport_map(k, x, y, num_projections=4, num_iterations=3)
    )(key, x)
    assert moved.shape == x.shape


def test_bad_inputs(key):
    x, y = _clouds()
    with pytest.raises(ValueError, match="same dimension"):
        sliced_wasserstein(key, x, y[:, :2])
    with pytest.raises(ValueError, match="num_projections"):
        sliced_wasserstein(key, x, y, num_projections=0)
    with pytest.raises(ValueError, match="num_projections"):
        max_sliced_wasserstein(key, x, y, num_projections=-1)
    with pytest.raises(ValueError, match="num_projections"):
        sliced_transport_map(key, x, y, num_projections=0)
    with pytest.raises(ValueError, match="shape"):
        sliced_wasserstein(key, x[0], y)
    with pytest.raises(ValueError, match="a must have shape"):
        sliced_wasserstein(key, x, y, a=np.ones(3) / 3)
    with pytest.raises(ValueError, match="p="):
        sliced_wasserstein(key, x, y, p=0.5)


def test_p_inf_matches_closed_form_for_a_shift(key):
    """y = x + s: every projection is shifted by theta^T s, so W_inf = |theta^T s|."""
    x, _ = _clouds(30, 30, d=3)
    s = np.array([1.0, -2.0, 0.5], np.float32)
    y = x + s
    th = np.asarray(random_projections(key, 3, 20), np.float64)
    proj = np.abs(th.T @ s.astype(np.float64))  # [K]
    for fn in (sliced_wasserstein, max_sliced_wasserstein):
        np.testing.assert_allclose(
            float(fn(key, x, y, num_projections=20, p=np.inf)), proj.max(), rtol=1e-5
        )
    np.testing.assert_allclose(
        float(sliced_wasserstein(key, x, y, num_projections=20, p=2)),
        np.sqrt(np.mean(proj**2)),
        rtol=1e-5,
    )
    # the limit p -> inf: (mean_k w_k^p)^(1/p) -> max_k w_k, from below
    big = float(sliced_wasserstein(key, x, y, num_projections=20, p=64))
    assert proj.max() * 20 ** (-1 / 64) * (1 - 1e-4) <= big <= proj.max() * (1 + 1e-5)


def test_p_inf_weighted_ignores_zero_weight_points(key):
    x = np.array([[0.0, 0.0], [1.0, 1.0], [100.0, -50.0]], np.float32)
    s = np.array([0.5, -0.25], np.float32)
    y = x[:2] + s
    a = np.array([0.5, 0.5, 0.0])
    th = np.asarray(random_projections(key, 2, 10), np.float64)
    expected = np.abs(th.T @ s.astype(np.float64)).max()
    got = sliced_wasserstein(key, x, y, num_projections=10, a=a, p=float("inf"))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    unequal = sliced_wasserstein(key, x[:2], y[:1], num_projections=10, p=np.inf)  # [2] vs [1]
    gaps = np.abs((x[:2].astype(np.float64) - y[0]) @ th).max(axis=0)  # both points move to y0
    np.testing.assert_allclose(float(unequal), gaps.max(), rtol=1e-5)


def test_weights_are_normalised(key):
    x, y = _clouds(20, 15)
    rng = np.random.default_rng(3)
    a, b = rng.random(20) + 0.1, rng.random(15) + 0.1
    for fn in (sliced_wasserstein, max_sliced_wasserstein):
        unit = fn(key, x, y, num_projections=8, a=a / a.sum(), b=b / b.sum())
        scaled = fn(key, x, y, num_projections=8, a=3.0 * a, b=7.0 * b)
        np.testing.assert_allclose(float(scaled), float(unit), rtol=1e-5)


def test_traced_bad_values_give_nan(key):
    x, y = _clouds(12, 10)
    bad = x.copy()
    bad[2, 0] = np.inf
    good_w = np.full(12, 1 / 12)
    neg_w = good_w.copy()
    neg_w[0] = -0.5
    for fn in (sliced_wasserstein, max_sliced_wasserstein):
        f = jax.jit(lambda x, a, fn=fn: fn(key, x, y, num_projections=5, a=a))
        assert np.isfinite(float(f(x, good_w)))
        assert np.isnan(float(f(bad, good_w)))
        assert np.isnan(float(f(x, neg_w)))
        assert np.isnan(float(f(x, np.zeros(12))))
    move = jax.jit(lambda x, s: sliced_transport_map(key, x, y, num_iterations=2, step_size=s))
    assert np.all(np.isfinite(move(x, 1.0)))
    for s in (-1.0, 0.0, float("nan")):
        assert np.all(np.isnan(move(x, s)))
    assert np.all(np.isnan(move(bad, 1.0)))


def test_concrete_bad_values_raise(key):
    x, y = _clouds()
    bad = x.copy()
    bad[0, 0] = np.nan
    for fn in (sliced_wasserstein, max_sliced_wasserstein, sliced_transport_map):
        with pytest.raises(ValueError, match="x has non-finite"):
            fn(key, bad, y)
        with pytest.raises(TypeError, match="key"):
            fn(None, x, y)
        with pytest.raises(ValueError, match="num_projections"):
            fn(key, x, y, num_projections=10**9)
        with pytest.raises(TypeError, match="y must be a real"):
            fn(key, x, y > 0)
    for a, msg in (
        (-np.ones(40), "non-negative"),
        (np.zeros(40), "positive total"),
        (np.full(40, np.nan), "non-finite"),
    ):
        with pytest.raises(ValueError, match=f"a .*{msg}|a has {msg}"):
            sliced_wasserstein(key, x, y, a=a)
    for p in (float("nan"), 0.99, -np.inf):
        with pytest.raises(ValueError, match="p="):
            sliced_wasserstein(key, x, y, p=p)
    for p in ("2", True, None):
        with pytest.raises(TypeError, match="p must"):
            max_sliced_wasserstein(key, x, y, p=p)
    for s in (-1.0, 0.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step_size"):
            sliced_transport_map(key, x, y, step_size=s)
    with pytest.raises(TypeError, match="step_size"):
        sliced_transport_map(key, x, y, step_size="1.0")
    with pytest.raises(ValueError, match="num_iterations"):
        sliced_transport_map(key, x, y, num_iterations=10**9)
