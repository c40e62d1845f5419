"""Problems with exact answers for the Schrödinger-bridge samplers' evaluation (issue 14, §4).

Every formula here is for the variance-preserving corruption ``x_t = alpha x_0 + sigma z``
(``z ~ N(0, I)``), written in ``(alpha, sigma)`` so that one function serves a continuous
schedule (``alpha(t)``, ``sigma(t)``) and a discrete one (``sqrt(alpha_bar_i)``,
``sqrt(1 - alpha_bar_i)``) alike. Shapes: ``x`` ``[B, d]``; ``alpha``, ``sigma`` scalars or
``[B]``; float32 unless the inputs are float64.

1. **Isotropic Gaussian data** ``x_0 ~ N(m, c^2 I)``: ``p_t = N(alpha m, v I)``,
   ``v = alpha^2 c^2 + sigma^2``, score ``-(x - alpha m) / v``; the probability-flow ODE
   (Song et al. 2021, eq. 13) keeps the standardised state ``(x - alpha m) / sqrt(v)``
   fixed, so its map from ``(alpha_1, sigma_1)`` to ``(alpha, sigma)`` is
   ``x = alpha m + sqrt(v / v_1) (x_1 - alpha_1 m)`` (fastsb-ot spec §8.1).
2. **Gaussian mixtures** ``sum_k w_k N(m_k, s_k^2 I)`` (:class:`jaxdiff.data.GaussianMixture`):
   ``p_t = sum_k w_k N(alpha m_k, v_k I)``, ``v_k = alpha^2 s_k^2 + sigma^2``; the score is
   ``sum_k r_k(x) (-(x - alpha m_k) / v_k)`` with responsibilities ``r = softmax_k(log w_k +
   log N(x; alpha m_k, v_k I))`` (a logsumexp normalisation).
3. **Entropic OT between Gaussians**: for ``min <P, |x - y|^2> + epsilon KL(P | a b^T)``
   between ``N(m_0, S_0)`` and ``N(m_1, S_1)`` the optimal coupling is Gaussian with
   cross-covariance ``C = E[(X - m_0)(Y - m_1)^T] = 1/2 S_0^{1/2} D S_0^{-1/2} - s/2 I``,
   ``D = (4 S_0^{1/2} S_1 S_0^{1/2} + s^2 I)^{1/2}``, ``s = epsilon / 2`` (Janati et al. 2020,
   "Entropic OT between unbalanced Gaussian measures has a closed form", NeurIPS, Thm. 1
   with their ``sigma^2 = epsilon / 2``; Mallasto et al. 2021, "Entropy-regularized
   2-Wasserstein distance between Gaussian measures", Inf. Geom.).
4. **Gaussian Schrödinger bridge** (Bunne et al. 2023, "The Schrödinger bridge between
   Gaussian measures has a closed form", AISTATS): with the reference ``dX = sigma dW`` on
   ``[0, 1]`` the static bridge is ``argmin KL(P | R_01)``, ``R_01(x, y) ∝ mu(x)
   exp(-|x - y|^2 / (2 sigma^2))``, i.e. ``argmin E_P|x - y|^2 / (2 sigma^2) + KL(P | mu
   x nu)``: the entropic plan of 3 with ``epsilon = 2 sigma^2``. DSBM's task (Shi et al. 2023,
   "Diffusion Schrödinger bridge matching", NeurIPS, §7.1) ``N(-0.1 1, I) -> N(0.1 1, I)``,
   ``sigma = 1``: ``epsilon = 2``, ``s = 1``, ``D = sqrt 5 I``, per-dimension
   ``C = (sqrt 5 - 1) / 2 ≈ 0.618``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._broadcast import broadcast_t
from jaxdiff.data.gaussian_mixture import GaussianMixture

__all__ = [
    "DSBM_SIGMA",
    "IsotropicGaussian",
    "Problem",
    "dsbm_bridge",
    "entropic_cross_covariance",
    "gaussian_coupling_sample",
    "gaussian_log_density",
    "gaussian_pf_map",
    "gaussian_problem",
    "gaussian_sample",
    "gaussian_score",
    "mixture_log_density",
    "mixture_score",
    "nearest_mode",
    "random_mixture_problem",
    "ring_problem",
    "without_mode",
]

#: DSBM's Gaussian task: the reference Brownian motion's diffusion coefficient.
DSBM_SIGMA = 1.0


@struct.dataclass
class IsotropicGaussian:
    """``N(mean, std^2 I)``: ``mean`` ``[d]``, ``std`` a scalar (both traced)."""

    mean: Any
    std: Any


def gaussian_sample(key, data: IsotropicGaussian, num: int):
    """``[num, d]`` exact samples of ``data``."""
    z = jax.random.normal(key, (num, data.mean.shape[0]), jnp.float32)
    return data.mean + data.std * z


def gaussian_log_density(data: IsotropicGaussian, x, alpha, sigma):
    """``log p_t(x)`` ``[B]`` of ``p_t = N(alpha m, v I)``, ``v = alpha^2 c^2 + sigma^2``."""
    a, s = broadcast_t(alpha, x), broadcast_t(sigma, x)
    v = a**2 * data.std**2 + s**2
    quad = jnp.sum((x - a * data.mean) ** 2 / v, axis=-1)
    return -0.5 * quad - 0.5 * jnp.sum(jnp.log(2 * jnp.pi * jnp.broadcast_to(v, x.shape)), -1)


def gaussian_score(data: IsotropicGaussian, x, alpha, sigma):
    """``grad log p_t(x) = -(x - alpha m) / v`` ``[B, d]`` (item 1 of the module)."""
    a, s = broadcast_t(alpha, x), broadcast_t(sigma, x)
    return -(x - a * data.mean) / (a**2 * data.std**2 + s**2)


def gaussian_pf_map(data: IsotropicGaussian, x1, alpha1, sigma1, alpha, sigma):
    """The exact probability-flow image ``[B, d]`` at ``(alpha, sigma)`` of ``x1``.

    ``x1`` is at ``(alpha1, sigma1)``.

    ``x = alpha m + sqrt(v / v_1) (x_1 - alpha_1 m)``; with ``alpha = 1, sigma = 0`` it is the
    data point the ODE assigns to the noise ``x1`` (spec fastsb-ot §8.1).
    """
    v1 = alpha1**2 * data.std**2 + sigma1**2
    v = alpha**2 * data.std**2 + sigma**2
    return alpha * data.mean + jnp.sqrt(v / v1) * (x1 - alpha1 * data.mean)


def _component_log_likelihoods(mix: GaussianMixture, x, alpha, sigma):
    """Per component ``k``: the log-likelihoods, the differences and the variances.

    ``log w_k + log N(x; alpha m_k, v_k I)`` ``[B, K]``, ``x - alpha m_k`` ``[B, K, d]`` and
    ``v_k`` ``[B, K, 1]``.
    """
    a = jnp.reshape(jnp.asarray(alpha), (-1, 1, 1))  # [B or 1, 1, 1]
    s = jnp.reshape(jnp.asarray(sigma), (-1, 1, 1))
    v = a**2 * mix.stds[None, :, None] ** 2 + s**2
    diff = x[:, None, :] - a * mix.means[None]
    d = x.shape[-1]
    logp = jnp.log(mix.weights)[None] - 0.5 * jnp.sum(diff**2, -1) / v[..., 0]
    return logp - 0.5 * d * jnp.log(2 * jnp.pi * v[..., 0]), diff, v


def mixture_log_density(mix: GaussianMixture, x, alpha, sigma):
    """``log p_t(x)`` ``[B]`` of the noised mixture (item 2), by logsumexp over components."""
    logp, _, _ = _component_log_likelihoods(mix, x, alpha, sigma)
    return jax.nn.logsumexp(logp, axis=-1)


def mixture_score(mix: GaussianMixture, x, alpha, sigma):
    """``grad log p_t(x) = sum_k r_k (-(x - alpha m_k) / v_k)`` ``[B, d]`` (item 2).

    A component of weight 0 has ``log w = -inf`` and responsibility exactly 0.
    """
    logp, diff, v = _component_log_likelihoods(mix, x, alpha, sigma)
    resp = jax.nn.softmax(logp, axis=-1)[..., None]
    return jnp.sum(resp * (-diff / v), axis=1)


def nearest_mode(x, means):
    """``[B]`` int32 index of the mean ``means`` ``[K, d]`` nearest to each row of ``x``."""
    sq = jnp.sum(means**2, -1)[None] - 2.0 * x @ means.T
    return jnp.argmin(sq, axis=-1).astype(jnp.int32)


def without_mode(mix: GaussianMixture, k: int) -> GaussianMixture:
    """The mixture with component ``k``'s weight set to 0 and the rest renormalised.

    Its score is the "biased score missing one mode" of the evaluation.
    """
    weights = mix.weights.at[k].set(0.0)
    return mix.replace(weights=weights / jnp.sum(weights))


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """One sampling problem: exact data, an exact and a biased score, the metrics' kind.

    Attributes:
      name: short label used in tables and ``results.json``.
      kind: ``"gaussian"`` (per-sample map error, W2, spread) or ``"mixture"``
        (energy distance, sliced W2, mode-weight error).
      dim: ``d``.
      exact: the data law (an :class:`IsotropicGaussian` or a ``GaussianMixture``, a pytree).
      biased: a wrong law of the same structure whose exact score is the biased score.
      bias: what is wrong with ``biased``, in words.
    """

    name: str
    kind: str
    dim: int
    exact: Any
    biased: Any
    bias: str

    def sample(self, key, num: int, params=None):
        """``[num, d]`` exact samples of ``params`` (default: the true law ``exact``)."""
        params = self.exact if params is None else params
        if self.kind == "gaussian":
            return gaussian_sample(key, params, num)
        return params.sample(key, num)

    @property
    def score_fn(self):
        """``score_fn(params, x, alpha, sigma)``: the exact score ``[B, d]`` of the law ``params``.

        Called with ``exact`` it is the exact score, with ``biased`` the biased one.
        """
        return gaussian_score if self.kind == "gaussian" else mixture_score


def gaussian_problem(dim: int = 16, mean: float = 0.5, std: float = 0.3) -> Problem:
    """``N(0.5 1, 0.3^2 I)`` in ``dim`` dims; biased: the score of ``N(0.4 1, 0.36^2 I)``."""
    exact = IsotropicGaussian(jnp.full((dim,), mean, jnp.float32), jnp.float32(std))
    biased = IsotropicGaussian(jnp.full((dim,), mean - 0.1, jnp.float32), jnp.float32(1.2 * std))
    return Problem(
        f"gaussian-{dim}d",
        "gaussian",
        dim,
        exact,
        biased,
        "mean -0.1, std x1.2 (score of N(0.4, 0.36^2))",
    )


def ring_problem() -> Problem:
    """The 8-mode 2-D ring (radius 4, std 0.3, equal weights); biased: mode 0 missing."""
    mix = GaussianMixture.ring(num_components=8, radius=4.0, std=0.3)
    return Problem(
        "ring-8-2d", "mixture", 2, mix, without_mode(mix, 0), "mode 0 (weight 1/8) missing"
    )


def random_mixture_problem(key, dim: int = 64, num_components: int = 8) -> Problem:
    """``K`` modes in ``dim`` dims: means ``1.5 N(0, I)``, std 1, weights ``∝ 1, ..., K``.

    Biased: the heaviest mode (weight ``2 / (K + 1)``) missing.
    """
    means = 1.5 * jax.random.normal(key, (num_components, dim), jnp.float32)
    weights = jnp.arange(1, num_components + 1, dtype=jnp.float32)
    mix = GaussianMixture(weights / jnp.sum(weights), means, jnp.ones((num_components,)))
    heavy = num_components - 1
    return Problem(
        f"mixture-{num_components}-{dim}d",
        "mixture",
        dim,
        mix,
        without_mode(mix, heavy),
        f"mode {heavy} (the heaviest, weight {2 / (num_components + 1):.3f}) missing",
    )


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (float64)."""
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def entropic_cross_covariance(cov0, cov1, epsilon: float) -> np.ndarray:
    """``C`` ``[d, d]`` (float64) of the entropic plan between ``N(., cov0)`` and ``N(., cov1)``.

    Item 3 of the module: cost ``|x - y|^2`` (not halved), regulariser ``epsilon KL(P | a b^T)``
    (``jaxdiff.ot.sinkhorn``'s and POT's convention). ``C -> `` the Brenier coupling's
    cross-covariance as ``epsilon -> 0``.
    """
    cov0, cov1 = np.asarray(cov0, np.float64), np.asarray(cov1, np.float64)
    s = epsilon / 2.0
    root0 = _psd_sqrt(cov0)
    eye = np.eye(cov0.shape[0])
    big_d = _psd_sqrt(4.0 * root0 @ cov1 @ root0 + s**2 * eye)
    return 0.5 * root0 @ big_d @ np.linalg.inv(root0) - 0.5 * s * eye


