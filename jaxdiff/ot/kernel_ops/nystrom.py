"""Nyström operator: a rank-``r`` landmark sketch ``K ~ K_xL K_LL^+ K_Ly``.

Williams & Seeger 2001 ("Using the Nyström Method to Speed Up Kernel Machines");
used for Sinkhorn by Altschuler et al. 2019 ("Massively scalable Sinkhorn distances
via the Nyström method"). ``r = min(rank, #candidates)`` landmarks ``L`` are drawn
uniformly without replacement (with ``key``) from the candidate points ``x`` (if
``y`` is None) or ``x`` and ``y`` stacked. The pseudo-inverse is regularised by
truncation: with ``K_LL = U diag(lam) U^T``, eigenvalues ``lam <= nystrom_rcond *
max(lam)`` are dropped, and the operator keeps the factors

    Phi_x = K_xL U_+ diag(lam_+)^{-1/2}   [n, r],   Phi_y = K_yL U_+ diag(lam_+)^{-1/2},

so ``K ~ Phi_x Phi_y^T`` is applied in ``O((n + m) r)``. With all points as landmarks
(and nothing truncated) the sketch is exact. Entries of the approximation can be
negative; Sinkhorn may then fail to converge (reported in ``OTResult.converged``).
The factors are our own code (ott-jax has no Nyström sketch); the geometry is the
low-rank kernel :class:`~jaxdiff.ot.kernel_ops.rff.FeatureGeometry` (ott-jax's
``LRKGeometry``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxdiff.ot.kernel_ops.base import gibbs, point_pair
from jaxdiff.ot.kernel_ops.config import SOLVERS, KernelConfig
from jaxdiff.ot.kernel_ops.rff import FeatureGeometry, feature_bytes
from jaxdiff.ot.memory import check_allocation

__all__ = ["make_nystrom", "nystrom_landmarks"]


def nystrom_landmarks(
    key: jax.Array, config: KernelConfig, x: jax.Array, y: jax.Array | None = None
) -> jax.Array:
    """``[min(rank, #candidates), d]`` landmarks drawn without replacement from x (∪ y)."""
    pool = x if y is None else jnp.concatenate([x, y], axis=0)
    rank = min(config.rank, pool.shape[0])
    index = jax.random.choice(key, pool.shape[0], (rank,), replace=False)
    return pool[index]


@SOLVERS.register("nystrom")
def make_nystrom(
    config: KernelConfig, x: jax.Array, y: jax.Array | None, key: jax.Array
) -> FeatureGeometry:
    """Nyström operator between ``x`` ``[n, d]`` and ``y`` ``[m, d]`` (``y=None``: ``x``)."""
    x, y, y_given = point_pair(x, y)
    n, m = x.shape[0], y.shape[0]
    rank = min(config.rank, n + m if y_given else n)
    nbytes = feature_bytes(n, m, rank, rank, x.dtype.itemsize)
    check_allocation(f"rank={config.rank}", nbytes, "use a smaller rank")
    return _build(y_given, config, key, x, y)


@functools.partial(jax.jit, static_argnums=0)
def _build(y_given: bool, config: KernelConfig, key, x, y) -> FeatureGeometry:
    eps = jnp.asarray(config.epsilon, x.dtype)
    landmarks = nystrom_landmarks(key, config, x, y if y_given else None)
    lam, vecs = jnp.linalg.eigh(gibbs(config.kernel_type, landmarks, landmarks, eps))
    keep = lam > config.nystrom_rcond * jnp.max(lam)
    inv_sqrt = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, lam, 1.0)), 0.0)
    project = vecs * inv_sqrt[None, :]  # [r, r]
    fx = gibbs(config.kernel_type, x, landmarks, eps) @ project
    fy = gibbs(config.kernel_type, y, landmarks, eps) @ project if y_given else fx
    return FeatureGeometry(fx, fy, eps, config.kernel_type, "nystrom")
