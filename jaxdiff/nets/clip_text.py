"""CLIP's text encoder, as transformers' ``CLIPTextModel`` / ``CLIPTextModelWithProjection``.

The text tower of Radford et al. 2021, "Learning Transferable Visual Models From Natural
Language Supervision" (Sec. 2.4), in the layout of Hugging Face transformers.

Notation: ``B`` prompts of ``T`` tokens, width ``D = hidden_size``, ``H`` heads of width
``D / H``, ``L = num_hidden_layers``.

1. ``x = token_embedding[input_ids] + position_embedding[0..T-1]``  ``[B, T, D]``
2. ``L`` pre-LayerNorm layers (GPT-2 style, as CLIP):
   ``x += out_proj(attn(layer_norm1 x))``; ``x += fc2(act(fc1(layer_norm2 x)))``.
   Query ``i`` attends to key ``j`` iff ``j <= i`` (causal) and ``attention_mask[b, j]``
   is 1: transformers' ``create_causal_mask`` (the padding mask removes keys only).
   A query with no allowed key (left padding) attends uniformly to all keys, as
   transformers' eager attention does (its SDPA path gives those rows other values);
   with padding at the end no such row exists.
3. ``last_hidden_state = final_layer_norm(x)``.
4. ``pooled = last_hidden_state[b, p_b]`` with transformers' rule for ``p_b``: when
   ``eos_token_id == 2`` (configs written before transformers PR #24773) the position of
   the largest id (``argmax(input_ids)``, the end-of-text token of CLIP's vocabulary);
   otherwise the first position holding ``eos_token_id`` (position 0 when a row has
   none: tokenizers always append it).
5. ``text_embeds = text_projection(pooled)`` (no bias) when ``with_projection``.

Submodule names are transformers' with ``.`` -> ``/`` and ``layers.i`` -> ``layers_i``
(``encoder/layers_0/self_attn/q_proj``), so :mod:`jaxdiff.interop.clip_text` maps
weights one to one. Parameters, LayerNorm statistics and the softmax are float32; the
rest computes in ``config.dtype``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._validation import check_choice, check_int_range, check_real, is_concrete
from jaxdiff.nets.config import _DTYPES

__all__ = ["CLIPTextConfig", "CLIPTextModel", "CLIPTextOutput"]

_LEGACY_EOS = 2  # the eos_token_id of configs that pool at argmax(input_ids)


def quick_gelu(x: jax.Array) -> jax.Array:
    """``x * sigmoid(1.702 x)`` (Hendrycks & Gimpel 2016, Sec. 2; OpenAI CLIP's GELU)."""
    return x * jax.nn.sigmoid(1.702 * x)


def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU ``x * Phi(x)`` (Hendrycks & Gimpel 2016)."""
    return jax.nn.gelu(x, approximate=False)


def gelu_tanh(x: jax.Array) -> jax.Array:
    """Tanh GELU ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (Hendrycks & Gimpel 2016)."""
    return jax.nn.gelu(x, approximate=True)


# transformers' ACT2FN names -> the same function (gelu_new, gelu_fast and
# gelu_pytorch_tanh are one formula; gelu_fast rounds sqrt(2/pi) to 10 digits)
_ACTIVATIONS = {
    "quick_gelu": quick_gelu,
    "gelu": gelu,
    "gelu_new": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}
_SIZE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "projection_dim",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
)


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    """Static (hashable) description of a :class:`CLIPTextModel`.

    Field names and defaults are transformers' ``CLIPTextConfig`` (openai/clip-vit-base-
    patch32); fields that do not change the forward pass (dropout, initialisation,
    ``bos`` / ``pad`` ids) are left out.

    Attributes:
        vocab_size: number of token ids; ids lie in ``[0, vocab_size)``.
        hidden_size: width ``D`` of the token states.
        intermediate_size: hidden width of each layer's MLP.
        projection_dim: width of ``text_embeds`` (used with ``with_projection``).
        num_hidden_layers: number of transformer layers.
        num_attention_heads: heads per layer; must divide ``hidden_size``.
        max_position_embeddings: the context: prompts have at most this many tokens.
        hidden_act: MLP activation, a transformers ``ACT2FN`` name (``quick_gelu``,
            ``gelu``, ``gelu_new``, ``gelu_fast``, ``gelu_pytorch_tanh``, ``relu``,
            ``silu``, ``swish``).
        layer_norm_eps: epsilon of every LayerNorm.
        eos_token_id: end-of-text id; ``2`` selects the legacy pooling rule
            (``argmax(input_ids)``), see the module docstring.
        dtype: compute dtype name (``"float32"``, ``"bfloat16"``, ``"float16"``; not a
            transformers field); parameters stay float32.
    """

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 49407
    dtype: str = "float32"

    def __post_init__(self):
        for name in _SIZE_FIELDS:
            check_int_range(name, getattr(self, name), 1)
        check_int_range("eos_token_id", self.eos_token_id, 0)
        check_real("layer_norm_eps", self.layer_norm_eps, 0.0, strict=True)
        object.__setattr__(
            self, "hidden_act", check_choice("hidden_act", self.hidden_act, tuple(_ACTIVATIONS))
        )
        object.__setattr__(self, "dtype", check_choice("dtype", self.dtype, tuple(_DTYPES)))
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}; choose heads that divide it"
            )

    @classmethod
    def from_dict(cls, d: Mapping) -> CLIPTextConfig:
        """The config of a transformers ``config.json`` dict.

        Args:
            d: a ``CLIPTextConfig`` dict, or a full ``CLIPConfig`` dict whose
                ``text_config`` (updated by a legacy ``text_config_dict``) is read and whose
                top-level ``projection_dim`` sizes the projection, as ``CLIPModel`` does.
                Other keys are ignored, including transformers' ``dtype`` /
                ``torch_dtype`` (the stored weights' dtype, not a compute dtype).

        Raises:
            TypeError: ``d`` (or its ``text_config``) is not a mapping, or a field has the
                wrong type (named).
            ValueError: a field out of range (named).
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"d must be a config dict (a mapping), got {type(d).__name__}")
        text = dict(d)
        if "text_config" in d or "text_config_dict" in d:  # a full CLIPConfig
            text = {}
            for part in ("text_config", "text_config_dict"):
                value = d.get(part)
                if value is not None and not isinstance(value, Mapping):
                    raise TypeError(f"{part} must be a mapping, got {type(value).__name__}")
                text.update(value or {})
            text["projection_dim"] = d.get("projection_dim", cls.projection_dim)
        names = [f.name for f in dataclasses.fields(cls) if f.name != "dtype"]
        return cls(**{name: text[name] for name in names if name in text})

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``hidden_size // num_attention_heads``."""
        return self.hidden_size // self.num_attention_heads

    @property
    def compute_dtype(self):
        """The ``jnp`` compute dtype named by ``dtype``."""
        return _DTYPES[self.dtype]


