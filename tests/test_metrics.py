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
