"""Argument checks shared by the minibatch pairing and the sliced OT entry points.

Numbers that may be traced (``epsilon``, ``step_size``, weights) are checked at once when
concrete (clear ``ValueError``/``TypeError`` naming the field); when traced, the same
condition is returned as a boolean array so the caller can report it in its result.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._validation import check_finite_array, check_real, concrete_value

__all__ = ["check_points", "positive_scalar", "real_dtype_or_raise", "weights"]


def real_dtype_or_raise(field: str, arr: jax.Array) -> None:
    """Raise ``TypeError`` unless ``arr`` holds real floating or integer (not bool) values."""
    if arr.dtype == jnp.bool_ or not (
        jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
    ):
        raise TypeError(
            f"{field} must be a real floating (or integer) array, got dtype {arr.dtype}"
        )


def _as_array(field: str, value) -> jax.Array:
    if value is None or isinstance(value, str | bytes):
        raise TypeError(f"{field} must be a real array, got {type(value).__name__}: {value!r:.80}")
    try:
        arr = jnp.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{field} must be a real array, got {type(value).__name__}") from err
    real_dtype_or_raise(field, arr)
    return arr


def check_points(field: str, value, min_ndim: int, max_ndim: int | None = None) -> jax.Array:
    """``value`` as a real array ``[n, ...]`` with ``n >= 1`` (NaN/inf checked when concrete)."""
    arr = _as_array(field, value)
    ndim_ok = arr.ndim >= min_ndim and (max_ndim is None or arr.ndim <= max_ndim)
    if not ndim_ok or 0 in arr.shape:
        want = "[num_points, dim] (2-D)" if max_ndim == 2 else "[n, ...] (at least 1-D)"
        raise ValueError(f"{field} must have shape {want} with no empty axis, got {arr.shape}")
    check_finite_array(field, value)
    return arr


def positive_scalar(field: str, value, dtype) -> tuple[jax.Array, jax.Array]:
    """A finite scalar ``> 0`` as a ``dtype`` array, with a (possibly traced) ``ok`` flag.

    Raises:
      TypeError: not a real number (strings, bools, None, complex).
      ValueError: not a scalar, or a concrete value that is NaN, inf or ``<= 0``.
    """
    if isinstance(value, bool | np.bool_) or value is None or isinstance(value, str | bytes):
        raise TypeError(f"{field} must be a real number, got {type(value).__name__}: {value!r}")
    if isinstance(value, int | float | np.integer | np.floating):
        try:
            check_real(field, value, 0.0, strict=True)
        except OverflowError:  # an int too large for a float
            raise ValueError(f"{field}={value} is not allowed: {field} must be finite") from None
    arr = _as_array(field, value)
    if arr.ndim != 0:
        raise ValueError(f"{field} must be a scalar, got shape {arr.shape}")
    host = concrete_value(arr)
    if host is not None:
        check_real(field, float(host), 0.0, strict=True)
    arr = arr.astype(dtype)
    return arr, jnp.isfinite(arr) & (arr > 0)


def weights(field: str, value, size: int, dtype) -> tuple[jax.Array, jax.Array]:
    """Weights ``[size]`` normalised to sum 1, with a (possibly traced) ``ok`` flag.

    Weights must be finite, non-negative and have a positive total; concrete values are
    checked here (``ValueError``), traced ones are reported through ``ok``.
    """
    arr = _as_array(field, value)
    if arr.shape != (size,):
        raise ValueError(
            f"{field} must have shape [{size}] (one weight per point), got {arr.shape}"
        )
    host = concrete_value(arr)
    if host is not None:
        if not np.all(np.isfinite(host)):
            raise ValueError(f"{field} has non-finite entries (NaN or inf); all must be finite")
        if np.any(host < 0):
            raise ValueError(f"{field} must be non-negative, got min {host.min()}")
        if host.sum() <= 0:
            raise ValueError(f"{field} must have a positive total, got sum {host.sum()}")
    arr = arr.astype(dtype)
    total = jnp.sum(arr)
    ok = jnp.all(jnp.isfinite(arr) & (arr >= 0)) & (total > 0)
    return arr / jnp.where(ok, total, 1.0), ok
