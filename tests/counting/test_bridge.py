"""SkellamBridge: endpoints, closed-form moments, exact law of x_t, reverse step, sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

from jaxdiff.counting import BesselM, ConstantM, PoissonM, SkellamBridge
from jaxdiff.counting.bridge import bridge_latent, skellam_thin
from tests.counting.test_random import chisq_pvalue

X0 = np.array([[0, 5, 10, 2], [3, 3, 3, 7]], np.int32)
X1 = np.array([[7, 1, 10, 0], [0, 9, 2, 7]], np.int32)
REPS = 4000
SLACKS = [ConstantM(3), PoissonM(2.0, 3.0), BesselM(4.0, 4.0)]


def _replicate(t):
    x0, x1 = np.tile(X0, (REPS, 1)), np.tile(X1, (REPS, 1))
    return x0, x1, np.full((x0.shape[0], 1), t, np.float32)


def bessel_mean(lam, d):
    m = np.arange(400)[:, None]
    logp = (m + d / 2) * np.log(lam) - sp.gammaln(m + 1) - sp.gammaln(m + d + 1)
    return (m * np.exp(logp)).sum(0) / sp.iv(d, 2 * np.sqrt(lam))


@pytest.mark.parametrize("slack", SLACKS, ids=["const", "poisson", "bessel"])
def test_endpoints_and_moments(key, slack):
    """x_0 = x0, x_1 = x1 exactly; at t = 0.3 (cosine schedule) E[x_t] = x0 + w diff and
    Var[x_t] = w (1 - w) (|diff| + 2 E[M]). One compiled call: the rows carry their t."""
    bridge = SkellamBridge(slack, schedule_type="cosine")
    x0, x1, t = _replicate(0.3)
    x0 = np.concatenate([X0, X0, x0])
    x1 = np.concatenate([X1, X1, x1])
    t = np.concatenate([np.zeros((2, 1)), np.ones((2, 1)), t]).astype(np.float32)
    t_out, x_t, target = jax.jit(bridge.__call__)(key, x0, x1, t)
    assert t_out.dtype == jnp.float32 and t_out.shape == t.shape and x_t.dtype == jnp.int32
    np.testing.assert_array_equal(x_t[:2], X0)
    np.testing.assert_array_equal(x_t[2:4], X1)
    np.testing.assert_array_equal(target, x0)
    x_t = np.asarray(x_t[4:]).reshape(REPS, *X0.shape)
    w = 0.5 * (1 - np.cos(0.3 * np.pi))
    diff = (X1 - X0).astype(float)
    if isinstance(slack, ConstantM):
        e_m = np.full(diff.shape, 3.0)
    elif isinstance(slack, PoissonM):
        e_m = np.full(diff.shape, 2 * np.sqrt(6.0))
    else:
        e_m = bessel_mean(16.0, np.abs(diff).ravel()).reshape(diff.shape)
    mean = X0 + w * diff
    var = w * (1 - w) * (np.abs(diff) + 2 * e_m)
    assert np.all(np.abs(x_t.mean(0) - mean) < 5 * np.sqrt(var / REPS) + 1e-9)
    # sample variance: relative standard error ~ sqrt(2 / REPS) (+ kurtosis), allow 15%
    np.testing.assert_allclose(x_t.var(0), var, rtol=0.15)


def test_law_of_xt_is_difference_of_binomials(key):
    """With constant slack, x_t - x0 = Bin(B_1, w) - Bin(N_1 - B_1, w) independently."""
    m = 2
    bridge = SkellamBridge(ConstantM(m), schedule_type="linear")
    x0, x1, t = _replicate(0.4)
    _, x_t, _ = jax.jit(bridge.__call__)(key, x0, x1, t)
    inc = (np.asarray(x_t) - x0).reshape(REPS, -1)
    for j, d in enumerate((X1 - X0).ravel()):
        n1 = abs(d) + 2 * m
        b1 = (n1 + d) // 2
        support = np.arange(-(n1 - b1), b1 + 1)
        up = st.binom(b1, 0.4).pmf(np.arange(b1 + 1))
        down = st.binom(n1 - b1, 0.4).pmf(np.arange(n1 - b1 + 1))
        pmf = np.convolve(up, down[::-1])  # index i <-> value i - (n1 - b1)
        assert chisq_pvalue(inc[:, j], support, pmf) > 1e-3, d


def test_latent_parity_and_thinning_bounds(key):
    diff = jnp.array([-5, 0, 3, 8])
    n, b = bridge_latent(diff, jnp.array([0, 2, 1, 4]))
    assert np.all(np.asarray(n + diff) % 2 == 0)
    np.testing.assert_array_equal(2 * b - n, diff)
    n_kept, b_kept = jax.jit(skellam_thin)(key, jnp.tile(n, (500, 1)), jnp.tile(b, (500, 1)), 0.6)
    assert np.all((b_kept >= 0) & (b_kept <= b) & (n_kept - b_kept <= n - b))


def test_thinning_is_the_binomial_hypergeometric_law(key):
    """(n_kept, b_kept) against the paper's two-stage law, joint pmf by scipy."""
    n, b, rho = 9, 6, 0.35
    n_kept, b_kept = jax.jit(skellam_thin)(key, jnp.full((20_000,), n), jnp.full((20_000,), b), rho)
    pairs = [(k, j) for k in range(n + 1) for j in range(max(0, k - (n - b)), min(k, b) + 1)]
    code = {p: i for i, p in enumerate(pairs)}
    x = np.array([code[(int(k), int(j))] for k, j in zip(n_kept, b_kept, strict=True)])
    pmf = np.array([st.binom(n, rho).pmf(k) * st.hypergeom(n, b, k).pmf(j) for k, j in pairs])
    assert chisq_pvalue(x, np.arange(len(pairs)), pmf) > 1e-3


