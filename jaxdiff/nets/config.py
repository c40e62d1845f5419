"""``HighResModelConfig``: the UNet's architecture, with ATLAS's field names.

The first block of fields is ATLAS's ``atlas.config.HighResModelConfig``; the second
block holds what diffusers' ``UNet2DModel`` / ``UNet2DConditionModel`` configs also fix
(group-norm size, head layout, time-embedding options, ...), so an imported diffusers
model is described exactly. Resolution level ``i`` has ``base_channels * channel_mult[i]``
channels; levels listed in ``attention_levels`` get self-attention blocks
(``conditional=False``, diffusers' ``AttnDownBlock2D``) or transformer blocks with
cross-attention (``conditional=True``, ``CrossAttnDownBlock2D``).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxdiff._validation import check_bool, check_choice, check_int_range, check_real

__all__ = ["HighResModelConfig"]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


_BOOL_FIELDS = (
    "conditional",
    "use_checkpointing",
    "use_linear_projection",
    "flip_sin_to_cos",
    "mid_block",
    "mid_attention",
    "center_input_sample",
)


def _per_level(field: str, value, levels: int) -> tuple[int, ...]:
    """An int or a per-level tuple of ints, as a tuple of length ``levels``."""
    if isinstance(value, int | tuple | list) and not isinstance(value, bool):
        values = (value,) * levels if isinstance(value, int) else tuple(value)
        if len(values) == levels and all(isinstance(v, int) and v >= 1 for v in values):
            return values
    raise ValueError(
        f"{field}={value!r} must be a positive int or a tuple of {levels} positive ints "
        "(one per resolution level)"
    )


@dataclasses.dataclass(frozen=True)
class HighResModelConfig:
    """Static (hashable) description of a :class:`jaxdiff.nets.unet.UNet`.

    Attributes:
        in_channels: channels of the input ``x``.
        out_channels: channels of the prediction.
        base_channels: channels of resolution level 0.
        channel_mult: per-level channel multipliers; its length is the number of levels.
        num_res_blocks: residual blocks per level on the way down (``+1`` on the way up).
        attention_levels: indices of the levels with attention.
        dropout: dropout rate inside residual blocks (as in diffusers, not in attention).
        conditional: cross-attention to a context ``[batch, tokens, context_dim]``.
        context_dim: width of the context tokens (used when ``conditional``).
        num_classes: number of class labels for class conditioning; ``None`` = off.
        use_checkpointing: rematerialise residual / attention blocks (``nn.remat``).
        lora_rank: rank of the LoRA adapters on attention and projection weights; 0 = off.
        lora_alpha: LoRA scale numerator: the update is ``(lora_alpha / lora_rank) B A``.
        norm_num_groups: groups of every GroupNorm (channels must be divisible by it).
        norm_eps: epsilon of the residual / output GroupNorms.
        num_heads: attention heads, an int or one per level (diffusers'
            ``num_attention_heads``, which ``UNet2DConditionModel`` calls
            ``attention_head_dim``); ignored when ``attention_head_dim`` is set.
        attention_head_dim: width of one head (``UNet2DModel``'s meaning): the heads of
            a level are ``channels // attention_head_dim``. ``None``: use ``num_heads``.
        transformer_layers_per_block: transformer blocks per attention, int or per level.
        use_linear_projection: transformer ``proj_in``/``proj_out`` act on tokens
            (``Linear``) instead of pixels (1x1 ``Conv``); the maths is the same.
        flip_sin_to_cos: order ``[cos, sin]`` of the sinusoidal time features.
        freq_shift: ``downscale_freq_shift`` of the sinusoidal time features.
        time_embedding_type: ``"positional"`` (sinusoidal) or ``"fourier"`` (random
            Fourier features of ``log t``; the output is divided by ``t``, as in
            diffusers' ``UNet2DModel`` for NCSN++ models).
        time_embedding_dim: width of the time embedding; ``None`` = ``4 * base_channels``.
        mid_block: whether the UNet has a middle block.
        mid_attention: whether the middle block has attention.
        mid_block_scale_factor: the middle block's ``output_scale_factor``.
        downsample_padding: padding of the strided downsampling convolution (0 or 1).
        resnet_time_scale_shift: ``"default"`` (add the time embedding) or
            ``"scale_shift"`` (FiLM after the second GroupNorm).
        center_input_sample: map ``x`` to ``2 x - 1`` first.
        dtype: compute dtype name (``"float32"``, ``"bfloat16"``, ``"float16"``);
            parameters, GroupNorm / LayerNorm statistics and softmax stay float32.
    """

    in_channels: int = 4
    out_channels: int = 4
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (1, 2)
    dropout: float = 0.0
    conditional: bool = False
    context_dim: int = 768
    num_classes: int | None = None
    use_checkpointing: bool = False
    lora_rank: int = 0
    lora_alpha: float = 1.0
    # -- fields that pin down diffusers' UNet2DModel / UNet2DConditionModel exactly --
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    num_heads: int | tuple[int, ...] = 8
    attention_head_dim: int | None = None
    transformer_layers_per_block: int | tuple[int, ...] = 1
    use_linear_projection: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    time_embedding_type: str = "positional"
    time_embedding_dim: int | None = None
    mid_block: bool = True
    mid_attention: bool = True
    mid_block_scale_factor: float = 1.0
    downsample_padding: int = 1
    resnet_time_scale_shift: str = "default"
    center_input_sample: bool = False
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("channel_mult", "attention_levels"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        for name in ("num_heads", "transformer_layers_per_block"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self._validate()

    def _validate(self) -> None:
        check_int_range("in_channels", self.in_channels, 1)
        check_int_range("out_channels", self.out_channels, 1)
        check_int_range("base_channels", self.base_channels, 1)
        check_int_range("num_res_blocks", self.num_res_blocks, 1)
        check_int_range("norm_num_groups", self.norm_num_groups, 1)
        check_int_range("downsample_padding", self.downsample_padding, 0, 1)
        check_int_range("lora_rank", self.lora_rank, 0)
        if not self.channel_mult or not all(
            isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in self.channel_mult
        ):
            raise ValueError(
                f"channel_mult={self.channel_mult!r} must be a non-empty tuple of positive ints"
            )
        levels = len(self.channel_mult)
        bad = [a for a in self.attention_levels if not isinstance(a, int) or not 0 <= a < levels]
        if bad or len(set(self.attention_levels)) != len(self.attention_levels):
            raise ValueError(
                f"attention_levels={self.attention_levels!r} must be distinct level indices "
                f"in [0, {levels - 1}]"
            )
        for level, ch in enumerate(self.block_out_channels):
            if ch % self.norm_num_groups:
                raise ValueError(
                    f"channels {ch} of level {level} (base_channels * channel_mult[{level}]) "
                    f"are not divisible by norm_num_groups={self.norm_num_groups}"
                )
        for flag in _BOOL_FIELDS:
            check_bool(flag, getattr(self, flag))
        for number in ("freq_shift", "mid_block_scale_factor", "lora_alpha"):
            check_real(number, getattr(self, number))
        if check_real("dropout", self.dropout, 0.0) >= 1.0:
            raise ValueError(f"dropout={self.dropout} must lie in [0, 1)")
        check_real("norm_eps", self.norm_eps, 0.0, strict=True)
        if self.conditional:
            check_int_range("context_dim", self.context_dim, 1)
        if self.num_classes is not None:
            check_int_range("num_classes", self.num_classes, 1)
        if self.lora_rank and self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha={self.lora_alpha} must be > 0 when lora_rank > 0")
        if self.time_embedding_dim is not None:
            check_int_range("time_embedding_dim", self.time_embedding_dim, 1)
        check_choice("time_embedding_type", self.time_embedding_type, ("positional", "fourier"))
        check_choice(
            "resnet_time_scale_shift", self.resnet_time_scale_shift, ("default", "scale_shift")
        )
        check_choice("dtype", self.dtype, tuple(_DTYPES))
        _per_level("transformer_layers_per_block", self.transformer_layers_per_block, levels)
        # only levels that hold attention need a valid head layout
        attn_levels = set(self.attention_levels)
        if self.mid_block and (self.mid_attention or self.conditional):
            attn_levels.add(levels - 1)
        if self.attention_head_dim is not None:
            check_int_range("attention_head_dim", self.attention_head_dim, 1)
        else:
            _per_level("num_heads", self.num_heads, levels)
        for level in sorted(attn_levels):
            ch = self.block_out_channels[level]
            if self.attention_head_dim is not None and ch % self.attention_head_dim:
                raise ValueError(
                    f"channels {ch} of level {level} are not divisible by "
                    f"attention_head_dim={self.attention_head_dim}"
                )
            if ch % self.heads(level):
                raise ValueError(
                    f"channels {ch} of level {level} are not divisible by its "
                    f"{self.heads(level)} attention heads (num_heads)"
                )

    @property
    def num_levels(self) -> int:
        """Number of resolution levels."""
        return len(self.channel_mult)

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        """Channels per level (diffusers' ``block_out_channels``)."""
        return tuple(self.base_channels * m for m in self.channel_mult)

    @property
    def time_embed_dim(self) -> int:
        """Width of the time embedding fed to every residual block."""
        return self.time_embedding_dim or 4 * self.base_channels

    @property
    def compute_dtype(self):
        """The ``jnp`` compute dtype named by ``dtype``."""
        return _DTYPES[self.dtype]

    def heads(self, level: int) -> int:
        """Attention heads at ``level``."""
        if self.attention_head_dim is not None:
            return self.block_out_channels[level] // self.attention_head_dim
        return _per_level("num_heads", self.num_heads, self.num_levels)[level]

    def transformer_depth(self, level: int) -> int:
        """Transformer blocks per cross-attention module at ``level``."""
        depths = _per_level(
            "transformer_layers_per_block", self.transformer_layers_per_block, self.num_levels
        )
        return depths[level]
