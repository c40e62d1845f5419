import jax
import numpy as np
import scipy.stats

from jaxdiff.metrics import energy_distance


def test_energy_distance_1d_matches_scipy():
    # scipy's energy_distance is sqrt(2E|X-Y| - E|X-X'| - E|Y-Y'|) in 1-D
    x = np.random.default_rng(0).normal(size=300)
    y = np.random.default_rng(1).normal(0.5, 1.3, size=200)
    ours = float(energy_distance(x[:, None], y[:, None]))
    np.testing.assert_allclose(np.sqrt(ours), scipy.stats.energy_distance(x, y), rtol=1e-4)


def test_energy_distance_zero_for_same_sample():
    x = jax.random.normal(jax.random.key(0), (100, 3))
    assert abs(float(energy_distance(x, x))) < 1e-4


# --- energy score and CRPS (Gneiting & Raftery 2007) ---------------------------------

import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

from jaxdiff.metrics import crps, energy_score  # noqa: E402


def gaussian_crps(mu, s, y):
    """Closed form CRPS(N(mu, s^2), y) (Gneiting & Raftery 2007, eq. 5 / sec. 4.2)."""
    z = (y - mu) / s
    return s * (
        z * (2 * scipy.stats.norm.cdf(z) - 1) + 2 * scipy.stats.norm.pdf(z) - 1 / np.sqrt(np.pi)
    )


def brute_energy_score(x, y, lam, fair):
    """Double loop over one ensemble x [m, d] and outcome y [d]."""
    m = x.shape[0]
    conf = np.mean([np.linalg.norm(x[j] - y) for j in range(m)])
    pairs = [np.linalg.norm(x[j] - x[k]) for j in range(m) for k in range(m) if j != k]
    inter = np.sum(pairs) / (m * (m - 1) if fair else m * m)
    return conf - lam / 2 * inter


