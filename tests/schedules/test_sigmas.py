import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.schedules.sigmas import interp_timesteps, karras_sigmas, sigma_to_t


@pytest.mark.parametrize("n", [2, 7, 1000])
def test_interp_timesteps_matches_np_interp(n):
    rng = np.random.default_rng(n)
    values = np.sort(rng.random(n)).astype(np.float32)
    t = np.concatenate([rng.uniform(-2, n + 2, 50), np.arange(n), [n - 1.0, 0.0]])
    want = np.interp(t, np.arange(n), values)
    got = interp_timesteps(jnp.asarray(t, jnp.float32), jnp.asarray(values))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_sigma_to_t_inverts_training_sigmas():
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    train = np.sqrt((1 - ab) / ab).astype(np.float32)
    t = sigma_to_t(jnp.asarray(train), jnp.asarray(train))
    np.testing.assert_allclose(t, np.arange(1000), atol=2e-3)
    mid = np.sqrt(train[10] * train[11])  # geometric mean: halfway in log sigma
    np.testing.assert_allclose(sigma_to_t(jnp.asarray(mid), jnp.asarray(train)), 10.5, atol=1e-3)
    # clamped outside the training range
    assert float(sigma_to_t(jnp.asarray(1e-9), jnp.asarray(train))) == 0.0
    assert float(sigma_to_t(jnp.asarray(1e9), jnp.asarray(train))) == 999.0


def test_karras_sigmas_endpoints_and_monotone():
    s = np.asarray(karras_sigmas(0.03, 14.6, 25))
    np.testing.assert_allclose([s[0], s[-1]], [14.6, 0.03], rtol=1e-5)
    assert np.all(np.diff(s) < 0)
