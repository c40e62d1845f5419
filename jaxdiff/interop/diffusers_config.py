"""Translate diffusers UNet config dicts to and from :class:`HighResModelConfig`.

Supports the options of ``UNet2DModel`` (``DownBlock2D`` / ``AttnDownBlock2D``,
``UNetMidBlock2D``) and ``UNet2DConditionModel`` (``DownBlock2D`` /
``CrossAttnDownBlock2D``, ``UNetMidBlock2DCrossAttn``) that
:class:`jaxdiff.nets.unet.UNet` reproduces exactly; any other option raises a
``ValueError`` naming it, its value and what is supported, instead of a model that
silently differs.
"""

from __future__ import annotations

from collections.abc import Mapping

from jaxdiff.interop.diffusers_weights import config_flag, config_number
from jaxdiff.nets.config import HighResModelConfig

__all__ = ["config_from_diffusers", "config_to_diffusers"]

_COND = "UNet2DConditionModel"
_UNCOND = "UNet2DModel"

# diffusers' defaults for the options read here (UNet2DModel, UNet2DConditionModel)
_DEFAULTS = {
    _UNCOND: dict(
        in_channels=3, out_channels=3, center_input_sample=False,
        time_embedding_type="positional", time_embedding_dim=None, freq_shift=0,
        flip_sin_to_cos=True, mid_block_type="UNetMidBlock2D",
        block_out_channels=(224, 448, 672, 896), layers_per_block=2,
        mid_block_scale_factor=1, downsample_padding=1, dropout=0.0, act_fn="silu",
        attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5,
        resnet_time_scale_shift="default", add_attention=True, num_class_embeds=None,
    ),
    _COND: dict(
        in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
        freq_shift=0, mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        downsample_padding=1, mid_block_scale_factor=1, dropout=0.0, act_fn="silu",
        norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=1280,
        transformer_layers_per_block=1, attention_head_dim=8, num_attention_heads=None,
        use_linear_projection=False, num_class_embeds=None,
        resnet_time_scale_shift="default", time_embedding_type="positional",
        time_embedding_dim=None,
    ),
}  # fmt: skip

# options that must keep these values (diffusers' defaults) to be supported
_FIXED = {
    _UNCOND: dict(
        downsample_type="conv", upsample_type="conv", class_embed_type=None,
        attn_norm_num_groups=None,
    ),
    _COND: dict(
        only_cross_attention=False, dual_cross_attention=False, encoder_hid_dim=None,
        encoder_hid_dim_type=None, class_embed_type=None, addition_embed_type=None,
        resnet_skip_time_act=False, resnet_out_scale_factor=1.0, time_embedding_act_fn=None,
        timestep_post_act=None, time_cond_proj_dim=None, conv_in_kernel=3, conv_out_kernel=3,
        projection_class_embeddings_input_dim=None, attention_type="default",
        class_embeddings_concat=False, mid_block_only_cross_attention=None,
        cross_attention_norm=None, reverse_transformer_layers_per_block=None,
    ),
}  # fmt: skip

_BLOCKS = {
    _UNCOND: ("DownBlock2D", "AttnDownBlock2D", "UpBlock2D", "AttnUpBlock2D", "UNetMidBlock2D"),
    _COND: (
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "UNetMidBlock2DCrossAttn",
    ),
}


def _unsupported(name: str, value, allowed) -> ValueError:
    return ValueError(
        f"diffusers option {name}={value!r} is not supported by jaxdiff's UNet; "
        f"supported: {allowed}"
    )


def _class_name(dcfg: Mapping) -> str:
    name = dcfg.get("_class_name")
    if name is None:
        types = list(dcfg.get("down_block_types", ())) + [str(dcfg.get("mid_block_type"))]
        cond = "cross_attention_dim" in dcfg or any("CrossAttn" in t for t in types)
        name = _COND if cond else _UNCOND
    if name not in (_COND, _UNCOND):
        raise _unsupported("_class_name", name, [_UNCOND, _COND])
    return name


