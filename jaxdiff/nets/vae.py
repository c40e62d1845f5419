"""Variational autoencoder of latent diffusion (NHWC), diffusers' ``AutoencoderKL``.

The encoder maps an image ``[b, H, W, c]`` to the mean and log-variance of a diagonal
Gaussian over latents ``[b, H / 2^(L-1), W / 2^(L-1), latent_channels]``; the decoder maps
a latent back to an image (Kingma & Welling 2014, "Auto-Encoding Variational Bayes";
the convolutional architecture is Rombach et al. 2022, "High-Resolution Image Synthesis
with Latent Diffusion Models", App. G, as implemented by diffusers).

- Encoder: ``conv_in``; per level ``layers_per_block`` time-free residual blocks and a
  stride-2 downsampler (``padding=0``: pad bottom/right) except at the last level; a middle
  block (residual, single-head self-attention, residual); ``GroupNorm -> SiLU ->
  conv_out`` to ``2 * latent_channels``; then the 1x1 ``quant_conv``.
- Decoder: 1x1 ``post_quant_conv``; ``conv_in``; middle block; levels in reverse with
  ``layers_per_block + 1`` residual blocks and a nearest-2x upsampler except at the
  last; ``GroupNorm -> SiLU -> conv_out``.

Every GroupNorm has epsilon ``1e-6``. Submodule names are diffusers' with ``.`` -> ``_``
(``encoder/down_blocks_0/resnets_1/conv1``), so :mod:`jaxdiff.interop.diffusers_vae`
maps weights one to one. ``scaling_factor`` / ``shift_factor`` are stored, not applied:
a latent-diffusion pipeline uses ``(z - shift) * scale`` for the diffusion model.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff._validation import check_choice, check_int_range
from jaxdiff.nets.attention import Attention
from jaxdiff.nets.config import _DTYPES
from jaxdiff.nets.resnet import Downsample2D, Upsample2D, _conv, group_norm

__all__ = ["AutoencoderKL", "Decoder", "Encoder", "VAEConfig", "sample_latent"]

_EPS = 1e-6  # every GroupNorm of diffusers' Encoder / Decoder
_LOGVAR_RANGE = (-30.0, 20.0)  # diffusers' DiagonalGaussianDistribution clamp


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Static (hashable) description of an :class:`AutoencoderKL`.

    Attributes:
        in_channels: image channels read by the encoder.
        out_channels: image channels written by the decoder.
        latent_channels: channels of the latent ``z``.
        block_out_channels: channels per resolution level (its length is the number
            of levels; the latent is ``2^(levels - 1)`` times smaller than the image).
        layers_per_block: residual blocks per encoder level (decoder: ``+1``).
        norm_num_groups: groups of every GroupNorm (divides every channel count).
        mid_attention: whether the middle blocks have self-attention.
        use_quant_conv: 1x1 convolution after the encoder.
        use_post_quant_conv: 1x1 convolution before the decoder.
        scaling_factor: latent scale used by diffusion pipelines (not applied here).
        shift_factor: latent shift used by diffusion pipelines (not applied here).
        dtype: compute dtype name; parameters and GroupNorm statistics stay float32.
    """

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    mid_attention: bool = True
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    scaling_factor: float = 0.18215
    shift_factor: float | None = None
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        for name in ("in_channels", "out_channels", "latent_channels", "layers_per_block"):
            check_int_range(name, getattr(self, name), 1)
        check_int_range("norm_num_groups", self.norm_num_groups, 1)
        check_choice("dtype", self.dtype, tuple(_DTYPES))
        if not self.block_out_channels:
            raise ValueError("block_out_channels=() must list at least one level")
        for level, ch in enumerate(self.block_out_channels):
            check_int_range(f"block_out_channels[{level}]", ch, 1)
            if ch % self.norm_num_groups:
                raise ValueError(
                    f"block_out_channels[{level}]={ch} is not divisible by "
                    f"norm_num_groups={self.norm_num_groups}"
                )

    @property
    def compute_dtype(self):
        """The ``jnp`` compute dtype named by ``dtype``."""
        return _DTYPES[self.dtype]

    @property
    def downsample_factor(self) -> int:
        """Image side / latent side: ``2^(levels - 1)``."""
        return 2 ** (len(self.block_out_channels) - 1)