@pytest.mark.parametrize("fair", [True, False])
def test_energy_score_matches_double_loop(fair):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3, 6, 5))  # batch [4, 3], m = 6, d = 5
    y = rng.normal(size=(4, 3, 5))
    ours = np.asarray(energy_score(x, y, lambda_energy=0.7, fair=fair))
    ref = np.array(
        [[brute_energy_score(x[a, b], y[a, b], 0.7, fair) for b in range(3)] for a in range(4)]
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    # y broadcast over a batch axis
    ours_b = np.asarray(energy_score(x, y[:1], fair=fair))
    ref_b = np.array(
        [[brute_energy_score(x[a, b], y[0, b], 1.0, fair) for b in range(3)] for a in range(4)]
    )
    np.testing.assert_allclose(ours_b, ref_b, rtol=1e-5, atol=1e-6)


def test_energy_score_degenerate_ensemble_is_zero_and_d1_is_crps():
    y = np.array([[1.5, -2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
    x = np.repeat(y[:, None], 5, axis=1)
    for fair in (True, False):
        np.testing.assert_array_equal(np.asarray(energy_score(x, y, fair=fair)), 0.0)
    rng = np.random.default_rng(1)
    s, yy = rng.normal(size=(7, 9)), rng.normal(size=7)
    for fair in (True, False):
        np.testing.assert_allclose(
            np.asarray(crps(s, yy, fair=fair)),
            np.asarray(energy_score(s[..., None], yy[:, None], fair=fair)),
            rtol=1e-6,
        )
        ref = [brute_energy_score(s[i, :, None], yy[i : i + 1], 1.0, fair) for i in range(7)]
        np.testing.assert_allclose(np.asarray(crps(s, yy, fair=fair)), ref, rtol=1e-5, atol=1e-6)


def test_fair_crps_is_unbiased_and_the_v_statistic_bias_is_known():
    """m = 4 ensembles of N(mu, s^2) at a few outcomes y: the fair CRPS averages to the
    closed form; the all-pairs version exceeds it by E|X - X'| / (2 m) = s / (m sqrt(pi))."""
    mu, s, m, n = 0.5, 1.7, 4, 40000
    ys = np.array([-3.0, 0.0, 0.5, 2.5])
    rng = np.random.default_rng(0)
    x = rng.normal(mu, s, size=(len(ys), n, m)).astype(np.float32)
    y = np.broadcast_to(ys[:, None], (len(ys), n)).astype(np.float32)
    fair = np.asarray(crps(x, y, fair=True), np.float64)
    vstat = np.asarray(crps(x, y, fair=False), np.float64)
    exact = gaussian_crps(mu, s, ys)
    se = fair.std(axis=1) / np.sqrt(n)
    assert np.all(np.abs(fair.mean(axis=1) - exact) < 4 * se), (fair.mean(1), exact, se)
    bias = s / (m * np.sqrt(np.pi))
    se_v = vstat.std(axis=1) / np.sqrt(n)
    assert np.all(np.abs(vstat.mean(axis=1) - exact - bias) < 4 * se_v), (vstat.mean(1), exact)
    assert np.all(bias > 8 * se_v)  # the bias is resolved, so the check has teeth
    # per ensemble: V - U = U-interaction / (2 m), U-interaction = 2 (E|X-y| - U)
    conf = np.abs(x - y[..., None]).mean(-1)
    inter_u = 2 * (conf - fair)
    np.testing.assert_allclose(vstat - fair, inter_u / (2 * m), rtol=1e-3, atol=1e-5)


def test_crps_large_ensemble_matches_closed_form():
    """A 2000-member ensemble at the normal quantiles (i + 1/2) / m is N(mu, s^2) up to
    O(1/m); a random one of 4000 members within a few standard errors (~0.01)."""
    mu, s, m = -1.0, 0.8, 2000
    ys = np.array([-1.0, 0.3, -2.9])
    exact = gaussian_crps(mu, s, ys)
    q = mu + s * scipy.stats.norm.ppf((np.arange(m) + 0.5) / m)
    np.testing.assert_allclose(np.asarray(crps(np.broadcast_to(q, (3, m)), ys)), exact, atol=2e-3)
    x = np.random.default_rng(5).normal(mu, s, size=4000)
    np.testing.assert_allclose(np.asarray(crps(x, ys[0])), exact[0], atol=0.04)


def test_energy_score_gradients_finite_at_coincident_samples():
    y = jnp.array([1.0, 2.0])
    x = jnp.array([[1.0, 2.0], [1.0, 2.0], [0.0, 3.0], [0.0, 3.0]])  # ties, and hits y
    for fair in (True, False):
        g = jax.grad(lambda a, f=fair: energy_score(a, y, fair=f))(x)
        assert np.all(np.isfinite(np.asarray(g)))
        # the coincident pairs contribute a zero subgradient: compare with the analytic
        # gradient over the non-coincident terms
        xn, yn = np.asarray(x, np.float64), np.asarray(y, np.float64)
        m = xn.shape[0]
        ref = np.zeros_like(xn)
        for j in range(m):
            r = xn[j] - yn
            if np.linalg.norm(r) > 0:
                ref[j] += r / np.linalg.norm(r) / m
            for k in range(m):
                r = xn[j] - xn[k]
                if np.linalg.norm(r) > 0:  # pair (j, k) and (k, j): 2 * unit / n_pairs
                    ref[j] -= 0.5 * 2 * r / np.linalg.norm(r) / (m * (m - 1) if fair else m * m)
        np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-5, atol=1e-6)
    gc = jax.grad(lambda a: crps(a, 0.0))(jnp.zeros(3))
    assert np.all(np.isfinite(np.asarray(gc)))


def test_energy_score_bad_inputs():
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="m >= 2"):
        energy_score(x[:, :1], x[:, 0])
    assert np.asarray(energy_score(x[:, :1], x[:, 0], fair=False)).shape == (2,)
    with pytest.raises(ValueError, match="y must have shape"):
        energy_score(x, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="does not broadcast"):
        energy_score(x, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="samples must have shape"):
        energy_score(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="lambda_energy"):
        energy_score(x, x[:, 0], lambda_energy=-1.0)
    with pytest.raises(ValueError, match="lambda_energy"):
        energy_score(x, x[:, 0], lambda_energy=float("nan"))
    with pytest.raises(TypeError, match="lambda_energy"):
        energy_score(x, x[:, 0], lambda_energy="0.5")  # a string is not taken as a number


def test_energy_score_is_jittable():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 4, 3)), rng.normal(size=(5, 3))
    f = jax.jit(lambda a, b, lam: energy_score(a, b, lambda_energy=lam))
    np.testing.assert_allclose(
        np.asarray(f(x, y, 0.5)), np.asarray(energy_score(x, y, lambda_energy=0.5)), rtol=1e-6
    )
