"""IsoNext: an isotropic ConvNeXt velocity network with AdaGN conditioning (NHWC).

The network of the OT-CFM style-transfer system (``model.py``: ``IsoNext``, ``AdaGN``,
``TimestepEmb``). It follows the isotropic ConvNeXt of Liu et al. 2022, "A ConvNet for
the 2020s" (Sec. 3 and App. "isotropic ConvNeXt"): one resolution throughout, blocks of
``7x7 depthwise conv -> norm -> 1x1 expand (x4) -> GELU -> 1x1 project -> layer scale
-> residual``. Two changes make it a conditional flow-matching network:

- the block norm is :class:`AdaGN`, a GroupNorm whose output is modulated by an affine
  map of the conditioning vector (time embedding, plus style embedding when given) --
  FiLM (Perez et al. 2018) as used by the ADM UNet's "AdaGN" (Dhariwal & Nichol 2021,
  Sec. 3) and DiT's adaLN (Peebles & Xie 2023);
- there is no patchify stem: a 3x3 input projection keeps the full latent resolution,
  so any height and width work.

``IsoNext.apply({"params": p}, x, t, style=None)`` maps ``x [batch, H, W, in_channels]``,
continuous time ``t [batch]`` in ``[0, 1]`` (and a style vector) to a velocity
``[batch, H, W, out_channels]``.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff._validation import check_choice, check_int_range
from jaxdiff.nets.config import _DTYPES
from jaxdiff.nets.embeddings import TimestepMLP, sinusoidal_embedding
from jaxdiff.nets.resnet import group_norm

__all__ = ["AdaGN", "IsoNext", "IsoNextBlock", "IsoNextConfig", "StyleVelocity"]

_PADDING = {"zeros": "SAME", "circular": "CIRCULAR"}


@dataclasses.dataclass(frozen=True)
class IsoNextConfig:
    """Static (hashable) description of an :class:`IsoNext`.

    Field names follow the seed's ``config.json`` (``hidden_dim``, ``num_layers``).

    Attributes:
        in_channels: channels of ``x`` (4 for Stable-Diffusion VAE latents).
        out_channels: channels of the predicted velocity.
        hidden_dim: width ``D`` of every block (the seed uses 384 or 512).
        num_layers: number of isotropic blocks (12-18 in the seed).
        kernel_size: side of the depthwise convolution (odd; ConvNeXt's 7).
        expansion: width multiplier of the inverted bottleneck (ConvNeXt's 4).
        groups: GroupNorm groups of AdaGN and the output norm; divides ``hidden_dim``.
        norm_eps: GroupNorm epsilon (ConvNeXt's 1e-6).
        time_embed_dim: width of the conditioning vector; ``None`` = ``hidden_dim``.
        time_scale: ``t`` in ``[0, 1]`` is multiplied by it before the sinusoidal
            features, so the features span the range they were designed for (DDPM's
            0..1000 timesteps).
        style_dim: width of the style vector; ``None`` = unconditional (no style input).
        layer_scale_init: initial value of the per-channel layer-scale ``gamma``
            (ConvNeXt's 1e-6; 0.0 makes every fresh block the identity); ``None`` = off.
        padding: ``"zeros"`` or ``"circular"`` padding of every convolution. With
            ``"circular"`` the network is exactly equivariant to circular shifts.
        use_checkpointing: rematerialise each block in the backward pass (``nn.remat``).
        dtype: compute dtype name (``"float32"``, ``"bfloat16"``, ``"float16"``);
            parameters and GroupNorm statistics stay float32.
    """

    in_channels: int = 4
    out_channels: int = 4
    hidden_dim: int = 384
    num_layers: int = 12
    kernel_size: int = 7
    expansion: int = 4
    groups: int = 32
    norm_eps: float = 1e-6
    time_embed_dim: int | None = None
    time_scale: float = 1000.0
    style_dim: int | None = None
    layer_scale_init: float | None = 1e-6
    padding: str = "zeros"
    use_checkpointing: bool = False
    dtype: str = "float32"

    def __post_init__(self):
        check_int_range("in_channels", self.in_channels, 1)
        check_int_range("out_channels", self.out_channels, 1)
        check_int_range("hidden_dim", self.hidden_dim, 1)
        check_int_range("num_layers", self.num_layers, 1)
        check_int_range("kernel_size", self.kernel_size, 1)
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size={self.kernel_size} must be odd (same-size output, centred taps)"
            )
        check_int_range("expansion", self.expansion, 1)
        check_int_range("groups", self.groups, 1)
        if self.hidden_dim % self.groups:
            raise ValueError(
                f"hidden_dim={self.hidden_dim} is not divisible by groups={self.groups}; "
                "choose groups dividing hidden_dim"
            )
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps={self.norm_eps} must be > 0")
        if self.time_embed_dim is not None:
            check_int_range("time_embed_dim", self.time_embed_dim, 1)
        if not self.time_scale > 0:
            raise ValueError(f"time_scale={self.time_scale} must be > 0")
        if self.style_dim is not None:
            check_int_range("style_dim", self.style_dim, 1)
        if self.layer_scale_init is not None and not self.layer_scale_init >= 0:
            raise ValueError(
                f"layer_scale_init={self.layer_scale_init} must be >= 0, or None to disable"
            )
        check_choice("padding", self.padding, tuple(_PADDING))
        check_choice("dtype", self.dtype, tuple(_DTYPES))

    @property
    def cond_dim(self) -> int:
        """Width of the conditioning vector (time embedding + style embedding)."""
        return self.time_embed_dim or self.hidden_dim

    @property
    def compute_dtype(self):
        """The ``jnp`` compute dtype named by ``dtype``."""
        return _DTYPES[check_choice("dtype", self.dtype, tuple(_DTYPES))]


class AdaGN(nn.Module):
    """Adaptive GroupNorm: ``GN(x) * (1 + scale(c)) + shift(c)``.

    ``[scale, shift] = Dense(2 C)(SiLU(c))`` with a zero-initialised kernel and bias, so a
    fresh AdaGN is exactly the plain (affine) GroupNorm ``norm``; training moves the
    modulation away from the identity. Statistics are computed in float32.

    Attributes:
        groups: GroupNorm groups (divides the channels).
        eps: GroupNorm epsilon.
        dtype: compute dtype.
    """

    groups: int
    eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
        """``x [batch, H, W, C]``, ``cond [batch, cond_dim]`` -> ``[batch, H, W, C]``."""
        h = group_norm(x.astype(self.dtype), groups=self.groups, eps=self.eps, name="norm")
        mod = nn.Dense(
            2 * x.shape[-1],
            dtype=self.dtype,
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.zeros,
            name="modulation",
        )(nn.silu(cond.astype(self.dtype)))
        scale, shift = jnp.split(mod[:, None, None, :], 2, axis=-1)
        return h * (1 + scale) + shift


class IsoNextBlock(nn.Module):
    """One isotropic ConvNeXt block with AdaGN; shape-preserving.

    ``x + gamma * pw_project(GELU(pw_expand(AdaGN(dwconv(x), cond))))``.
    """

    config: IsoNextConfig

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
        """``x [batch, H, W, hidden_dim]``, ``cond [batch, cond_dim]`` -> same shape as x."""
        cfg = self.config
        dtype, width, k = cfg.compute_dtype, cfg.hidden_dim, cfg.kernel_size
        h = nn.Conv(
            width,
            (k, k),
            padding=_PADDING[cfg.padding],
            feature_group_count=width,
            dtype=dtype,
            name="dwconv",
        )(x)
        h = AdaGN(cfg.groups, eps=cfg.norm_eps, dtype=dtype, name="adagn")(h, cond)
        h = nn.Dense(cfg.expansion * width, dtype=dtype, name="pw_expand")(h)
        h = nn.gelu(h, approximate=False)
        h = nn.Dense(width, dtype=dtype, name="pw_project")(h)
        if cfg.layer_scale_init is not None:
            gamma = self.param(
                "gamma", nn.initializers.constant(cfg.layer_scale_init), (width,), jnp.float32
            )
            h = h * gamma.astype(dtype)
        return x + h


class IsoNext(nn.Module):
    """Isotropic ConvNeXt velocity field ``v(x, t, style)`` for flow matching.

    Layout: ``input_proj`` (3x3 conv to ``hidden_dim``) -> ``blocks_0 .. blocks_{L-1}``
    (:class:`IsoNextBlock`) -> ``norm_out`` (GroupNorm) -> ``output_proj`` (3x3 conv).
    The conditioning vector ``c [batch, cond_dim]`` is ``time_embedding(f)`` with
    ``f = [cos(s t w_k), sin(s t w_k)]``, ``s = time_scale``, ``w_k = 10000^(-2k / D)``
    for ``k < D / 2`` (:func:`~jaxdiff.nets.embeddings.sinusoidal_embedding`, width
    ``D = hidden_dim``), plus ``style_embedding(style)`` when ``style_dim`` is set and a
    style is given (both :class:`~jaxdiff.nets.embeddings.TimestepMLP`). Every block's
    AdaGN reads ``c``.

    Attributes:
        config: the architecture.
    """

    config: IsoNextConfig

    def _check_inputs(self, x, t, style, style_mask) -> None:
        cfg = self.config
        if x.ndim != 4 or x.shape[-1] != cfg.in_channels:
            raise ValueError(
                f"x must have shape [batch, height, width, {cfg.in_channels}] (NHWC), got {x.shape}"
            )
        if not (t.ndim == 0 or t.shape == (x.shape[0],)):
            raise ValueError(f"t must have shape [batch]=({x.shape[0]},) or (), got {t.shape}")
        if style is not None:
            if cfg.style_dim is None:
                raise ValueError("style given but config.style_dim is None (unconditional)")
            if style.shape != (x.shape[0], cfg.style_dim):
                raise ValueError(
                    f"style must have shape [batch, style_dim]=({x.shape[0]}, "
                    f"{cfg.style_dim}), got {style.shape}"
                )
        if style_mask is not None:
            if style is None:
                raise ValueError("style_mask given without style")
            if style_mask.shape != (x.shape[0],):
                raise ValueError(
                    f"style_mask must have shape [batch]=({x.shape[0]},), got {style_mask.shape}"
                )

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        t: jax.Array,
        style: jax.Array | None = None,
        *,
        style_mask: jax.Array | None = None,
    ) -> jax.Array:
        """Velocity at ``(x, t)``.

        Args:
            x: ``[batch, height, width, in_channels]`` (NHWC); any height and width.
            t: ``[batch]`` (or scalar) continuous time in ``[0, 1]``.
            style: ``[batch, style_dim]`` style vector (e.g. a one-hot or learned style
                code); ``None`` = the unconditional branch (no style term), which is
                what classifier-free guidance evaluates. Only when ``style_dim`` is set.
            style_mask: ``[batch]`` 1 to keep / 0 to drop each example's style (label
                dropout for classifier-free guidance, Ho & Salimans 2021); a dropped
                example equals calling with ``style=None``.

        Returns:
            ``[batch, height, width, out_channels]`` velocity in the compute dtype.
            Gradients flow to ``x``, ``t``, ``style`` and all parameters.
        """
        cfg = self.config
        dtype = cfg.compute_dtype
        x, t = jnp.asarray(x), jnp.asarray(t)
        style = None if style is None else jnp.asarray(style)
        style_mask = None if style_mask is None else jnp.asarray(style_mask)
        self._check_inputs(x, t, style, style_mask)
        t = jnp.broadcast_to(t, (x.shape[0],))

        feats = sinusoidal_embedding(
            cfg.time_scale * t, cfg.hidden_dim, flip_sin_to_cos=True, downscale_freq_shift=0.0
        )
        cond = TimestepMLP(cfg.cond_dim, dtype=dtype, name="time_embedding")(feats.astype(dtype))
        if cfg.style_dim is not None:
            # style_embedding always exists, so the params do not depend on the call;
            # style=None is the all-dropped mask
            batch = x.shape[0]
            if style is None:
                style, keep = jnp.zeros((batch, cfg.style_dim), dtype), jnp.zeros((batch,))
            else:
                keep = jnp.ones((batch,)) if style_mask is None else style_mask
            s = TimestepMLP(cfg.cond_dim, dtype=dtype, name="style_embedding")(style.astype(dtype))
            cond = cond + keep.astype(dtype)[:, None] * s

        conv = dict(padding=_PADDING[cfg.padding], dtype=dtype)
        h = nn.Conv(cfg.hidden_dim, (3, 3), name="input_proj", **conv)(x.astype(dtype))
        block = nn.remat(IsoNextBlock) if cfg.use_checkpointing else IsoNextBlock
        for i in range(cfg.num_layers):
            h = block(cfg, name=f"blocks_{i}")(h, cond)
        h = group_norm(h, groups=cfg.groups, eps=cfg.norm_eps, name="norm_out")
        return nn.Conv(cfg.out_channels, (3, 3), name="output_proj", **conv)(h)


class StyleVelocity(nn.Module):
    """``v(x [B, H, W, C], t [B] in [0, 1], style [B] int in 0..K) -> [B, H, W, C]``.

    The style-transfer model (``jaxdiff style``): an :class:`IsoNext` told a style id
    ``s`` in ``0..K-1`` or the null id ``K``. Its style vector is ``one_hot(s, K)`` (zeros
    for ``K``) with the style mask ``s < K``, so IsoNext's style MLP on a one-hot is a
    learned embedding table and the null id is IsoNext's unconditional branch -- the id
    :class:`~jaxdiff.flows.CFMObjective` drops labels to (label dropout) and guidance
    evaluates.

    Attributes:
      config: the IsoNext, with ``style_dim == num_styles``.
      num_styles: ``K``; the id ``K`` is the null (unconditional) style.
    """

    config: IsoNextConfig
    num_styles: int

    @nn.compact
    def __call__(self, x, t, style):
        """The velocity at ``(x, t)`` under style ids ``style`` (see the class)."""
        ids = jnp.asarray(style)
        vector = jax.nn.one_hot(ids, self.num_styles, dtype=jnp.float32)
        keep = (ids < self.num_styles).astype(jnp.float32)
        return IsoNext(self.config, name="isonext")(x, t, vector, style_mask=keep)