class _ResnetBlock(nn.Module):
    """``x + conv2(SiLU(GN(conv1(SiLU(GN(x))))))``, a 1x1 shortcut if widths differ.

    diffusers' ``ResnetBlock2D`` with ``temb_channels=None`` (no time embedding; jaxdiff's
    :class:`~jaxdiff.nets.resnet.ResnetBlock2D` always has one).
    """

    out_channels: int
    groups: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[b, h, w, in]`` -> ``[b, h, w, out_channels]``."""
        x = x.astype(self.dtype)
        h = nn.silu(group_norm(x, groups=self.groups, eps=_EPS, name="norm1"))
        h = _conv(self.out_channels, 3, self.dtype, "conv1")(h)
        h = nn.silu(group_norm(h, groups=self.groups, eps=_EPS, name="norm2"))
        h = _conv(self.out_channels, 3, self.dtype, "conv2")(h)
        if x.shape[-1] != self.out_channels:
            x = _conv(self.out_channels, 1, self.dtype, "conv_shortcut", padding=0)(x)
        return x + h


class _Level(nn.Module):
    """``DownEncoderBlock2D`` / ``UpDecoderBlock2D``: residual blocks, then a resampler."""

    out_channels: int
    num_layers: int
    resample: str | None  # "down", "up" or None
    groups: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        for i in range(self.num_layers):
            h = _ResnetBlock(self.out_channels, self.groups, self.dtype, name=f"resnets_{i}")(h)
        if self.resample == "down":  # asymmetric padding, as diffusers' encoder
            down = Downsample2D(self.out_channels, 0, self.dtype, name="downsamplers_0")
            h = down(h)
        elif self.resample == "up":
            h = Upsample2D(self.out_channels, self.dtype, name="upsamplers_0")(h)
        return h


class _MidBlock(nn.Module):
    """``UNetMidBlock2D`` without time: residual, (single-head attention,) residual."""

    groups: int
    attention: bool
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        channels = h.shape[-1]
        h = _ResnetBlock(channels, self.groups, self.dtype, name="resnets_0")(h)
        if self.attention:
            h = Attention(
                heads=1,
                head_dim=channels,
                qkv_bias=True,
                norm_groups=self.groups,
                norm_eps=_EPS,
                residual=True,
                dtype=self.dtype,
                name="attentions_0",
            )(h)
        return _ResnetBlock(channels, self.groups, self.dtype, name="resnets_1")(h)


def _head(h: jax.Array, features: int, groups: int, dtype) -> jax.Array:
    """``conv_out(SiLU(conv_norm_out(h)))``; call inside a compact method."""
    h = nn.silu(group_norm(h, groups=groups, eps=_EPS, name="conv_norm_out"))
    return _conv(features, 3, dtype, "conv_out")(h)


class Encoder(nn.Module):
    """Image ``[b, H, W, in_channels]`` -> moments ``[b, H/f, W/f, 2 * latent_channels]``."""

    config: VAEConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Moments before ``quant_conv`` (mean and log-variance stacked on channels)."""
        cfg, dtype = self.config, self.config.compute_dtype
        channels = cfg.block_out_channels
        h = _conv(channels[0], 3, dtype, "conv_in")(x.astype(dtype))
        for i, ch in enumerate(channels):
            down = "down" if i < len(channels) - 1 else None
            level = _Level(
                ch, cfg.layers_per_block, down, cfg.norm_num_groups, dtype, name=f"down_blocks_{i}"
            )
            h = level(h)
        h = _MidBlock(cfg.norm_num_groups, cfg.mid_attention, dtype, name="mid_block")(h)
        return _head(h, 2 * cfg.latent_channels, cfg.norm_num_groups, dtype)