def _same(name: str, value, levels: int):
    """An int, or a per-level list whose entries are all equal, as one int."""
    if isinstance(value, list | tuple):
        if len(set(value)) != 1:
            raise _unsupported(name, value, "one value for all levels")
        return value[0]
    return value


def config_from_diffusers(dcfg: Mapping) -> HighResModelConfig:
    """The :class:`HighResModelConfig` of a diffusers UNet config.

    Args:
        dcfg: ``model.config`` or the parsed ``config.json`` of a ``UNet2DModel`` or
            ``UNet2DConditionModel`` (``_class_name`` picks the kind; without it, the
            block types do).

    Returns:
        The matching config (float32 compute, no LoRA, no checkpointing).
    """
    kind = _class_name(dcfg)
    cfg = {**_DEFAULTS[kind], **{k: v for k, v in dcfg.items() if not k.startswith("_")}}
    for name, value in _FIXED[kind].items():
        if cfg.get(name, value) != value:
            raise _unsupported(name, cfg[name], value)
    if cfg["act_fn"] not in ("silu", "swish"):
        raise _unsupported("act_fn", cfg["act_fn"], "silu")
    if cfg["norm_num_groups"] is None:
        raise _unsupported("norm_num_groups", None, "an int")
    allowed_time = ("positional", "fourier") if kind == _UNCOND else ("positional",)
    if cfg["time_embedding_type"] not in allowed_time:
        raise _unsupported("time_embedding_type", cfg["time_embedding_type"], allowed_time)
    if cfg["resnet_time_scale_shift"] not in ("default", "scale_shift"):
        raise _unsupported(
            "resnet_time_scale_shift", cfg["resnet_time_scale_shift"], "default, scale_shift"
        )

    channels = tuple(cfg["block_out_channels"])
    levels = len(channels)
    base = channels[0]
    if any(c % base for c in channels):
        raise _unsupported("block_out_channels", channels, "multiples of the first entry")
    down_plain, down_attn, up_plain, up_attn, mid = _BLOCKS[kind]
    down = list(cfg.get("down_block_types", ()))
    up = list(cfg.get("up_block_types", ()))
    if len(down) != levels or len(up) != levels:
        raise ValueError(
            f"down_block_types ({len(down)}) and up_block_types ({len(up)}) must both have "
            f"one entry per block_out_channels entry ({levels})"
        )
    for t in down:
        if t not in (down_plain, down_attn):
            raise _unsupported("down_block_types", down, [down_plain, down_attn])
    attention_levels = tuple(i for i, t in enumerate(down) if t == down_attn)
    mirrored = [
        up_attn if (levels - 1 - i) in attention_levels else up_plain for i in range(levels)
    ]
    if up != mirrored:
        raise _unsupported("up_block_types", up, f"the mirror of down_block_types: {mirrored}")
    if cfg["mid_block_type"] not in (mid, None):
        raise _unsupported("mid_block_type", cfg["mid_block_type"], [mid, None])

    fields = dict(
        in_channels=cfg["in_channels"],
        out_channels=cfg["out_channels"],
        base_channels=base,
        channel_mult=tuple(c // base for c in channels),
        num_res_blocks=_same("layers_per_block", cfg["layers_per_block"], levels),
        attention_levels=attention_levels,
        dropout=config_number(cfg, "dropout"),
        num_classes=cfg["num_class_embeds"],
        norm_num_groups=cfg["norm_num_groups"],
        norm_eps=config_number(cfg, "norm_eps"),
        flip_sin_to_cos=config_flag(cfg, "flip_sin_to_cos"),
        freq_shift=config_number(cfg, "freq_shift"),
        time_embedding_type=cfg["time_embedding_type"],
        time_embedding_dim=cfg["time_embedding_dim"],
        mid_block=cfg["mid_block_type"] is not None,
        mid_block_scale_factor=config_number(cfg, "mid_block_scale_factor"),
        downsample_padding=cfg["downsample_padding"],
        resnet_time_scale_shift=cfg["resnet_time_scale_shift"],
        center_input_sample=config_flag(cfg, "center_input_sample"),
    )
    if kind == _UNCOND:
        head_dim = cfg["attention_head_dim"]
        fields.update(
            conditional=False,
            mid_attention=config_flag(cfg, "add_attention"),
            attention_head_dim=head_dim,
            num_heads=1,
        )
    else:
        heads = cfg["num_attention_heads"] or cfg["attention_head_dim"]
        depth = cfg["transformer_layers_per_block"]
        if isinstance(depth, list | tuple) and any(isinstance(d, list | tuple) for d in depth):
            raise _unsupported("transformer_layers_per_block", depth, "int or one int per level")
        fields.update(
            conditional=True,
            context_dim=_same("cross_attention_dim", cfg["cross_attention_dim"], levels),
            num_heads=tuple(heads) if isinstance(heads, list | tuple) else heads,
            transformer_layers_per_block=tuple(depth) if isinstance(depth, list | tuple) else depth,
            use_linear_projection=config_flag(cfg, "use_linear_projection"),
        )
    return HighResModelConfig(**fields)


def config_to_diffusers(config: HighResModelConfig) -> dict:
    """The diffusers config dict (with ``_class_name``) of a jaxdiff UNet config.

    The inverse of :func:`config_from_diffusers`: ``UNet2DModel`` without cross-attention,
    ``UNet2DConditionModel`` with it, so a UNet trained in jaxdiff exports to diffusers
    (with :func:`~jaxdiff.interop.unet_to_diffusers_state_dict`). Compute dtype, remat
    and LoRA (merged on export) have no diffusers counterpart and are left out.

    Raises:
        ValueError: an option diffusers' UNets cannot express (a conditional UNet
            without middle attention).
    """
    if not isinstance(config, HighResModelConfig):
        raise TypeError(f"config must be a HighResModelConfig, got {type(config).__name__}")
    kind = _COND if config.conditional else _UNCOND
    down_plain, down_attn, up_plain, up_attn, mid = _BLOCKS[kind]
    levels = len(config.channel_mult)
    attn = set(config.attention_levels)
    out = dict(
        _class_name=kind,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        block_out_channels=[config.base_channels * m for m in config.channel_mult],
        layers_per_block=config.num_res_blocks,
        down_block_types=[down_attn if i in attn else down_plain for i in range(levels)],
        up_block_types=[up_attn if levels - 1 - i in attn else up_plain for i in range(levels)],
        mid_block_type=mid if config.mid_block else None,
        dropout=config.dropout,
        num_class_embeds=config.num_classes,
        norm_num_groups=config.norm_num_groups,
        norm_eps=config.norm_eps,
        flip_sin_to_cos=config.flip_sin_to_cos,
        freq_shift=config.freq_shift,
        time_embedding_type=config.time_embedding_type,
        time_embedding_dim=config.time_embedding_dim,
        mid_block_scale_factor=config.mid_block_scale_factor,
        downsample_padding=config.downsample_padding,
        resnet_time_scale_shift=config.resnet_time_scale_shift,
        center_input_sample=config.center_input_sample,
    )
    heads = config.num_heads
    heads = list(heads) if isinstance(heads, tuple) else heads
    if kind == _UNCOND:
        if config.attention_head_dim is None and heads != 1:
            raise ValueError(
                f"num_heads={config.num_heads!r} without attention_head_dim has no "
                "UNet2DModel equivalent (it sets heads through attention_head_dim)"
            )
        out.update(add_attention=config.mid_attention, attention_head_dim=config.attention_head_dim)
        return out
    if config.mid_block and not config.mid_attention:
        raise ValueError("a conditional UNet without middle attention has no diffusers equivalent")
    depth = config.transformer_layers_per_block
    out.update(
        cross_attention_dim=config.context_dim,
        attention_head_dim=heads,  # UNet2DConditionModel's name for the number of heads
        transformer_layers_per_block=list(depth) if isinstance(depth, tuple) else depth,
        use_linear_projection=config.use_linear_projection,
    )
    return out
