"""Time and noise-level embeddings (Flax linen).

- :func:`sinusoidal_embedding`: the transformer positional code used for diffusion
  timesteps (Vaswani et al. 2017; Ho et al. 2020, "Denoising Diffusion Probabilistic
  Models", App. B). Its options follow diffusers' ``get_timestep_embedding`` so imported
  diffusers weights see the same features.
- :class:`GaussianFourierProjection`: random Fourier features of ``log sigma`` or ``t``
  (Tancik et al. 2020; Song et al. 2021, "Score-Based Generative Modeling through SDEs",
  NCSN++), a fixed (non-trained) projection.
- :class:`TimestepMLP`: the two-layer MLP (linear, SiLU, linear) applied to either.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["GaussianFourierProjection", "TimestepMLP", "sinusoidal_embedding"]


def sinusoidal_embedding(
    timesteps: jax.Array,
    dim: int,
    *,
    flip_sin_to_cos: bool = False,
    downscale_freq_shift: float = 1.0,
    scale: float = 1.0,
    max_period: float = 10000.0,
) -> jax.Array:
    """Sinusoidal features of (possibly fractional) timesteps.

    Frequencies ``w_k = max_period ** (-k / (dim / 2 - downscale_freq_shift))`` for
    ``k < dim // 2``; features ``[sin(scale t w), cos(scale t w)]`` (``[cos, sin]`` when
    ``flip_sin_to_cos``), zero-padded to ``dim`` when it is odd.

    Args:
        timesteps: ``[batch]`` timesteps, int or float (diffusers' convention: the
            training timestep index, or continuous time / noise level).
        dim: output width, >= 2.
        flip_sin_to_cos: put the cosines first (diffusers' UNets use True).
        downscale_freq_shift: frequency spacing shift (diffusers' UNets use 0 or 1).
        scale: multiplies ``t`` before the sines.
        max_period: the slowest period.

    Returns:
        ``[batch, dim]`` float32 features.
    """
    timesteps = jnp.asarray(timesteps)
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must have shape [batch], got {timesteps.shape}")
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32)
    freqs = jnp.exp(exponent / (half - downscale_freq_shift))
    args = scale * timesteps.astype(jnp.float32)[:, None] * freqs[None, :]
    sin, cos = jnp.sin(args), jnp.cos(args)
    emb = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class GaussianFourierProjection(nn.Module):
    """``[sin(2 pi W t), cos(2 pi W t)]`` with fixed ``W ~ N(0, scale^2)`` (NCSN++).

    ``W`` lives in the ``"params"`` collection (so imported weights can set it) but is
    wrapped in ``stop_gradient``: it is never trained.

    Attributes:
        dim: output width (even).
        scale: standard deviation of the random frequencies.
        log: embed ``log t`` instead of ``t`` (NCSN++ embeds ``log sigma``).
        flip_sin_to_cos: put the cosines first.
    """

    dim: int = 256
    scale: float = 16.0
    log: bool = False
    flip_sin_to_cos: bool = False

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        """``[batch]`` -> ``[batch, dim]``."""
        if self.dim % 2:
            raise ValueError(f"dim must be even, got {self.dim}")
        w = self.param("weight", nn.initializers.normal(stddev=self.scale), (self.dim // 2,))
        t = jnp.asarray(t, jnp.float32)
        t = jnp.log(t) if self.log else t
        args = 2.0 * jnp.pi * t[:, None] * jax.lax.stop_gradient(w)[None, :]
        sin, cos = jnp.sin(args), jnp.cos(args)
        return jnp.concatenate([cos, sin] if self.flip_sin_to_cos else [sin, cos], axis=-1)


class TimestepMLP(nn.Module):
    """``linear(dim) -> SiLU -> linear(out_dim)`` on time features (diffusers' names).

    Attributes:
        dim: hidden width (``linear_1``).
        out_dim: output width (``linear_2``); defaults to ``dim``.
        dtype: compute dtype (parameters stay float32).
    """

    dim: int
    out_dim: int | None = None
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        """``[batch, k]`` -> ``[batch, out_dim]``."""
        h = nn.Dense(self.dim, dtype=self.dtype, name="linear_1")(features)
        h = nn.silu(h)
        return nn.Dense(self.out_dim or self.dim, dtype=self.dtype, name="linear_2")(h)