@flax.struct.dataclass
class CLIPTextOutput:
    """What :class:`CLIPTextModel` returns (a pytree).

    Attributes:
        last_hidden_state: ``[B, T, hidden_size]`` after the final LayerNorm (what
            latent-diffusion UNets cross-attend to).
        pooled: ``[B, hidden_size]``, the state at each prompt's end-of-text token
            (transformers' ``pooler_output``).
        text_embeds: ``[B, projection_dim]`` projected ``pooled``, or ``None`` without
            ``with_projection``.
    """

    last_hidden_state: jax.Array
    pooled: jax.Array
    text_embeds: jax.Array | None = None


def _check_ids(config: CLIPTextConfig, input_ids) -> jax.Array:
    """``input_ids`` as an integer array ``[B, T]``; entries checked when concrete."""
    if not is_concrete(input_ids):
        dtype, shape, host = input_ids.dtype, input_ids.shape, None
    else:
        try:
            host = np.asarray(input_ids)
        except ValueError as err:  # ragged nested lists
            raise TypeError(f"input_ids must be an integer array [batch, tokens]: {err}") from err
        dtype, shape = host.dtype, host.shape
    if dtype.kind not in "iu":
        raise TypeError(f"input_ids must be integer token ids, got dtype {dtype}")
    if len(shape) != 2 or 0 in shape:
        raise ValueError(
            f"input_ids must have shape [batch, tokens] (2-D, non-empty), got {tuple(shape)}"
        )
    limit = config.max_position_embeddings
    if shape[1] > limit:
        raise ValueError(
            f"input_ids has {shape[1]} tokens, longer than the encoder's context "
            f"(max_position_embeddings={limit}); truncate prompts to at most {limit} tokens"
        )
    if host is not None and (host.min() < 0 or host.max() >= config.vocab_size):
        raise ValueError(
            f"input_ids entries must lie in [0, vocab_size={config.vocab_size}); "
            f"got range [{host.min()}, {host.max()}]"
        )
    return jnp.asarray(input_ids)


