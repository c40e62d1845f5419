"""Multi-head attention and the spatial transformer of latent-diffusion UNets (NHWC).

- :class:`Attention`: ``to_q/to_k/to_v -> softmax(q k^T / sqrt(d)) v -> to_out_0``
  (Vaswani et al. 2017), optionally on an image with GroupNorm, residual and rescaling
  (the self-attention block of DDPM UNets, diffusers' ``AttnDownBlock2D``).
- :class:`FeedForward`: GEGLU MLP (Shazeer 2020, "GLU Variants Improve Transformer").
- :class:`BasicTransformerBlock`: pre-LayerNorm self-attention, cross-attention to a
  context and GEGLU feed-forward, each residual (Rombach et al. 2022, "High-Resolution
  Image Synthesis with Latent Diffusion Models", Sec. 3.3).
- :class:`Transformer2D`: GroupNorm, ``proj_in``, transformer blocks over the pixels as
  tokens, ``proj_out``, residual (diffusers' ``Transformer2DModel``).

The attention product goes through ``jax.nn.dot_product_attention`` (cuDNN flash
attention on GPU where it applies, XLA elsewhere); the softmax runs in float32. Every
projection is a :class:`~jaxdiff.nets.lora.LoRADense` and so takes a LoRA adapter when
``lora_rank > 0``. Names mirror diffusers' (``to_out.0`` is ``to_out_0``, ``ff.net.0.proj``
is ``ff/net_0/proj``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.nets.lora import LoRADense
from jaxdiff.nets.resnet import group_norm

__all__ = ["Attention", "BasicTransformerBlock", "FeedForward", "Transformer2D"]


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, heads: int) -> jax.Array:
    """``q [b, t, h*d]``, ``k, v [b, s, h*d]`` -> ``[b, t, h*d]``; softmax in float32.

    On GPU with half-precision inputs the cuDNN (flash) kernel is tried first; where it
    does not apply (head width, dtype, platform) the XLA path runs. Both keep the
    logits and softmax in float32.
    """
    b, t, inner = q.shape
    d = inner // heads
    q, k, v = (y.reshape(y.shape[0], y.shape[1], heads, d) for y in (q, k, v))
    out = None
    if jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16):
        try:
            out = jax.nn.dot_product_attention(q, k, v, scale=d**-0.5, implementation="cudnn")
        except (ValueError, NotImplementedError, RuntimeError):
            out = None  # unsupported layout for cuDNN: fall back to XLA
    if out is None:
        out = jax.nn.dot_product_attention(q, k, v, scale=d**-0.5, implementation="xla")
    return out.reshape(b, t, inner)


class Attention(nn.Module):
    """Multi-head (self- or cross-) attention, diffusers' ``Attention``.

    Called on tokens ``[batch, tokens, channels]`` it returns ``to_out_0(attn)``. Called on
    an image ``[batch, height, width, channels]`` it works on the ``h * w`` pixels and,
    as diffusers' spatial attention block, applies ``group_norm`` first (when
    ``norm_groups`` is set) and returns ``(x + attn) / rescale_output_factor`` when
    ``residual``.

    Attributes:
        heads: number of heads.
        head_dim: width of one head (the inner width is ``heads * head_dim``).
        out_dim: output width (defaults to the input width).
        qkv_bias: biases on ``to_q/to_k/to_v`` (``to_out_0`` always has one).
        norm_groups: GroupNorm groups for image inputs; ``None`` = no norm.
        norm_eps: that GroupNorm's epsilon.
        residual: add the input back (image inputs).
        rescale_output_factor: divide the residual sum by it.
        lora_rank, lora_alpha: LoRA adapters on the four projections.
        dtype: compute dtype.
    """

    heads: int
    head_dim: int
    out_dim: int | None = None
    qkv_bias: bool = False
    norm_groups: int | None = None
    norm_eps: float = 1e-5
    residual: bool = False
    rescale_output_factor: float = 1.0
    lora_rank: int = 0
    lora_alpha: float = 1.0
    dtype: jnp.dtype = jnp.float32

    def _dense(self, features: int, bias: bool, name: str) -> LoRADense:
        return LoRADense(
            features,
            use_bias=bias,
            lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha,
            dtype=self.dtype,
            name=name,
        )

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        """``x [b, t, c]`` or ``[b, h, w, c]``; ``context [b, s, c_ctx]`` or ``None``."""
        x = x.astype(self.dtype)
        shape = x.shape
        skip = x
        if x.ndim == 4 and self.norm_groups is not None:
            x = group_norm(x, groups=self.norm_groups, eps=self.norm_eps, name="group_norm")
        tokens = x.reshape(shape[0], -1, shape[-1])
        source = tokens if context is None else context.astype(self.dtype)
        inner = self.heads * self.head_dim
        q = self._dense(inner, self.qkv_bias, "to_q")(tokens)
        k = self._dense(inner, self.qkv_bias, "to_k")(source)
        v = self._dense(inner, self.qkv_bias, "to_v")(source)
        out = _attend(q, k, v, self.heads)
        out = self._dense(self.out_dim or shape[-1], True, "to_out_0")(out)
        out = out.reshape(*shape[:-1], out.shape[-1])
        if self.residual:
            out = out + skip
        return out / self.rescale_output_factor


class FeedForward(nn.Module):
    """GEGLU feed-forward: ``net_2(a * gelu(g))`` with ``[a, g] = net_0/proj(x)``.

    Attributes:
        mult: hidden width multiplier (inner width ``mult * channels``).
        dropout: dropout rate after the gate.
        dtype: compute dtype.
    """

    mult: int = 4
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        """``[b, t, c]`` -> ``[b, t, c]``."""
        dim = x.shape[-1]
        inner = self.mult * dim
        h = _GEGLU(inner, dtype=self.dtype, name="net_0")(x)
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        return nn.Dense(dim, dtype=self.dtype, name="net_2")(h)


class _GEGLU(nn.Module):
    """``a * gelu(g)`` with ``[a, g]`` = ``proj(x)`` split on channels (exact erf GELU)."""

    inner: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        a, g = jnp.split(nn.Dense(2 * self.inner, dtype=self.dtype, name="proj")(x), 2, axis=-1)
        return a * nn.gelu(g.astype(jnp.float32), approximate=False).astype(a.dtype)


def _layer_norm(x: jax.Array, name: str) -> jax.Array:
    norm = nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, use_fast_variance=False, name=name)
    return norm(x.astype(jnp.float32)).astype(x.dtype)


class BasicTransformerBlock(nn.Module):
    """``x += attn1(norm1 x)``; ``x += attn2(norm2 x, context)``; ``x += ff(norm3 x)``.

    Attributes:
        heads, head_dim: attention layout (``heads * head_dim`` = channels).
        dropout: feed-forward dropout.
        lora_rank, lora_alpha: LoRA adapters on the attention projections.
        dtype: compute dtype.
    """

    heads: int
    head_dim: int
    dropout: float = 0.0
    lora_rank: int = 0
    lora_alpha: float = 1.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, context: jax.Array | None, deterministic: bool = True
    ) -> jax.Array:
        """``x [b, t, c]``, ``context [b, s, c_ctx]`` -> ``[b, t, c]``."""
        kw = dict(
            heads=self.heads,
            head_dim=self.head_dim,
            lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha,
            dtype=self.dtype,
        )
        x = x + Attention(**kw, name="attn1")(_layer_norm(x, "norm1"))
        x = x + Attention(**kw, name="attn2")(_layer_norm(x, "norm2"), context)
        ff = FeedForward(dropout=self.dropout, dtype=self.dtype, name="ff")
        return x + ff(_layer_norm(x, "norm3"), deterministic)


class Transformer2D(nn.Module):
    """Spatial transformer: ``x + proj_out(blocks(proj_in(GroupNorm(x))))`` on pixels.

    ``proj_in``/``proj_out`` are per-pixel linear maps (diffusers stores them as 1x1
    convolutions unless ``use_linear_projection``; the importer reshapes).

    Attributes:
        heads, head_dim: attention layout (``heads * head_dim`` = channels).
        depth: number of :class:`BasicTransformerBlock`.
        norm_groups: GroupNorm groups (epsilon 1e-6, as diffusers).
        dropout: feed-forward dropout.
        use_checkpointing: rematerialise each transformer block.
        lora_rank, lora_alpha: LoRA adapters on projections and attention.
        dtype: compute dtype.
    """

    heads: int
    head_dim: int
    depth: int = 1
    norm_groups: int = 32
    dropout: float = 0.0
    use_checkpointing: bool = False
    lora_rank: int = 0
    lora_alpha: float = 1.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, context: jax.Array | None, deterministic: bool = True
    ) -> jax.Array:
        """``x [b, h, w, c]``, ``context [b, s, c_ctx]`` -> ``[b, h, w, c]``."""
        b, hh, ww, c = x.shape
        x = x.astype(self.dtype)
        lora = dict(lora_rank=self.lora_rank, lora_alpha=self.lora_alpha, dtype=self.dtype)
        h = group_norm(x, groups=self.norm_groups, eps=1e-6, name="norm")
        h = LoRADense(self.heads * self.head_dim, **lora, name="proj_in")(h)
        h = h.reshape(b, hh * ww, -1)
        block_cls = BasicTransformerBlock
        if self.use_checkpointing:
            block_cls = nn.remat(BasicTransformerBlock, static_argnums=(3,))
        for i in range(self.depth):
            h = block_cls(
                self.heads,
                self.head_dim,
                self.dropout,
                self.lora_rank,
                self.lora_alpha,
                self.dtype,
                name=f"transformer_blocks_{i}",
            )(h, context, deterministic)
        h = h.reshape(b, hh, ww, -1)
        h = LoRADense(c, **lora, name="proj_out")(h)
        return h + x
