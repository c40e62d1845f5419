"""Low-rank adapters (LoRA) for dense layers, and pure functions on parameter trees.

Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3.
A :class:`LoRADense` computes ``y = x W + b + (alpha / r) (x A) B`` with the frozen base
kernel ``W: [in, out]``, ``A: [in, r]`` (``lora_A``, small Gaussian) and ``B: [r, out]``
(``lora_B``, zeros), so a fresh adapter leaves the layer unchanged. The kernel layout
is Flax's ``[in, out]``: in the paper's ``[out, in]`` notation the update is
``(alpha / r) B A``.

The tree functions find adapters by their leaf names: a dict holding ``kernel``,
``lora_A`` and ``lora_B`` is one adapted layer.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "LoRADense",
    "init_adapters",
    "lora_trainable_mask",
    "merge_lora",
    "strip_lora",
    "unmerge_lora",
]

_LORA_LEAVES = ("lora_A", "lora_B")


class LoRADense(nn.Module):
    """``nn.Dense`` over the last axis, with an optional rank-``lora_rank`` adapter.

    Parameters: ``kernel [in, features]``, ``bias [features]`` (when ``use_bias``) and,
    when ``lora_rank > 0``, ``lora_A [in, lora_rank]`` and ``lora_B [lora_rank, features]``.

    Attributes:
        features: output width.
        use_bias: add a bias.
        lora_rank: adapter rank; 0 = plain dense layer.
        lora_alpha: adapter scale numerator (the update is scaled by ``alpha / rank``).
        dtype: compute dtype (parameters are float32).
    """

    features: int
    use_bias: bool = True
    lora_rank: int = 0
    lora_alpha: float = 1.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[..., in]`` -> ``[..., features]``."""
        fan_in = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (fan_in, self.features), jnp.float32
        )
        x = x.astype(self.dtype)
        y = x @ kernel.astype(self.dtype)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
            y = y + bias.astype(self.dtype)
        if self.lora_rank > 0:
            a = self.param(
                "lora_A",
                nn.initializers.normal(stddev=1.0 / self.lora_rank),
                (fan_in, self.lora_rank),
                jnp.float32,
            )
            b = self.param(
                "lora_B", nn.initializers.zeros, (self.lora_rank, self.features), jnp.float32
            )
            scale = self.lora_alpha / self.lora_rank
            y = y + scale * ((x @ a.astype(self.dtype)) @ b.astype(self.dtype))
        return y


def init_adapters(key: jax.Array, shapes: Mapping[tuple, tuple[int, ...]], rank: int) -> dict:
    """Fresh adapter leaves for existing base weights (e.g. imported ones).

    ``lora_A ~ N(0, 1 / rank^2)`` as :class:`LoRADense` initialises it, ``lora_B = 0``;
    all ``A`` entries come from one draw (one compilation, whatever the layer count).

    Args:
        key: PRNG key.
        shapes: ``{path: shape}`` for leaves whose path ends in ``lora_A`` or ``lora_B``.
        rank: adapter rank.

    Returns:
        ``{path: float32 array}``.
    """
    paths = sorted(p for p in shapes if p[-1] == "lora_A")
    sizes = [int(np.prod(shapes[p])) for p in paths]
    noise = np.asarray(jax.random.normal(key, (max(sum(sizes), 1),), jnp.float32)) / rank
    out, start = {}, 0
    for path, size in zip(paths, sizes, strict=True):
        out[path] = jnp.asarray(noise[start : start + size].reshape(shapes[path]))
        start += size
    for path, shape in shapes.items():
        if path[-1] == "lora_B":
            out[path] = jnp.zeros(shape, jnp.float32)
    return out


def _is_adapter(node) -> bool:
    return isinstance(node, Mapping) and "kernel" in node and all(k in node for k in _LORA_LEAVES)


def _map_adapters(params, fn):
    """Rebuild ``params`` (nested dicts) applying ``fn(node) -> node`` to adapted layers."""
    if _is_adapter(params):
        return fn(dict(params))
    if isinstance(params, Mapping):
        return {k: _map_adapters(v, fn) for k, v in params.items()}
    return params


def _delta(node, alpha: float) -> jax.Array:
    a, b = node["lora_A"], node["lora_B"]
    rank = a.shape[-1]
    return (alpha / rank) * (a @ b)


def merge_lora(params, *, alpha: float):
    """Fold every adapter into its base kernel: ``W <- W + (alpha / r) A B``.

    The adapters stay in the tree so :func:`unmerge_lora` can undo the merge; run the
    merged tree through a model *without* LoRA (``lora_rank=0``) after
    :func:`strip_lora`, or keep it for export.

    Args:
        params: a parameter tree (nested dicts) with ``lora_A``/``lora_B`` leaves.
        alpha: the model's ``lora_alpha`` (the rank is read from ``lora_A``'s shape).

    Returns:
        A new tree; the input is not modified.
    """

    def merge(node):
        node["kernel"] = node["kernel"] + _delta(node, alpha).astype(node["kernel"].dtype)
        return node

    return _map_adapters(params, merge)


def unmerge_lora(params, *, alpha: float):
    """Undo :func:`merge_lora`: ``W <- W - (alpha / r) A B`` (exact up to rounding)."""

    def unmerge(node):
        node["kernel"] = node["kernel"] - _delta(node, alpha).astype(node["kernel"].dtype)
        return node

    return _map_adapters(params, unmerge)


def strip_lora(params):
    """The tree without its ``lora_A``/``lora_B`` leaves (the base model's parameters)."""
    if isinstance(params, Mapping):
        return {k: strip_lora(v) for k, v in params.items() if k not in _LORA_LEAVES}
    return params


def lora_trainable_mask(params):
    """Boolean tree, ``True`` exactly at ``lora_A``/``lora_B`` leaves.

    Use with ``optax.masked`` (or ``optax.multi_transform``) to train only the adapters::

        tx = optax.chain(optax.masked(optax.adamw(1e-4), lora_trainable_mask(params)),
                         optax.masked(optax.set_to_zero(), not_mask))
    """

    def mark(tree, is_lora: bool):
        if isinstance(tree, Mapping):
            return {k: mark(v, is_lora or k in _LORA_LEAVES) for k, v in tree.items()}
        return is_lora

    return mark(params, False)
