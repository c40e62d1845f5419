"""The diffusion UNet (NHWC), a Flax mirror of diffusers' UNets.

Without cross-attention it is diffusers' ``UNet2DModel``; with ``conditional=True``,
``UNet2DConditionModel``. Architecture: Ho et al. 2020 ("Denoising Diffusion
Probabilistic Models", App. B) with the latent-diffusion spatial transformers of
Rombach et al. 2022 (Sec. 3.3). Parameter names are diffusers' with ``.`` -> ``_``
(``down_blocks_0/resnets_1/conv1/kernel`` is ``down_blocks.0.resnets.1.conv1.weight``),
so :mod:`jaxdiff.interop.diffusers_unet` maps weights one to one.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.nets.config import HighResModelConfig
from jaxdiff.nets.embeddings import GaussianFourierProjection, TimestepMLP, sinusoidal_embedding
from jaxdiff.nets.resnet import group_norm
from jaxdiff.nets.unet_blocks import DownBlock, MidBlock, UpBlock

__all__ = ["UNet"]


def _conv3(features: int, dtype, name: str) -> nn.Conv:
    return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype, name=name)


class UNet(nn.Module):
    """Noise-prediction UNet.

    Call ``module.apply({"params": params}, x, timesteps, context=None,
    class_labels=None, deterministic=True)``; pass ``rngs={"dropout": key}`` and
    ``deterministic=False`` to train with dropout.

    Attributes:
        config: a :class:`~jaxdiff.nets.config.HighResModelConfig` (static).
    """

    config: HighResModelConfig

    def _check_inputs(self, x, timesteps, context, class_labels):
        cfg = self.config
        if x.ndim != 4 or x.shape[-1] != cfg.in_channels:
            raise ValueError(
                f"x must have shape [batch, height, width, {cfg.in_channels}] (NHWC), got {x.shape}"
            )
        factor = 2 ** (cfg.num_levels - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"x height and width {x.shape[1:3]} must be divisible by {factor} "
                f"(2 ** (len(channel_mult) - 1))"
            )
        if timesteps.ndim > 1 or (
            timesteps.ndim == 1 and timesteps.shape[0] not in (1, x.shape[0])
        ):
            raise ValueError(
                f"timesteps must be a scalar or have shape [batch]={x.shape[0]}, "
                f"got {timesteps.shape}"
            )
        if cfg.conditional:
            if context is None or context.ndim != 3 or context.shape[0] != x.shape[0]:
                shape = None if context is None else context.shape
                raise ValueError(
                    f"context must have shape [batch, tokens, {cfg.context_dim}] when "
                    f"conditional=True, got {shape}"
                )
            if context.shape[-1] != cfg.context_dim:
                raise ValueError(
                    f"context width {context.shape[-1]} != context_dim={cfg.context_dim}"
                )
        elif context is not None:
            raise ValueError("context given but conditional=False (no cross-attention)")
        if (class_labels is None) != (cfg.num_classes is None):
            raise ValueError(
                f"class_labels must be given iff num_classes is set (num_classes="
                f"{cfg.num_classes}, class_labels {'missing' if class_labels is None else 'given'})"
            )

    def _time_embedding(self, timesteps: jax.Array) -> jax.Array:
        cfg = self.config
        if cfg.time_embedding_type == "fourier":
            feats = GaussianFourierProjection(
                2 * cfg.base_channels, scale=16.0, log=True, name="time_proj"
            )(timesteps)
        else:
            feats = sinusoidal_embedding(
                timesteps,
                cfg.base_channels,
                flip_sin_to_cos=cfg.flip_sin_to_cos,
                downscale_freq_shift=cfg.freq_shift,
            )
        mlp = TimestepMLP(cfg.time_embed_dim, dtype=cfg.compute_dtype, name="time_embedding")
        return mlp(feats.astype(cfg.compute_dtype))

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        timesteps: jax.Array,
        context: jax.Array | None = None,
        class_labels: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        """Predict from a noisy image.

        Args:
            x: ``[batch, height, width, in_channels]`` noisy input (NHWC); height and
                width divisible by ``2 ** (levels - 1)``.
            timesteps: ``[batch]`` (or scalar) timesteps, int or float, as diffusers
                takes them (the training step index for discrete schedules).
            context: ``[batch, tokens, context_dim]`` cross-attention context; required
                iff ``config.conditional``.
            class_labels: ``[batch]`` int labels; required iff ``config.num_classes``.
            deterministic: disable dropout.

        Returns:
            ``[batch, height, width, out_channels]`` in the compute dtype.
        """
        cfg = self.config
        dtype = cfg.compute_dtype
        x = jnp.asarray(x)
        timesteps = jnp.asarray(timesteps)
        self._check_inputs(x, timesteps, context, class_labels)
        timesteps = jnp.broadcast_to(timesteps, (x.shape[0],))
        if cfg.center_input_sample:
            x = 2 * x - 1.0

        temb = self._time_embedding(timesteps)
        if cfg.num_classes is not None:
            embed = nn.Embed(cfg.num_classes, cfg.time_embed_dim, name="class_embedding")
            temb = temb + embed(jnp.asarray(class_labels)).astype(temb.dtype)

        h = _conv3(cfg.block_out_channels[0], dtype, "conv_in")(x.astype(dtype))
        skips = [h]
        for level in range(cfg.num_levels):
            block = DownBlock(cfg, level, name=f"down_blocks_{level}")
            h, block_skips = block(h, temb, context, deterministic)
            skips.extend(block_skips)
        if cfg.mid_block:
            h = MidBlock(cfg, name="mid_block")(h, temb, context, deterministic)
        n = cfg.num_res_blocks + 1
        for i, level in enumerate(reversed(range(cfg.num_levels))):
            block_skips, skips = skips[-n:], skips[:-n]
            h = UpBlock(cfg, level, name=f"up_blocks_{i}")(
                h, block_skips, temb, context, deterministic
            )

        h = group_norm(h, groups=cfg.norm_num_groups, eps=cfg.norm_eps, name="conv_norm_out")
        out = _conv3(cfg.out_channels, dtype, "conv_out")(nn.silu(h))
        if cfg.time_embedding_type == "fourier":
            out = out / timesteps.astype(out.dtype)[:, None, None, None]
        return out
