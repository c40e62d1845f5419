"""Exact answers for Gaussian data ``x0 ~ N(mu, c^2 I)`` on a continuous VP/VE schedule.

``p_t = N(alpha mu, v_t I)``, ``v_t = alpha^2 c^2 + sigma^2``; the exact score is
``-(x - alpha mu) / v_t`` and the probability-flow map from ``t = 1`` to ``t`` is affine:
``x_t = alpha_t mu + sqrt(v_t / v_1) (x_1 - alpha_1 mu)``.
"""

import jax.numpy as jnp


def _col(value, x):
    return jnp.broadcast_to(value, x.shape[:1]).reshape((-1,) + (1,) * (x.ndim - 1))


def gaussian_eps_model(schedule, mu, c):
    """``model(x, t, context) -> eps`` exact for data ``N(mu, c^2 I)``."""

    def model(x, t, context=None):
        a, s = _col(schedule.alpha(t), x), _col(schedule.sigma(t), x)
        return s * (x - a * mu) / (a**2 * c**2 + s**2)

    return model


def pf_map(schedule, mu, c, x1, t):
    """The exact probability-flow image at time ``t`` of the state ``x1`` at ``t = 1``."""
    a1, s1 = schedule.alpha(1.0), schedule.sigma(1.0)
    a, s = schedule.alpha(t), schedule.sigma(t)
    v1, v = a1**2 * c**2 + s1**2, a**2 * c**2 + s**2
    return a * mu + jnp.sqrt(v / v1) * (x1 - a1 * mu)
