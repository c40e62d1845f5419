"""The UNet's down, middle and up blocks (NHWC), structured as diffusers' blocks.

One class per role, the attention flavour chosen by the config: a level in
``config.attention_levels`` gets self-attention (``conditional=False``; diffusers'
``AttnDownBlock2D`` / ``AttnUpBlock2D`` / ``UNetMidBlock2D``) or a spatial transformer
with cross-attention (``conditional=True``; ``CrossAttnDownBlock2D`` /
``CrossAttnUpBlock2D`` / ``UNetMidBlock2DCrossAttn``); other levels are plain
``DownBlock2D`` / ``UpBlock2D``. Submodule names (``resnets_0``, ``attentions_0``,
``downsamplers_0``, ``upsamplers_0``) are diffusers' with ``.`` -> ``_``.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxdiff.nets.attention import Attention, Transformer2D
from jaxdiff.nets.config import HighResModelConfig
from jaxdiff.nets.resnet import Downsample2D, ResnetBlock2D, Upsample2D

__all__ = ["DownBlock", "MidBlock", "UpBlock"]


def _resnet(config: HighResModelConfig, out_channels: int, name: str, scale: float = 1.0):
    cls = ResnetBlock2D
    if config.use_checkpointing:
        cls = nn.remat(ResnetBlock2D, static_argnums=(3,))
    return cls(
        out_channels,
        groups=config.norm_num_groups,
        eps=config.norm_eps,
        dropout=config.dropout,
        time_embedding_norm=config.resnet_time_scale_shift,
        output_scale_factor=scale,
        dtype=config.compute_dtype,
        name=name,
    )


def _attention(config: HighResModelConfig, level: int, name: str, *, mid: bool = False):
    """Self-attention block or spatial transformer for ``level``; ``f(h, context, det)``."""
    channels = config.block_out_channels[level]
    heads = config.heads(level)
    lora = dict(lora_rank=config.lora_rank, lora_alpha=config.lora_alpha)
    if config.conditional:
        return Transformer2D(
            heads,
            channels // heads,
            depth=config.transformer_depth(level),
            norm_groups=config.norm_num_groups,
            dropout=0.0,  # diffusers' UNets build their transformers without dropout
            use_checkpointing=config.use_checkpointing,
            dtype=config.compute_dtype,
            name=name,
            **lora,
        )
    # diffusers' mid block drops the attention GroupNorm under "scale_shift"
    groups = config.norm_num_groups
    if mid and config.resnet_time_scale_shift != "default":
        groups = None
    cls = nn.remat(Attention) if config.use_checkpointing else Attention
    attn = cls(
        heads,
        channels // heads,
        qkv_bias=True,
        norm_groups=groups,
        norm_eps=config.norm_eps,
        residual=True,
        rescale_output_factor=config.mid_block_scale_factor if mid else 1.0,
        dtype=config.compute_dtype,
        name=name,
        **lora,
    )
    return lambda h, context, deterministic: attn(h)


class DownBlock(nn.Module):
    """Resolution ``level`` on the way down: residual blocks (+ attention), downsample.

    Attributes:
        config: the UNet's configuration.
        level: resolution level index.
    """

    config: HighResModelConfig
    level: int

    @nn.compact
    def __call__(self, h, temb, context=None, deterministic: bool = True):
        """``h [b, H, W, c]`` -> ``(h, skips)``; ``skips``: the outputs kept for the up path."""
        cfg = self.config
        channels = cfg.block_out_channels[self.level]
        with_attention = self.level in cfg.attention_levels
        skips = []
        for i in range(cfg.num_res_blocks):
            h = _resnet(cfg, channels, f"resnets_{i}")(h, temb, deterministic)
            if with_attention:
                h = _attention(cfg, self.level, f"attentions_{i}")(h, context, deterministic)
            skips.append(h)
        if self.level < cfg.num_levels - 1:
            h = Downsample2D(
                channels,
                padding=cfg.downsample_padding,
                dtype=cfg.compute_dtype,
                name="downsamplers_0",
            )(h)
            skips.append(h)
        return h, skips


class MidBlock(nn.Module):
    """Middle block: residual block, (attention, residual block).

    Attributes:
        config: the UNet's configuration.
    """

    config: HighResModelConfig

    @nn.compact
    def __call__(self, h, temb, context=None, deterministic: bool = True) -> jax.Array:
        """``[b, H, W, c]`` -> ``[b, H, W, c]`` at the lowest resolution."""
        cfg = self.config
        channels = cfg.block_out_channels[-1]
        scale = cfg.mid_block_scale_factor
        h = _resnet(cfg, channels, "resnets_0", scale)(h, temb, deterministic)
        if cfg.mid_attention or cfg.conditional:
            attn = _attention(cfg, cfg.num_levels - 1, "attentions_0", mid=True)
            h = attn(h, context, deterministic)
        return _resnet(cfg, channels, "resnets_1", scale)(h, temb, deterministic)


class UpBlock(nn.Module):
    """Resolution ``level`` on the way up: residual blocks on ``[h, skip]`` (+ attention).

    Attributes:
        config: the UNet's configuration.
        level: resolution level index (the up path visits levels in reverse).
    """

    config: HighResModelConfig
    level: int

    @nn.compact
    def __call__(self, h, skips, temb, context=None, deterministic: bool = True):
        """Consume ``num_res_blocks + 1`` skips (last first); upsample unless level 0."""
        cfg = self.config
        channels = cfg.block_out_channels[self.level]
        with_attention = self.level in cfg.attention_levels
        skips = list(skips)
        for i in range(cfg.num_res_blocks + 1):
            skip = skips.pop()
            h = jax.numpy.concatenate([h, skip.astype(h.dtype)], axis=-1)
            h = _resnet(cfg, channels, f"resnets_{i}")(h, temb, deterministic)
            if with_attention:
                h = _attention(cfg, self.level, f"attentions_{i}")(h, context, deterministic)
        if self.level > 0:
            h = Upsample2D(channels, dtype=cfg.compute_dtype, name="upsamplers_0")(h)
        return h