class Decoder(nn.Module):
    """Latent ``[b, h, w, latent_channels]`` -> image ``[b, h*f, w*f, out_channels]``."""

    config: VAEConfig

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """Images from latents after ``post_quant_conv``."""
        cfg, dtype = self.config, self.config.compute_dtype
        channels = cfg.block_out_channels[::-1]
        h = _conv(channels[0], 3, dtype, "conv_in")(z.astype(dtype))
        h = _MidBlock(cfg.norm_num_groups, cfg.mid_attention, dtype, name="mid_block")(h)
        for i, ch in enumerate(channels):
            up = "up" if i < len(channels) - 1 else None
            level = _Level(
                ch, cfg.layers_per_block + 1, up, cfg.norm_num_groups, dtype, name=f"up_blocks_{i}"
            )
            h = level(h)
        return _head(h, cfg.out_channels, cfg.norm_num_groups, dtype)


def sample_latent(key: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """Reparameterised draw ``mean + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``.

    Args:
        key: PRNG key.
        mean: posterior mean ``[b, h, w, latent_channels]`` (:meth:`AutoencoderKL.encode`).
        logvar: posterior log-variance, same shape.

    Returns:
        ``z`` with the shape of ``mean``; differentiable in ``mean`` and ``logvar``.
    """
    eps = jax.random.normal(key, mean.shape, jnp.float32).astype(mean.dtype)
    return mean + jnp.exp(0.5 * logvar) * eps


class AutoencoderKL(nn.Module):
    """KL-regularised autoencoder; weights map one to one onto diffusers' ``AutoencoderKL``.

    Use ``module.apply({"params": p}, x, method=module.encode)`` for ``(mean, logvar)``,
    ``method=module.decode`` for images, and ``module.apply({"params": p}, x)`` for a
    reconstruction (see :meth:`__call__`).

    Attributes:
        config: the :class:`VAEConfig`.
    """

    config: VAEConfig

    def setup(self):
        """Submodules ``encoder``, ``decoder``, ``quant_conv``, ``post_quant_conv``."""
        cfg = self.config
        dtype = cfg.compute_dtype
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if cfg.use_quant_conv:
            self.quant_conv = _conv(2 * cfg.latent_channels, 1, dtype, "quant_conv", padding=0)
        if cfg.use_post_quant_conv:
            self.post_quant_conv = _conv(
                cfg.latent_channels, 1, dtype, "post_quant_conv", padding=0
            )

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Posterior parameters of images ``x [b, H, W, in_channels]``.

        ``H`` and ``W`` must be divisible by ``config.downsample_factor``.

        Returns:
            ``(mean, logvar)``, each ``[b, H/f, W/f, latent_channels]``; ``logvar`` is
            clipped to ``[-30, 20]`` as diffusers' ``latent_dist.logvar``.
        """
        factor = self.config.downsample_factor
        if x.ndim != 4 or x.shape[-1] != self.config.in_channels:
            raise ValueError(
                f"x has shape {x.shape}; expected [batch, height, width, "
                f"{self.config.in_channels}] (NHWC)"
            )
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"x has spatial size {x.shape[1:3]}; height and width must be divisible by "
                f"{factor} (2^(len(block_out_channels) - 1))"
            )
        moments = self.encoder(x)
        if self.config.use_quant_conv:
            moments = self.quant_conv(moments)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, *_LOGVAR_RANGE)

    def decode(self, z: jax.Array) -> jax.Array:
        """Images ``[b, h*f, w*f, out_channels]`` from latents ``z [b, h, w, latent]``."""
        if z.ndim != 4 or z.shape[-1] != self.config.latent_channels:
            raise ValueError(
                f"z has shape {z.shape}; expected [batch, height, width, "
                f"{self.config.latent_channels}] (NHWC)"
            )
        if self.config.use_post_quant_conv:
            z = self.post_quant_conv(z.astype(self.config.compute_dtype))
        return self.decoder(z)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Reconstruct ``x``: encode, take a latent, decode (diffusers' ``forward``).

        Args:
            x: images ``[b, H, W, in_channels]``.
            key: PRNG key to sample the posterior (:func:`sample_latent`); ``None``
                decodes the posterior mean (diffusers' ``sample_posterior=False``),
                deterministically.

        Returns:
            ``[b, H, W, out_channels]``.
        """
        mean, logvar = self.encode(x)
        z = mean if key is None else sample_latent(key, mean, logvar)
        return self.decode(z)