def _check_mask(attention_mask, shape: tuple[int, ...]) -> jax.Array | None:
    """``attention_mask`` as bool ``[B, T]`` (True = token), or None; 0/1 checked if concrete."""
    if attention_mask is None:
        return None
    if isinstance(attention_mask, str | bytes):
        raise TypeError(
            f"attention_mask must be a 0/1 array [batch, tokens], got {attention_mask!r}"
        )
    mask = jnp.asarray(attention_mask)
    if mask.dtype.kind not in "biuf":
        raise TypeError(f"attention_mask must be a bool or 0/1 array, got dtype {mask.dtype}")
    if mask.shape != shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {shape}, got {mask.shape}"
        )
    if is_concrete(attention_mask) and not np.isin(np.asarray(mask), (0, 1)).all():
        raise ValueError("attention_mask entries must be 0 (padding) or 1 (token)")
    return mask != 0


def _allowed(mask: jax.Array | None, tokens: int) -> jax.Array:
    """Bool ``[B or 1, 1, T, T]``: query ``i`` may attend key ``j`` (causal and not padding)."""
    causal = jnp.tril(jnp.ones((tokens, tokens), jnp.bool_))[None, None]
    return causal if mask is None else causal & mask[:, None, None, :]


def _pool_positions(input_ids: jax.Array, eos_token_id: int) -> jax.Array:
    """``[B]`` positions of the end-of-text token (transformers' rule, module docstring)."""
    if eos_token_id == _LEGACY_EOS:
        return jnp.argmax(input_ids, axis=-1)
    return jnp.argmax((input_ids == eos_token_id).astype(jnp.int32), axis=-1)


def _layer_norm(config: CLIPTextConfig, x: jax.Array, name: str) -> jax.Array:
    norm = nn.LayerNorm(
        epsilon=config.layer_norm_eps, dtype=jnp.float32, use_fast_variance=False, name=name
    )
    return norm(x.astype(jnp.float32)).astype(config.compute_dtype)


class _Embeddings(nn.Module):
    """``token_embedding[ids] + position_embedding[0..T-1]``: ``[B, T]`` -> ``[B, T, D]``."""

    config: CLIPTextConfig

    @nn.compact
    def __call__(self, input_ids: jax.Array) -> jax.Array:
        cfg = self.config
        dtype = cfg.compute_dtype
        tokens = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=dtype, name="token_embedding")
        positions = nn.Embed(
            cfg.max_position_embeddings, cfg.hidden_size, dtype=dtype, name="position_embedding"
        )
        return tokens(input_ids) + positions(jnp.arange(input_ids.shape[1]))[None]


