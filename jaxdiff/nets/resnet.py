"""Residual blocks and resamplers of the diffusion UNet (NHWC), named as in diffusers.

- :class:`ResnetBlock2D`: ``GroupNorm -> SiLU -> conv -> (+ time) -> GroupNorm -> SiLU
  -> dropout -> conv`` plus a (1x1 conv) shortcut (Ho et al. 2020, "Denoising Diffusion
  Probabilistic Models", App. B; the FiLM variant ``scale_shift`` follows Dhariwal &
  Nichol 2021, "Diffusion Models Beat GANs", Sec. 3).
- :class:`Downsample2D`: a stride-2 3x3 convolution.
- :class:`Upsample2D`: nearest-neighbour 2x upsampling, then a 3x3 convolution.
- :func:`group_norm`: GroupNorm whose statistics are computed in float32 whatever the
  compute dtype.

Parameter names (``norm1``, ``conv1``, ``time_emb_proj``, ``conv_shortcut``, ``conv``)
mirror diffusers' ``ResnetBlock2D`` / ``Downsample2D`` / ``Upsample2D`` so weights map
one to one (see :mod:`jaxdiff.interop.diffusers_unet`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["Downsample2D", "ResnetBlock2D", "Upsample2D", "group_norm"]


def group_norm(x: jax.Array, *, groups: int, eps: float, name: str) -> jax.Array:
    """GroupNorm over ``[batch, ..., channels]`` in float32, cast back to ``x.dtype``.

    Must be called inside a compact method: it creates the submodule ``name`` (params
    ``scale`` and ``bias``, float32).
    """
    norm = nn.GroupNorm(
        num_groups=groups, epsilon=eps, dtype=jnp.float32, use_fast_variance=False, name=name
    )
    return norm(x.astype(jnp.float32)).astype(x.dtype)


def _conv(features: int, kernel: int, dtype, name: str, stride: int = 1, padding: int = 1):
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        dtype=dtype,
        name=name,
    )


class ResnetBlock2D(nn.Module):
    """Pre-activation residual block conditioned on the time embedding.

    Attributes:
        out_channels: output channels.
        groups: GroupNorm groups (``norm1`` and ``norm2``).
        eps: GroupNorm epsilon.
        dropout: dropout rate before ``conv2``.
        time_embedding_norm: ``"default"`` (add ``time_emb_proj(silu(temb))`` after
            ``conv1``) or ``"scale_shift"`` (``norm2(h) * (1 + scale) + shift``).
        output_scale_factor: the sum ``shortcut + h`` is divided by it.
        dtype: compute dtype.
    """

    out_channels: int
    groups: int = 32
    eps: float = 1e-6
    dropout: float = 0.0
    time_embedding_norm: str = "default"
    output_scale_factor: float = 1.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array, deterministic: bool = True) -> jax.Array:
        """``x [batch, height, width, in]``, ``temb [batch, time_dim]`` -> ``[b, h, w, out]``."""
        x = x.astype(self.dtype)
        h = nn.silu(group_norm(x, groups=self.groups, eps=self.eps, name="norm1"))
        h = _conv(self.out_channels, 3, self.dtype, "conv1")(h)
        width = 2 * self.out_channels if self.time_embedding_norm == "scale_shift" else None
        t = nn.Dense(width or self.out_channels, dtype=self.dtype, name="time_emb_proj")(
            nn.silu(temb.astype(self.dtype))
        )[:, None, None, :]
        if self.time_embedding_norm == "scale_shift":
            scale, shift = jnp.split(t, 2, axis=-1)
            h = group_norm(h, groups=self.groups, eps=self.eps, name="norm2")
            h = h * (1 + scale) + shift
        else:
            h = group_norm(h + t, groups=self.groups, eps=self.eps, name="norm2")
        h = nn.silu(h)
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        h = _conv(self.out_channels, 3, self.dtype, "conv2")(h)
        if x.shape[-1] != self.out_channels:
            x = _conv(self.out_channels, 1, self.dtype, "conv_shortcut", padding=0)(x)
        return (x + h) / self.output_scale_factor


class Downsample2D(nn.Module):
    """Stride-2 3x3 convolution (``padding=0`` pads bottom/right by one, as diffusers).

    Attributes:
        out_channels: output channels.
        padding: 1 (symmetric) or 0 (asymmetric ``(0, 1)`` padding).
        dtype: compute dtype.
    """

    out_channels: int
    padding: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[b, h, w, c]`` -> ``[b, h // 2, w // 2, out_channels]``."""
        if self.padding == 0:
            x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        conv = _conv(self.out_channels, 3, self.dtype, "conv", stride=2, padding=self.padding)
        return conv(x)


class Upsample2D(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution.

    Attributes:
        out_channels: output channels.
        dtype: compute dtype.
    """

    out_channels: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[b, h, w, c]`` -> ``[b, 2 h, 2 w, out_channels]``."""
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return _conv(self.out_channels, 3, self.dtype, "conv")(x)
