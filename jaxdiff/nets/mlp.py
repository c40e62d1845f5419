"""Time-conditioned MLPs for low-dimensional and count data (Flax linen).

Both networks follow the model contract ``model(x, t, context) -> prediction`` with
``x`` ``[batch, dim]`` (floats, or integer counts), ``t`` ``[batch]`` or a scalar
(discrete timestep or continuous time) and an optional ``context`` ``[batch, c]``.

- :class:`MLP`: ``[x, emb(t), context]`` concatenated, then ``depth`` dense layers.
- :class:`ResidualMLP`: pre-norm residual blocks (LayerNorm, Dense, SiLU, Dense) whose
  hidden state receives the time/context embedding additively, the toy-data denoiser
  of score_sde / Counting Flows style models.

The time embedding is :func:`~jaxdiff.nets.embeddings.sinusoidal_embedding` followed by
:class:`~jaxdiff.nets.embeddings.TimestepMLP`. Parameters are float32; ``dtype`` sets
the compute dtype (``None``: that of the inputs and parameters).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff.nets.embeddings import TimestepMLP, sinusoidal_embedding

__all__ = ["MLP", "ResidualMLP"]


def _prepare_inputs(x, t, log1p_inputs: bool, dtype):
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape [batch, dim], got {x.shape}")
    if log1p_inputs:  # counts: compress the dynamic range, sign-preserving
        xf = x.astype(jnp.float32)
        x = jnp.sign(xf) * jnp.log1p(jnp.abs(xf))
    if dtype is not None:
        x = x.astype(dtype)
    elif not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    t = jnp.asarray(t, jnp.float32)
    if t.ndim == 0:
        t = jnp.broadcast_to(t, (x.shape[0],))
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape [{x.shape[0]}], got {t.shape}")
    return x, t


class _Conditioning(nn.Module):
    """``TimestepMLP(sinusoidal(t * time_scale)) + Dense(context)`` -> ``[batch, dim]``."""

    dim: int
    time_scale: float
    dtype: jnp.dtype | None

    @nn.compact
    def __call__(self, t, context):
        emb = sinusoidal_embedding(t * self.time_scale, self.dim)
        emb = TimestepMLP(self.dim, dtype=self.dtype, name="time_mlp")(emb)
        if context is not None:
            context = jnp.asarray(context)
            if context.ndim != 2 or context.shape[0] != t.shape[0]:
                raise ValueError(f"context must have shape [{t.shape[0]}, c], got {context.shape}")
            c = context
            if self.dtype is not None:
                c = c.astype(self.dtype)
            elif not jnp.issubdtype(c.dtype, jnp.floating):
                c = c.astype(jnp.float32)
            emb = emb + nn.Dense(self.dim, dtype=self.dtype, name="context_proj")(c)
        return emb


def _inputs_and_embedding(module, depth_field: str, depth: int, x, t, context):
    """Checked inputs ``h`` ``[B, D]`` and the ``"cond"`` embedding, inside ``module``."""
    if depth < 1:
        raise ValueError(f"{depth_field} must be >= 1, got {depth}")
    h, t = _prepare_inputs(x, t, module.log1p_inputs, module.dtype)
    cond = _Conditioning(module.time_embed_dim, module.time_scale, module.dtype, name="cond")
    return h, cond(t, context)


class MLP(nn.Module):
    """Plain MLP denoiser on ``concat(x, emb(t), context)``.

    Attributes:
      hidden_dim: width of every hidden layer.
      depth: number of hidden layers (>= 1).
      out_dim: output width; ``None`` -> the input width (a prediction of ``x``'s shape).
      time_embed_dim: width of the time (+ context) embedding.
      time_scale: multiplies ``t`` before the sinusoids (use ~1000 for ``t`` in [0, 1]).
      activation: nonlinearity between layers.
      log1p_inputs: feed ``sign(x) log1p(|x|)`` (for counts) instead of ``x``.
      dtype: compute dtype; ``None`` follows the inputs and parameters (so a bf16
        cast of both, as ``mixed_precision="bf16"`` training does, computes in bf16).
    """

    hidden_dim: int = 128
    depth: int = 3
    out_dim: int | None = None
    time_embed_dim: int = 64
    time_scale: float = 1.0
    activation: Callable = nn.silu
    log1p_inputs: bool = False
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, context: jax.Array | None = None):
        """``x`` ``[B, D]``, ``t`` ``[B]`` or scalar, ``context`` ``[B, C]`` -> ``[B, out]``."""
        h, emb = _inputs_and_embedding(self, "depth", self.depth, x, t, context)
        h = jnp.concatenate([h, emb.astype(h.dtype)], axis=-1)
        for i in range(self.depth):
            h = self.activation(nn.Dense(self.hidden_dim, dtype=self.dtype, name=f"dense_{i}")(h))
        return nn.Dense(self.out_dim or x.shape[-1], dtype=self.dtype, name="out")(h)


class _ResidualBlock(nn.Module):
    hidden_dim: int
    activation: Callable
    dtype: jnp.dtype | None

    @nn.compact
    def __call__(self, h, emb):
        y = nn.LayerNorm(dtype=self.dtype, name="norm")(h)
        y = nn.Dense(self.hidden_dim, dtype=self.dtype, name="dense_1")(y)
        y = y + nn.Dense(self.hidden_dim, dtype=self.dtype, name="emb_proj")(emb)
        y = nn.Dense(self.hidden_dim, dtype=self.dtype, name="dense_2")(self.activation(y))
        return h + y


class ResidualMLP(nn.Module):
    """Residual MLP denoiser: input projection, ``num_blocks`` pre-norm blocks, output.

    Each block computes ``h + Dense(act(Dense(LN(h)) + Dense(emb)))`` with ``emb`` the
    time (+ context) embedding after a SiLU. The output layer starts at zero, so an
    untrained model predicts 0 (a stable start for epsilon / velocity targets).

    Attributes:
      hidden_dim: residual stream width.
      num_blocks: number of residual blocks (>= 1).
      out_dim: output width; ``None`` -> the input width.
      time_embed_dim: width of the time (+ context) embedding.
      time_scale: multiplies ``t`` before the sinusoids.
      activation: nonlinearity inside blocks.
      log1p_inputs: feed ``sign(x) log1p(|x|)`` (for counts) instead of ``x``.
      dtype: compute dtype; ``None`` follows the inputs and parameters.
    """

    hidden_dim: int = 128
    num_blocks: int = 3
    out_dim: int | None = None
    time_embed_dim: int = 64
    time_scale: float = 1.0
    activation: Callable = nn.silu
    log1p_inputs: bool = False
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, context: jax.Array | None = None):
        """``x`` ``[B, D]``, ``t`` ``[B]`` or scalar, ``context`` ``[B, C]`` -> ``[B, out]``."""
        h, emb = _inputs_and_embedding(self, "num_blocks", self.num_blocks, x, t, context)
        emb = nn.silu(emb).astype(h.dtype)
        h = nn.Dense(self.hidden_dim, dtype=self.dtype, name="in_proj")(h)
        for i in range(self.num_blocks):
            h = _ResidualBlock(self.hidden_dim, self.activation, self.dtype, name=f"block_{i}")(
                h, emb
            )
        h = nn.LayerNorm(dtype=self.dtype, name="out_norm")(h)
        out = nn.Dense(
            self.out_dim or x.shape[-1],
            dtype=self.dtype,
            kernel_init=nn.initializers.zeros,
            name="out",
        )
        return out(self.activation(h))
