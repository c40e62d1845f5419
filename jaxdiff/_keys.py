"""PRNG keys at the API boundary: typed keys, legacy ``uint32[2]`` keys, per-example keys.

Every stochastic public function takes ``key`` first (DESIGN.md, convention 3) and turns
it into a typed key here, so ``key=None``, ``key=0`` or a float array fail with one clear
message instead of deep inside JAX.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["as_key", "example_keys", "is_typed_key"]


def is_typed_key(value) -> bool:
    """True for a typed ``jax.random.key`` array (any shape)."""
    return isinstance(value, jax.Array) and jnp.issubdtype(value.dtype, jax.dtypes.prng_key)


def as_key(key, field: str = "key") -> jax.Array:
    """``key`` as a typed key array of the same batch shape.

    Accepts typed keys (any shape) and legacy raw keys (``uint32`` arrays whose last axis
    is 2, from ``jax.random.PRNGKey``), which are wrapped.

    Raises:
      TypeError: anything else (``None``, ints, floats, strings), naming ``field``.
    """
    if is_typed_key(key):
        return key
    raw = isinstance(key, jax.Array | np.ndarray) and key.dtype == np.uint32
    if raw and key.shape[-1:] == (2,):
        return jax.random.wrap_key_data(jnp.asarray(key))
    raise TypeError(
        f"{field} must be a jax.random.key (or a legacy uint32[..., 2] PRNGKey), got "
        f"{type(key).__name__}: {key!r:.80}"
    )


def example_keys(key, batch_size: int, field: str = "key") -> jax.Array:
    """``[batch_size]`` per-example keys: ``split(key, batch_size)`` for one key, else ``key``.

    With per-example keys, example ``i``'s randomness depends on its own key only, so it
    is the same whatever else is in its batch and whatever the batch size.

    Raises:
      TypeError: not a key (see :func:`as_key`).
      ValueError: a key array whose shape is neither ``()`` nor ``[batch_size]``.
    """
    key = as_key(key, field)
    if key.ndim == 0:
        return jax.random.split(key, batch_size)
    if key.shape != (batch_size,):
        raise ValueError(
            f"{field} must be one key or [{batch_size}] per-example keys, got shape {key.shape}"
        )
    return key