def test_reverse_step_moments(key):
    """From x_t with the true x0 predicted: E[x_s] = x0 + rho (x_t - x0)."""
    m = 4
    bridge = SkellamBridge(ConstantM(m), schedule_type="linear")
    x_t = np.tile(X1, (REPS, 1))
    x0 = np.tile(X0, (REPS, 1))
    x_s = jax.jit(bridge.sample_step)(key, 0.8, 0.2, x_t, x0)
    x_s = np.asarray(x_s).reshape(REPS, *X0.shape)
    rho = 0.25
    diff = (X1 - X0).astype(float)
    var = rho * (1 - rho) * (np.abs(diff) + 2 * round(m * 0.8))
    assert np.all(np.abs(x_s.mean(0) - (X0 + rho * diff)) < 5 * np.sqrt(var / REPS) + 1e-9)
    np.testing.assert_allclose(x_s.var(0), var, rtol=0.15)


def oracle_model(key, x_t, t, context):
    return context


def test_sample_shapes_scan_and_oracle(key):
    bridge = SkellamBridge(BesselM(3.0, 3.0), schedule_type="cosine")
    run = jax.jit(
        lambda k: bridge.sample(k, X1, oracle_model, 6, context=X0, return_trajectory=True)
    )
    out = run(key)
    x0, traj = out.samples, out.trajectory
    assert bool(out.all_finite) and bool(out.in_range) and int(out.first_nonfinite_step) == -1
    assert int(out.max_count) >= np.abs(X1).max()
    assert x0.dtype == jnp.int32 and x0.shape == X0.shape
    assert traj.dtype == jnp.int32 and traj.shape == (7, *X0.shape)
    np.testing.assert_array_equal(traj[0], X1)
    np.testing.assert_array_equal(x0, X0)  # a perfect x0 predictor lands exactly on x0
    np.testing.assert_array_equal(traj[-1], x0)
    jaxpr = jax.make_jaxpr(lambda k: bridge.sample(k, X1, oracle_model, 6, context=X0))(key)
    assert [e.primitive.name for e in jaxpr.jaxpr.eqns].count("scan") == 1


def test_guidance_and_delta(key):
    bridge = SkellamBridge(ConstantM(2), delta=True)
    zero_delta = lambda k, x_t, t, c: jnp.zeros(x_t.shape)  # noqa: E731  (predicts x0 = x_t)
    run = jax.jit(
        lambda k: bridge.sample(k, X1, zero_delta, 4, guidance_x0=X0, guidance_schedule=jnp.ones(5))
    )
    out = run(key)
    assert out.trajectory is None
    np.testing.assert_array_equal(out.samples, X0)


def test_vmap_over_keys_and_delta_target(key):
    bridge = SkellamBridge(ConstantM(2), homogeneous_time=True, delta=True)
    t, x_t, target = jax.jit(jax.vmap(lambda k: bridge(k, X0, X1)))(jax.random.split(key, 5))
    assert x_t.shape == (5, *X0.shape)
    np.testing.assert_array_equal(target, X0[None] - x_t)
    assert np.all(np.asarray(t)[:, 0] == np.asarray(t)[:, 1])  # one shared time per batch


def test_bad_inputs(key):
    bridge = SkellamBridge(ConstantM(1))
    with pytest.raises(TypeError, match="x0"):
        bridge(key, X0.astype(np.float32), X1)
    with pytest.raises(ValueError, match="x1"):
        bridge(key, X0, X1[:, :3])
    with pytest.raises(ValueError, match="x0"):
        bridge(key, X0[0], X1[0])
    with pytest.raises(ValueError, match="t must"):
        bridge(key, X0, X1, jnp.zeros((3, 1)))
    with pytest.raises(ValueError, match="t must lie in"):
        bridge(key, X0, X1, 1.5)
    with pytest.raises(TypeError, match="model"):
        bridge.sample(key, X1, None, 3)
    with pytest.raises(ValueError, match="lam_p"):
        BesselM(-1.0, 2.0)
    with pytest.raises(ValueError, match="lam_m"):
        PoissonM(1.0, -2.0)
    with pytest.raises(ValueError, match="m must"):
        ConstantM(-3)
    with pytest.raises(TypeError, match="slack_sampler"):
        SkellamBridge(3)
    with pytest.raises(ValueError, match="n_steps"):
        bridge.sample(key, X1, oracle_model, 0)
    with pytest.raises(ValueError, match="guidance_schedule"):
        bridge.sample(key, X1, oracle_model, 3, guidance_x0=X0)
    with pytest.raises(ValueError, match="guidance_schedule"):
        bridge.sample(key, X1, oracle_model, 3, guidance_x0=X0, guidance_schedule=jnp.ones(3))


def test_x64_mode_keeps_int32_and_float32_time(key, enable_x64):
    bridge = SkellamBridge(ConstantM(2), schedule_type="late_dense", concentration=3.0)
    t, x_t, target = bridge(key, X0.astype(np.int64), X1.astype(np.int64), 0.0)
    assert x_t.dtype == jnp.int32 and target.dtype == jnp.int32 and t.dtype == jnp.float32
    np.testing.assert_array_equal(x_t, X0)
