"""Random-feature operator: ``K ~ Phi_x Phi_y^T`` applied in ``O((n + m) r)``.

Two feature maps (``KernelConfig.feature_map``), ``r = num_features``:

* ``"positive"`` (default). For the gaussian kernel the positive random features of
  Choromanski et al. 2021 ("Rethinking Attention with Performers", Lemma 1; used for
  Sinkhorn by Scetbon & Cuturi 2020, "Linear Time Sinkhorn Divergences using Positive
  Features"): with ``w ~ N(0, I_d)`` and a coefficient ``t``,

      exp(-t |x - y|^2) = E_w[phi_w(x) phi_w(y)],
      phi_w(x) = exp(sqrt(2 t) <w, x> - 2 t |x|^2),

  and ``t = 1 / epsilon``. The laplacian kernel is a Gaussian scale mixture
  (subordination by a 1/2-stable law): with ``g ~ N(0, 1)``,
  ``exp(-|d| / epsilon) = E_g[exp(-t_g |d|^2)]``, ``t_g = 1 / (2 epsilon^2 g^2)``, so each
  feature draws its own ``t``. Every entry of the approximation is > 0, so the scaling
  iterations of :func:`sinkhorn_scaling` stay well defined. Limits: the estimator's
  variance grows like ``exp(8 t <x, y>)`` (points are centred first to keep ``|x|``
  small); it is good when the clouds' radius is a few ``sqrt(epsilon)`` (gaussian) and
  in low dimension, and the laplacian mixture is heavy tailed (small ``g``), so it
  needs more features than the gaussian for the same error.
* ``"fourier"``: Rahimi & Recht 2007 ("Random Features for Large-Scale Kernel
  Machines"), ``phi(x) = sqrt(2 / r) cos(<w, x> + b)``, ``b ~ U[0, 2 pi)``, with ``w``
  from the kernel's spectral density: ``N(0, (2 / epsilon) I)`` (gaussian) or the
  multivariate Cauchy ``z / (epsilon |g|)``, ``z ~ N(0, I)``, ``g ~ N(0, 1)``
  (laplacian). Bounded variance, but entries of the approximation can be negative;
  :func:`sinkhorn_scaling` then relies on its positive floor.

Positive features are stored as ``exp(log_phi - s)`` with a per-point log scale ``s``
(the row maximum), so no feature overflows; the scales are re-applied in ``apply``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from jaxdiff.ot.kernel_ops.base import as_matrix, point_pair
from jaxdiff.ot.kernel_ops.config import KernelConfig

__all__ = ["FeatureKernel", "make_rff", "random_features"]


@struct.dataclass
class FeatureKernel:
    """Low-rank kernel ``K ~ diag(e^sx) F_x F_y^T diag(e^sy)`` from features.

    Used by the ``"rff"`` and ``"nystrom"`` operators.

    Attributes:
        features_x: ``[n, r]`` features of ``x`` (divided by ``exp(log_scale_x)``).
        features_y: ``[m, r]`` features of ``y``.
        log_scale_x: ``[n]`` log of the per-point feature scale (0 if unscaled).
        log_scale_y: ``[m]`` likewise.
        config: static :class:`KernelConfig`.
    """

    features_x: jax.Array
    features_y: jax.Array
    log_scale_x: jax.Array
    log_scale_y: jax.Array
    config: KernelConfig = struct.field(pytree_node=False)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, m)``."""
        return (self.features_x.shape[0], self.features_y.shape[0])

    @staticmethod
    def _product(f_out, s_out, f_in, s_in, w):
        shift = jax.lax.stop_gradient(jnp.max(s_in))  # exp(s_in - shift) <= 1
        inner = f_in.T @ (jnp.exp(s_in - shift)[:, None] * w)  # [r, k]
        return jnp.exp(s_out + shift)[:, None] * (f_out @ inner)

    def apply(self, v: jax.Array) -> jax.Array:
        """``K v``: ``[m]`` or ``[m, k]`` -> ``[n]`` or ``[n, k]``; ``O((n + m) r k)``."""
        fx, fy, sx, sy = self.features_x, self.features_y, self.log_scale_x, self.log_scale_y
        return as_matrix(
            "v", v, self.shape[1], lambda w: self._product(fx, sx, fy, sy, w), fx.dtype
        )

    def apply_transpose(self, u: jax.Array) -> jax.Array:
        """``K^T u``: ``[n]`` or ``[n, k]`` -> ``[m]`` or ``[m, k]``."""
        fx, fy, sx, sy = self.features_x, self.features_y, self.log_scale_x, self.log_scale_y
        return as_matrix(
            "u", u, self.shape[0], lambda w: self._product(fy, sy, fx, sx, w), fx.dtype
        )


def _draw(key: jax.Array, config: KernelConfig, dim: int, dtype):
    """Frequencies ``[d, r]`` and, per feature, a coefficient (positive) or phase."""
    r, eps = config.num_features, jnp.asarray(config.epsilon, dtype)
    k_w, k_extra = jax.random.split(key)
    w = jax.random.normal(k_w, (dim, r), dtype)
    if config.feature_map == "positive":
        if config.kernel_type == "gaussian":
            return w, jnp.full((r,), 1.0 / eps, dtype)
        g = jax.random.normal(k_extra, (r,), dtype)
        return w, 1.0 / (2.0 * eps**2 * jnp.maximum(g**2, jnp.finfo(dtype).tiny))
    phase = jax.random.uniform(k_extra, (r,), dtype, 0.0, 2.0 * jnp.pi)
    if config.kernel_type == "gaussian":
        return w * jnp.sqrt(2.0 / eps), phase
    k_g = jax.random.fold_in(k_extra, 1)
    g = jnp.abs(jax.random.normal(k_g, (r,), dtype))
    return w / (eps * jnp.maximum(g, jnp.finfo(dtype).tiny)), phase


def random_features(config: KernelConfig, params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Features ``[n, r]`` and log scales ``[n]`` of (centred) points ``x`` ``[n, d]``."""
    w, extra = params
    r = config.num_features
    if config.feature_map == "fourier":
        feats = jnp.sqrt(2.0 / r) * jnp.cos(x @ w + extra)
        return feats, jnp.zeros(x.shape[:1], x.dtype)
    t = extra
    log_phi = jnp.sqrt(2.0 * t) * (x @ w) - 2.0 * t * jnp.sum(x**2, 1, keepdims=True)
    log_phi = log_phi - 0.5 * jnp.log(jnp.asarray(r, x.dtype))
    scale = jax.lax.stop_gradient(jnp.max(log_phi, axis=1))
    return jnp.exp(log_phi - scale[:, None]), scale


def make_rff(
    config: KernelConfig, x: jax.Array, y: jax.Array | None = None, *, key: jax.Array
) -> FeatureKernel:
    """Random-feature operator between ``x`` ``[n, d]`` and ``y`` ``[m, d]``.

    ``key`` draws the ``num_features`` frequencies; the same key gives the same operator.
    """
    x, y, y_given = point_pair(x, y)
    return _build(config, y_given, key, x, y)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _build(config: KernelConfig, y_given: bool, key, x, y) -> FeatureKernel:
    centre = 0.5 * (jnp.mean(x, 0) + jnp.mean(y, 0))  # the kernel is translation invariant
    params = _draw(key, config, x.shape[1], x.dtype)
    fx, sx = random_features(config, params, x - centre)
    fy, sy = random_features(config, params, y - centre) if y_given else (fx, sx)
    return FeatureKernel(fx, fy, sx, sy, config=config)
