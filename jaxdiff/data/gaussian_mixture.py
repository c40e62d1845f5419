"""Isotropic Gaussian mixtures: data whose noisy posterior mean is known exactly.

For ``x0 ~ sum_k w_k N(m_k, s_k^2 I)`` and ``x_t = alpha x0 + sigma eps`` the noisy
marginal is ``sum_k w_k N(alpha m_k, (alpha^2 s_k^2 + sigma^2) I)``, and

    E[x0 | x_t] = sum_k r_k(x_t) (m_k + alpha s_k^2 / v_k (x_t - alpha m_k)),

with ``v_k = alpha^2 s_k^2 + sigma^2`` and responsibilities ``r_k`` (softmax of the
component log-likelihoods). This gives exact epsilon / x0 / v / score predictions, so
samplers can be checked without training a network.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxdiff.schedules.sigmas import interp_timesteps

__all__ = ["GaussianMixture"]


@struct.dataclass
class GaussianMixture:
    """Mixture of isotropic Gaussians in ``d`` dimensions.

    Attributes:
      weights: ``[K]`` mixture weights (sum to 1).
      means: ``[K, d]`` component means.
      stds: ``[K]`` component standard deviations.
    """

    weights: Any
    means: Any
    stds: Any

    @classmethod
    def ring(cls, num_components: int = 8, radius: float = 4.0, std: float = 0.3):
        """``num_components`` equal-weight 2-D components evenly spaced on a circle."""
        angles = jnp.arange(num_components) * (2 * jnp.pi / num_components)
        means = radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)
        return cls(
            weights=jnp.full((num_components,), 1.0 / num_components),
            means=means,
            stds=jnp.full((num_components,), std),
        )

    def sample(self, key, num: int):
        """``[num, d]`` exact samples."""
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.choice(k_comp, self.weights.shape[0], (num,), p=self.weights)
        noise = jax.random.normal(k_noise, (num, self.means.shape[1]))
        return self.means[comp] + self.stds[comp, None] * noise

    def posterior_mean(self, x, alpha, sigma):
        """``E[x0 | x_t = x]`` for ``x`` ``[B, d]`` and ``alpha``, ``sigma`` ``[B]``."""
        a, s = alpha[:, None, None], sigma[:, None, None]
        var = a**2 * self.stds[None, :, None] ** 2 + s**2  # [B, K, 1]
        diff = x[:, None, :] - a * self.means[None]  # [B, K, d]
        d = x.shape[-1]
        logp = (
            jnp.log(self.weights)[None]
            - 0.5 * jnp.sum(diff**2, -1) / var[..., 0]
            - 0.5 * d * jnp.log(var[..., 0])
        )
        resp = jax.nn.softmax(logp, axis=-1)[..., None]
        comp_mean = self.means[None] + a * self.stds[None, :, None] ** 2 / var * diff
        return jnp.sum(resp * comp_mean, axis=1)

    def epsilon_model(self, alphas_cumprod):
        """``model(x, t, context) -> eps`` exact for a discrete schedule.

        ``t`` (``[B]``, possibly fractional) maps to ``alpha_bar`` by linear interpolation
        of ``sqrt((1 - alpha_bar) / alpha_bar)`` between training timesteps (what the
        Euler-type samplers assume). ``context`` is ignored.
        """
        ab = jnp.asarray(alphas_cumprod, jnp.float32)
        ve_sigma = jnp.sqrt((1.0 - ab) / ab)

        def model(x, t, context=None):
            del context
            s = interp_timesteps(t, ve_sigma)
            alpha = 1.0 / jnp.sqrt(1.0 + s**2)
            sigma = s * alpha
            x0 = self.posterior_mean(x, alpha, sigma)
            return (x - alpha[:, None] * x0) / sigma[:, None]

        return model
