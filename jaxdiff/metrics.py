"""Sample-quality metrics."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["energy_distance"]


def _mean_dist(a, b):
    sq = jnp.sum(a**2, -1)[:, None] + jnp.sum(b**2, -1)[None, :] - 2.0 * a @ b.T
    return jnp.mean(jnp.sqrt(jnp.maximum(sq, 0.0)))


def energy_distance(x, y):
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (Szekely & Rizzo 2013).

    ``x`` ``[n, d]`` and ``y`` ``[m, d]`` samples; returns a scalar (V-statistic, so the
    self terms include the zero diagonal). Zero iff the distributions agree. Memory is
    ``O(n m)``.
    """
    return 2.0 * _mean_dist(x, y) - _mean_dist(x, x) - _mean_dist(y, y)
