import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.data.gaussian_mixture import GaussianMixture


def test_single_component_posterior_mean_closed_form():
    mix = GaussianMixture(
        weights=jnp.ones(1), means=jnp.array([[0.7, -1.0]]), stds=jnp.array([0.5])
    )
    x = jax.random.normal(jax.random.key(0), (6, 2))
    alpha, sigma = jnp.full(6, 0.6), jnp.full(6, 0.8)
    want = mix.means + 0.6 * 0.25 / (0.36 * 0.25 + 0.64) * (x - 0.6 * mix.means)
    np.testing.assert_allclose(mix.posterior_mean(x, alpha, sigma), want, rtol=1e-5)


def test_posterior_mean_matches_monte_carlo():
    # self-normalised importance sampling: E[x0 | xt] = E_prior[x0 p(xt|x0)] / E_prior[p(xt|x0)]
    mix = GaussianMixture.ring(num_components=4, radius=2.0, std=0.4)
    alpha, sigma = 0.8, 0.6
    x0 = mix.sample(jax.random.key(1), 400_000)
    for point in (jnp.array([1.0, 0.5]), jnp.array([-0.3, 1.7])):
        logw = -0.5 * jnp.sum((point - alpha * x0) ** 2, 1) / sigma**2
        w = jax.nn.softmax(logw)
        mc = jnp.sum(w[:, None] * x0, 0)
        exact = mix.posterior_mean(point[None], jnp.array([alpha]), jnp.array([sigma]))[0]
        np.testing.assert_allclose(mc, exact, atol=0.01)


def test_sample_moments():
    mix = GaussianMixture.ring(num_components=8, radius=4.0, std=0.3)
    x = mix.sample(jax.random.key(0), 50_000)
    np.testing.assert_allclose(x.mean(0), 0.0, atol=0.05)
    np.testing.assert_allclose(jnp.mean(jnp.sum(x**2, 1)), 16 + 2 * 0.09, rtol=0.02)
