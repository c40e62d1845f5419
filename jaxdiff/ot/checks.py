"""Argument checks of the OT entry points: positive scalars that may be traced, weights.

Numbers arrive as Python/NumPy scalars (checked here, clear errors) or as JAX scalars;
a traced scalar (inside ``jit``/``vmap``/``grad``) keeps its value unknown, so only its
shape and dtype are checked and its value is reported in the result instead
(DESIGN.md, convention 9).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._validation import check_finite_array, check_real, concrete_value

__all__ = [
    "check_fraction",
    "check_positive_scalar",
    "check_weights",
    "normalized_weights",
    "positive_scalar",
]


def check_positive_scalar(field: str, value, high: float | None = None):
    """``value`` as a finite float in ``(0, high)``, or a traced real scalar unchanged.

    Raises:
        TypeError: not a real number or real scalar array (strings, bools, None).
        ValueError: not a scalar, or (when concrete) not finite, ``<= 0`` or ``>= high``.
    """
    if isinstance(value, bool | np.bool_) or not (
        isinstance(value, int | float | np.integer | np.floating | np.ndarray | jax.Array)
    ):
        raise TypeError(f"{field} must be a real number, got {type(value).__name__}: {value!r}")
    dtype = value.dtype if isinstance(value, np.ndarray | jax.Array) else None
    if dtype is not None:
        if dtype == np.bool_ or not jnp.issubdtype(dtype, jnp.number):
            raise TypeError(f"{field} must be a real number, got an array of dtype {dtype}")
        if jnp.ndim(value) != 0:
            raise ValueError(f"{field} must be a scalar, got shape {jnp.shape(value)}")
        host = concrete_value(value)
        if host is None:
            return value
        value = float(host)
    value = check_real(field, value, 0.0, strict=True)
    if high is not None and value >= high:
        raise ValueError(f"{field}={value} is out of range; allowed: 0 < {field} < {high}")
    return value


def check_fraction(field: str, value) -> float:
    """A Python number in ``(0, 1]`` (static settings such as ``tau_a``)."""
    value = check_real(field, value, 0.0, strict=True)
    if value > 1.0:
        raise ValueError(f"{field}={value} is out of range; allowed: 0 < {field} <= 1")
    return value


def check_weights(field: str, value, size: int, dtype, balanced: bool) -> jax.Array:
    """``[size]`` non-negative weights (uniform when None); mass checked when concrete."""
    if value is None:
        return jnp.full((size,), 1.0 / size, dtype=dtype)
    if isinstance(value, str):
        raise TypeError(f"{field} must be a real array of shape [{size}], got a str")
    arr = jnp.asarray(value)
    if arr.dtype == jnp.bool_ or not (
        jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
    ):
        raise TypeError(f"{field} must be a real floating array, got {arr.dtype}")
    if arr.shape != (size,):
        raise ValueError(f"{field} must have shape [{size}] (one per point), got {arr.shape}")
    check_finite_array(field, value)
    host = concrete_value(value)
    if host is not None:
        if np.any(host < 0):
            raise ValueError(f"{field} must be non-negative, got min {host.min()}")
        if host.sum() <= 0:
            raise ValueError(f"{field} must have positive total mass, got {host.sum()}")
        if balanced and not np.isclose(host.sum(), 1.0, rtol=0, atol=1e-5):
            raise ValueError(
                f"{field} must sum to 1 for a balanced problem (tau_a = tau_b = 1), "
                f"got sum {host.sum()}"
            )
    return arr.astype(dtype)


def positive_scalar(field: str, value, dtype) -> tuple[jax.Array, jax.Array]:
    """A finite scalar ``> 0`` as a ``dtype`` array, with a (possibly traced) ``ok`` flag.

    Concrete values are checked by :func:`check_positive_scalar` (``TypeError`` for
    strings, bools, None; ``ValueError`` for NaN, inf, ``<= 0``).
    """
    arr = jnp.asarray(check_positive_scalar(field, value), dtype=dtype)
    return arr, jnp.isfinite(arr) & (arr > 0)


def normalized_weights(field: str, value, size: int, dtype) -> tuple[jax.Array, jax.Array]:
    """Weights ``[size]`` normalised to sum 1, with a (possibly traced) ``ok`` flag.

    Weights must be finite, non-negative and have a positive total; concrete values are
    checked by :func:`check_weights` (``ValueError``), traced ones are reported through
    ``ok``.
    """
    arr = check_weights(field, value, size, dtype, balanced=False)
    total = jnp.sum(arr)
    ok = jnp.all(jnp.isfinite(arr) & (arr >= 0)) & (total > 0)
    return arr / jnp.where(ok, total, 1.0), ok
