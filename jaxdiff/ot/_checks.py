"""Argument checks shared by the minibatch pairing and the sliced OT entry points.

Thin layers over :mod:`jaxdiff.ot.checks` (the OT-wide scalar and weight checks). Numbers
that may be traced (``epsilon``, ``step_size``, weights) are checked at once when
concrete (clear ``ValueError``/``TypeError`` naming the field); when traced, the same
condition is returned as a boolean array so the caller can report it in its result.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff._validation import check_finite_array
from jaxdiff.ot.checks import check_positive_scalar, check_weights

__all__ = ["check_points", "positive_scalar", "weights"]


def check_points(field: str, value, min_ndim: int, max_ndim: int | None = None) -> jax.Array:
    """``value`` as a real array ``[n, ...]`` with ``n >= 1`` (NaN/inf checked when concrete).

    Any number of trailing axes (batches of images for ``ot_pairs``); ``max_ndim=2`` asks
    for point clouds ``[num_points, dim]``. ``None``, strings and objects raise
    ``TypeError`` naming ``field`` (not JAX's conversion error).
    """
    if value is None or isinstance(value, str | bytes):
        raise TypeError(f"{field} must be a real array, got {type(value).__name__}: {value!r:.80}")
    try:
        arr = jnp.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{field} must be a real array, got {type(value).__name__}") from err
    if arr.dtype == jnp.bool_ or not (
        jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
    ):
        raise TypeError(
            f"{field} must be a real floating (or integer) array, got dtype {arr.dtype}"
        )
    ndim_ok = arr.ndim >= min_ndim and (max_ndim is None or arr.ndim <= max_ndim)
    if not ndim_ok or 0 in arr.shape:
        want = "[num_points, dim] (2-D)" if max_ndim == 2 else "[n, ...] (at least 1-D)"
        raise ValueError(f"{field} must have shape {want} with no empty axis, got {arr.shape}")
    check_finite_array(field, value)
    return arr


def positive_scalar(field: str, value, dtype) -> tuple[jax.Array, jax.Array]:
    """A finite scalar ``> 0`` as a ``dtype`` array, with a (possibly traced) ``ok`` flag.

    Concrete values are checked by :func:`jaxdiff.ot.checks.check_positive_scalar`
    (``TypeError`` for strings, bools, None; ``ValueError`` for NaN, inf, ``<= 0``).
    """
    arr = jnp.asarray(check_positive_scalar(field, value), dtype=dtype)
    return arr, jnp.isfinite(arr) & (arr > 0)


def weights(field: str, value, size: int, dtype) -> tuple[jax.Array, jax.Array]:
    """Weights ``[size]`` normalised to sum 1, with a (possibly traced) ``ok`` flag.

    Weights must be finite, non-negative and have a positive total; concrete values are
    checked by :func:`jaxdiff.ot.checks.check_weights` (``ValueError``), traced ones are
    reported through ``ok``.
    """
    arr = check_weights(field, value, size, dtype, balanced=False)
    total = jnp.sum(arr)
    ok = jnp.all(jnp.isfinite(arr) & (arr >= 0)) & (total > 0)
    return arr / jnp.where(ok, total, 1.0), ok
