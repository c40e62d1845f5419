"""``broadcast_t``: a per-example time (or any per-example scalar) against a batch."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["broadcast_t"]


def broadcast_t(t, x):
    """Reshape a scalar or ``[B]`` array ``t`` to broadcast against ``x`` ``[B, ...]``.

    A scalar stays a scalar; ``[B]`` becomes ``[B, 1, ..., 1]`` with ``x.ndim`` axes.
    The dtype of ``t`` is kept.
    """
    t = jnp.asarray(t)
    return t.reshape(t.shape + (1,) * (jnp.ndim(x) - t.ndim))
