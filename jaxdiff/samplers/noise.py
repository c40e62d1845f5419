"""The one place where sampling methods draw their noise, and the keys it comes from.

The driver splits the user's key once, before the scan, into one key per model call
(:func:`step_keys`); a method's ``step`` draws from its row's key with
:func:`normal_like`. Two key layouts:

* one key (shape ``()``): ``split(key, K)``, ``[K]``; step ``k`` draws
  ``normal(keys[k], x.shape)`` for the whole batch at once. This is the layout the
  diffusers-oracle tests reproduce (``tests/oracles.patch_noise``). Example ``i``'s
  noise depends on the batch size.
* per-example keys (shape ``[B]``): each key is split into its own ``K`` step keys,
  giving ``[K, B]``; step ``k`` draws ``normal(keys[k, i], x.shape[1:])`` for example
  ``i``. Example ``i``'s noise depends on its own key only, so a sample is the same
  whatever else is in its batch and whatever the batch size (what the easy API's
  out-of-memory halving and the service's request batching rely on).
"""

from __future__ import annotations

import jax

from jaxdiff._keys import as_key

__all__ = ["check_keys", "normal_like", "step_keys"]


def check_keys(key, batch_size: int) -> jax.Array:
    """``key`` as a typed key of shape ``()`` or ``[batch_size]``.

    Raises:
      TypeError: ``key`` is not a PRNG key (``None``, an int, a float array ...).
      ValueError: a key array of any other shape.
    """
    key = as_key(key, "key")
    if key.ndim != 0 and key.shape != (batch_size,):
        raise ValueError(
            f"key must be one key or [{batch_size}] per-example keys (the latents' batch "
            f"size), got a key array of shape {key.shape}"
        )
    return key


def step_keys(key, num_model_calls: int) -> jax.Array:
    """Per-call keys, split once before the scan: ``[K]`` for one key, ``[K, B]`` for ``[B]``.

    Args:
      key: one typed key, or ``[B]`` per-example typed keys.
      num_model_calls: ``K`` (static).
    """
    key = as_key(key, "key")
    if key.ndim == 0:
        return jax.random.split(key, num_model_calls)
    return jax.vmap(lambda k: jax.random.split(k, num_model_calls), out_axes=1)(key)


def normal_like(key, x) -> jax.Array:
    """Standard normal noise of ``x``'s shape and dtype from one row of :func:`step_keys`.

    Args:
      key: a key of shape ``()`` (one draw for the whole batch) or ``[B]`` (one draw of
        shape ``x.shape[1:]`` per example).
      x: ``[B, ...]`` the state the noise is added to.
    """
    if key.ndim == 0:
        return jax.random.normal(key, x.shape, x.dtype)
    return jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], x.dtype))(key)