def gaussian_coupling_sample(key, mean0, cov0, mean1, cov1, cross, num: int):
    """``num`` exact pairs ``(x [num, d], y [num, d])`` of a Gaussian coupling.

    ``cross`` is its cross-covariance.

    The joint law is ``N([m_0, m_1], [[S_0, C], [C^T, S_1]])``; these pairs give the
    Monte-Carlo floor of a cross-covariance estimated from ``num`` points.
    """
    d = len(mean0)
    mean = np.concatenate([mean0, mean1])
    cov = np.block([[cov0, cross], [np.asarray(cross).T, cov1]])
    xy = jax.random.multivariate_normal(key, jnp.asarray(mean), jnp.asarray(cov), (num,))
    return xy[:, :d], xy[:, d:]


def dsbm_bridge(dim: int):
    """DSBM's Gaussian bridge task in ``dim`` dims (item 4).

    Returns ``(mean0, cov0, mean1, cov1, epsilon, cross)``: ``N(-0.1 1, I)``, ``N(0.1 1, I)``,
    ``epsilon = 2 sigma^2 = 2`` and the closed-form ``C = (sqrt 5 - 1) / 2 I`` (float64 numpy).
    """
    eye = np.eye(dim)
    epsilon = 2.0 * DSBM_SIGMA**2
    mean0, mean1 = np.full(dim, -0.1), np.full(dim, 0.1)
    return mean0, eye, mean1, eye, epsilon, entropic_cross_covariance(eye, eye, epsilon)