class _SelfAttention(nn.Module):
    """Masked multi-head self-attention (Vaswani et al. 2017): ``[B, T, D]`` -> ``[B, T, D]``."""

    config: CLIPTextConfig

    @nn.compact
    def __call__(self, x: jax.Array, allowed: jax.Array) -> jax.Array:
        cfg = self.config
        b, t, d = x.shape
        heads, width = cfg.num_attention_heads, cfg.head_dim
        dense = [nn.Dense(d, dtype=cfg.compute_dtype, name=f"{n}_proj") for n in "qkv"]
        q, k, v = (proj(x).reshape(b, t, heads, width) for proj in dense)
        out = jax.nn.dot_product_attention(q, k, v, mask=allowed, scale=1 / math.sqrt(width))
        return nn.Dense(d, dtype=cfg.compute_dtype, name="out_proj")(out.reshape(b, t, d))


class _MLP(nn.Module):
    """``fc2(act(fc1 x))``: ``[B, T, D]`` -> ``[B, T, D]``."""

    config: CLIPTextConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        h = nn.Dense(cfg.intermediate_size, dtype=cfg.compute_dtype, name="fc1")(x)
        h = _ACTIVATIONS[cfg.hidden_act](h)
        return nn.Dense(cfg.hidden_size, dtype=cfg.compute_dtype, name="fc2")(h)


class _EncoderLayer(nn.Module):
    """``x += self_attn(layer_norm1 x)``; ``x += mlp(layer_norm2 x)``."""

    config: CLIPTextConfig

    @nn.compact
    def __call__(self, x: jax.Array, allowed: jax.Array) -> jax.Array:
        cfg = self.config
        x = x + _SelfAttention(cfg, name="self_attn")(_layer_norm(cfg, x, "layer_norm1"), allowed)
        return x + _MLP(cfg, name="mlp")(_layer_norm(cfg, x, "layer_norm2"))


class _Encoder(nn.Module):
    """``num_hidden_layers`` :class:`_EncoderLayer` s named ``layers_i``."""

    config: CLIPTextConfig

    @nn.compact
    def __call__(self, x: jax.Array, allowed: jax.Array) -> jax.Array:
        for i in range(self.config.num_hidden_layers):
            x = _EncoderLayer(self.config, name=f"layers_{i}")(x, allowed)
        return x


class CLIPTextModel(nn.Module):
    """CLIP's text transformer: token ids -> token states, pooled state, text embedding.

    Attributes:
        config: the architecture (static).
        with_projection: add ``text_projection`` (transformers'
            ``CLIPTextModelWithProjection``) and return ``text_embeds``.
    """

    config: CLIPTextConfig
    with_projection: bool = False

    @nn.compact
    def __call__(self, input_ids, attention_mask=None) -> CLIPTextOutput:
        """Encode prompts (see the module docstring for the maths).

        Args:
            input_ids: integer token ids ``[B, T]`` with ``T <= max_position_embeddings``
                and entries in ``[0, vocab_size)``.
            attention_mask: ``[B, T]``, 1 (or True) for tokens and 0 for padding; ``None``
                attends to every earlier token.

        Returns:
            :class:`CLIPTextOutput`; ``text_embeds`` is ``None`` without projection.

        Raises:
            TypeError: non-integer ids, or a mask that is not bool / numeric.
            ValueError: ids not ``[B, T]``, more tokens than the context, ids outside the
                vocabulary or mask entries other than 0/1 (value checks need concrete
                inputs: under ``jit`` out-of-range ids are not detected), or a mask whose
                shape is not the ids'.
        """
        cfg = self.config
        ids = _check_ids(cfg, input_ids)
        mask = _check_mask(attention_mask, ids.shape)
        x = _Embeddings(cfg, name="embeddings")(ids)
        x = _Encoder(cfg, name="encoder")(x, _allowed(mask, ids.shape[1]))
        hidden = _layer_norm(cfg, x, "final_layer_norm")
        pooled = hidden[jnp.arange(ids.shape[0]), _pool_positions(ids, cfg.eos_token_id)]
        embeds = None
        if self.with_projection:
            projection = nn.Dense(
                cfg.projection_dim, use_bias=False, dtype=cfg.compute_dtype, name="text_projection"
            )
            embeds = projection(pooled)
        return CLIPTextOutput(last_hidden_state=hidden, pooled=pooled, text_embeds=embeds)
