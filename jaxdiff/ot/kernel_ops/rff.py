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
  iterations of :func:`jaxdiff.ot.sinkhorn` on it stay well defined. Limits: the estimator's
  variance grows like ``exp(8 t <x, y>)`` (points are centred first to keep ``|x|``
  small); it is good when the clouds' radius is a few ``sqrt(epsilon)`` (gaussian) and
  in low dimension, and the laplacian mixture is heavy tailed (small ``g``), so it
  needs more features than the gaussian for the same error.
* ``"fourier"``: Rahimi & Recht 2007 ("Random Features for Large-Scale Kernel
  Machines"), ``phi(x) = sqrt(2 / r) cos(<w, x> + b)``, ``b ~ U[0, 2 pi)``, with ``w``
  from the kernel's spectral density: ``N(0, (2 / epsilon) I)`` (gaussian) or the
  multivariate Cauchy ``z / (epsilon |g|)``, ``z ~ N(0, I)``, ``g ~ N(0, 1)``
  (laplacian). Bounded variance, but entries of the approximation can be negative;
  Sinkhorn may then fail to converge
  (reported in ``OTResult.converged``).

Positive features cannot overflow: ``sqrt(2 t) <w, x> - 2 t |x|^2 <= |w|^2 / 4`` for every
``x`` and ``t``, so ``log_phi`` stays below ``|w|^2 / 4`` (about ``d / 4 + log r``).

The geometry is ott-jax's :class:`~ott.geometry.low_rank.LRKGeometry` (a kernel
``K = k1 k2^T`` of features, kernel products only) with our feature maps:
:class:`FeatureGeometry` adds the operator interface and is shared with the Nyström
operator, whose factors are not positive features but apply the same way.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from ott.geometry import low_rank

from jaxdiff.ot.kernel_ops.base import KernelOperator, point_pair
from jaxdiff.ot.kernel_ops.config import SOLVERS, KernelConfig
from jaxdiff.ot.memory import check_allocation

__all__ = ["FeatureGeometry", "feature_bytes", "make_rff", "random_features"]


@jax.tree_util.register_pytree_node_class
class FeatureGeometry(KernelOperator, low_rank.LRKGeometry):
    """Low-rank kernel ``K ~ F_x F_y^T`` from features (ott-jax's ``LRKGeometry``).

    Used by the ``"rff"`` and ``"nystrom"`` operators. The features already encode
    ``epsilon`` (kept as a leaf for the potentials ``f = epsilon log u``): changing it
    means building the operator again, which under ``jit`` does not recompile.

    Args:
        k1: ``[n, r]`` features of ``x``.
        k2: ``[m, r]`` features of ``y``.
        epsilon: scalar regularisation the features were drawn for.
        kernel_type: ``"gaussian"`` or ``"laplacian"`` (static).
        solver_type: ``"rff"`` or ``"nystrom"`` (static).
    """

    log_domain = False

    def __init__(self, k1, k2, epsilon, kernel_type: str, solver_type: str):
        super().__init__(k1, k2, epsilon=epsilon)
        self.kernel_type = kernel_type
        self.solver_type = solver_type

    def tree_flatten(self):  # noqa: D102
        return (self.k1, self.k2, self._epsilon_init), (self.kernel_type, self.solver_type)

    @classmethod
    def tree_unflatten(cls, aux_data, children):  # noqa: D102
        return cls(*children, *aux_data)


def _draw(key: jax.Array, config: KernelConfig, dim: int, dtype):
    """Frequencies ``[d, r]`` and, per feature, a coefficient (positive) or phase."""
    r, eps = config.num_features, jnp.asarray(config.epsilon, dtype)  # eps may be traced
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


def random_features(config: KernelConfig, params, x: jax.Array) -> jax.Array:
    """Features ``[n, r]`` of (centred) points ``x`` ``[n, d]``."""
    w, extra = params
    r = config.num_features
    if config.feature_map == "fourier":
        return jnp.sqrt(2.0 / r) * jnp.cos(x @ w + extra)
    t = extra
    log_phi = jnp.sqrt(2.0 * t) * (x @ w) - 2.0 * t * jnp.sum(x**2, 1, keepdims=True)
    log_phi = log_phi - 0.5 * jnp.log(jnp.asarray(r, x.dtype))
    return jnp.exp(log_phi)


def feature_bytes(n: int, m: int, r: int, d: int, itemsize: int) -> int:
    """Bytes of a ``[n, r]`` and a ``[m, r]`` feature matrix (plus their ``[d, r]`` draws)."""
    return 2 * (n + m + d) * r * itemsize


@SOLVERS.register("rff")
def make_rff(config: KernelConfig, x: jax.Array, y: jax.Array | None, key) -> FeatureGeometry:
    """Random-feature operator between ``x`` ``[n, d]`` and ``y`` ``[m, d]``.

    ``key`` draws the ``num_features`` frequencies; the same key gives the same operator.
    """
    x, y, y_given = point_pair(x, y)
    nbytes = feature_bytes(
        x.shape[0], y.shape[0], config.num_features, x.shape[1], x.dtype.itemsize
    )
    check_allocation(f"num_features={config.num_features}", nbytes, "use fewer features")
    return _build(y_given, config, key, x, y)


@functools.partial(jax.jit, static_argnums=0)
def _build(y_given: bool, config: KernelConfig, key, x, y) -> FeatureGeometry:
    centre = 0.5 * (jnp.mean(x, 0) + jnp.mean(y, 0))  # the kernel is translation invariant
    params = _draw(key, config, x.shape[1], x.dtype)
    fx = random_features(config, params, x - centre)
    fy = random_features(config, params, y - centre) if y_given else fx
    eps = jnp.asarray(config.epsilon, x.dtype)
    return FeatureGeometry(fx, fy, eps, config.kernel_type, "rff")
