"""Argument checks shared by every public entry point.

Each check raises ``ValueError`` or ``TypeError`` whose message names the field, the
value it received and what is allowed (DESIGN.md, convention 9).
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Iterable

import numpy as np

__all__ = [
    "check_bool",
    "check_choice",
    "check_finite_array",
    "check_int_range",
    "check_point_cloud",
    "check_real",
    "check_real_array",
    "check_unit_interval_array",
    "concrete_value",
    "did_you_mean",
    "is_concrete",
    "normalize_name",
]


def normalize_name(value) -> str:
    """Lower-case string of a name given as a string or an ``enum.Enum`` member."""
    if isinstance(value, enum.Enum):
        value = value.value
    if not isinstance(value, str):
        raise TypeError(f"expected a name (str or enum), got {type(value).__name__}: {value!r}")
    return value.lower()


def is_concrete(value) -> bool:
    """True when ``value``'s entries are known here (not a JAX tracer inside jit/vmap/grad)."""
    import jax

    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(value))


def concrete_value(value) -> np.ndarray | None:
    """``value`` as a float64 NumPy array, or None when it is traced (values unknown)."""
    if not is_concrete(value):
        return None
    return np.asarray(value, dtype=np.float64)


def check_bool(field: str, value) -> bool:
    """Return ``value`` if it is a real ``bool`` (or NumPy bool), else raise ``TypeError``.

    Strings such as ``"False"`` or ``"no"`` are truthy in Python; a flag that guards
    safety or changes behaviour must not be taken from them.
    """
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(
        f"{field} must be a bool (True or False), got {type(value).__name__}: {value!r}"
    )


def did_you_mean(value, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to ``value``, else ``""``."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(field: str, value, choices: Iterable[str]) -> str:
    """Return ``value`` normalised to lower case, or raise naming the allowed choices."""
    choices = list(choices)
    try:
        name = normalize_name(value)
    except TypeError:
        raise TypeError(
            f"{field} must be one of {sorted(choices)} (str or enum), got {value!r}"
        ) from None
    if name not in choices:
        raise ValueError(
            f"{field}={value!r} is not supported{did_you_mean(name, choices)}; "
            f"choose one of {sorted(choices)}"
        )
    return name


def check_int_range(field: str, value, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int in ``[low, high]``, or raise naming the bounds."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{field} must be an int, got {type(value).__name__}: {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{field}={value} is out of range; allowed: {lo} <= {field} <= {hi}")
    return int(value)


def check_real(field: str, value, low: float | None = None, *, strict: bool = False) -> float:
    """Return ``value`` as a finite float, ``> low`` (``strict``) or ``>= low``, or raise."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{field} must be a real number, got {type(value).__name__}: {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond the float range
        digits = len(str(abs(value)))
        raise ValueError(
            f"{field} (an integer of {digits} digits) is not allowed: {field} must be finite"
        ) from None
    bad_low = low is not None and (value <= low if strict else value < low)
    if not math.isfinite(value) or bad_low:
        rel = ">" if strict else ">="
        bound = "" if low is None else f" and {rel} {low}"
        raise ValueError(f"{field}={value} is not allowed: {field} must be finite{bound}")
    return value


def check_finite_array(field: str, value) -> None:
    """Raise if a concrete array has NaN or infinite entries (skipped for tracers)."""
    if not is_concrete(value):  # traced: values are checked in the result instead
        return
    arr = np.asarray(value)
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{field} has non-finite entries (NaN or inf); all must be finite")


def check_unit_interval_array(field: str, value, dtype):
    """``value`` as a non-empty 1-D ``dtype`` array with entries in ``(0, 1]``.

    Shape is always checked; entries only when ``value`` is concrete (not traced).
    Returns the array and, for concrete input, its float64 host copy (else None).
    """
    import jax.numpy as jnp

    arr = jnp.asarray(value, dtype=dtype)
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"{field} must be a non-empty 1-D array, got shape {arr.shape}")
    check_finite_array(field, value)
    host = concrete_value(value)
    if host is None:  # traced: cannot check values here
        return arr, None
    if np.any(host <= 0) or np.any(host > 1):
        raise ValueError(
            f"{field} entries must lie in (0, 1]; got range [{host.min()}, {host.max()}]"
        )
    return arr, host


def check_real_array(field: str, value, min_ndim: int = 1, max_ndim: int | None = None):
    """``value`` as a real JAX array ``[n, ...]`` with no empty axis (NaN/inf when concrete).

    ``min_ndim`` / ``max_ndim`` bound the rank (``2, 2`` asks for point clouds
    ``[num_points, dim]``).

    Raises:
        TypeError: None, strings, objects, ragged lists, bool or complex arrays.
        ValueError: a rank outside the bounds, an empty axis, or non-finite entries.
    """
    import jax.numpy as jnp  # the validation helpers above work on NumPy alone

    if value is None or isinstance(value, str | bytes):
        raise TypeError(f"{field} must be a real array, got {type(value).__name__}: {value!r:.80}")
    try:
        arr = jnp.asarray(value)
    except (TypeError, ValueError) as err:  # ragged lists, strings inside lists, objects
        raise TypeError(f"{field} must be a real array, got {type(value).__name__}") from err
    if arr.dtype == jnp.bool_ or not (
        jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
    ):
        raise TypeError(f"{field} must be a real floating (or integer) array, got {arr.dtype}")
    if arr.ndim < min_ndim or (max_ndim is not None and arr.ndim > max_ndim) or 0 in arr.shape:
        want = "[num_points, dim] (2-D)" if max_ndim == 2 else f"at least {min_ndim}-D"
        raise ValueError(f"{field} must have shape {want} with no empty axis, got {arr.shape}")
    check_finite_array(field, value)
    return arr


def check_point_cloud(field: str, value):
    """``value`` as a real ``[num_points, dim]`` JAX array (see :func:`check_real_array`)."""
    return check_real_array(field, value, 2, 2)
