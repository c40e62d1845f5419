"""Checks of numbers that may be traced: schedule parameters and method knobs.

Schedule numbers (``beta_start``, ``shift``, ``sigma_max`` ...) and method knobs
(``eta``, ``snr`` ...) are pytree leaves: inside ``jit``/``vmap`` they are tracers whose
values are unknown, and while JAX maps over a pytree it rebuilds it with non-numeric
placeholders (``None``, ``object()``). :func:`check_number` checks a value whenever it is
a concrete number, lets tracers (and, where asked, placeholders) through, and always
rejects strings and bools given for numbers (``eta='0.5'`` is a ``TypeError``, not a
coercion). :data:`MAX_TIMESTEPS` caps the sizes that allocate one entry per step.
"""

from __future__ import annotations

import numpy as np

from jaxdiff._validation import check_int_range, is_concrete

__all__ = ["MAX_TIMESTEPS", "check_number", "check_timesteps"]

# Largest number of (training or sampling) timesteps a schedule or plan may allocate:
# 2**24 steps are 64 MiB per float32 array (a schedule keeps a few). Larger requests
# (e.g. 10**10, which used to abort the process inside the runtime) are refused before
# anything is allocated.
MAX_TIMESTEPS = 2**24


def check_timesteps(field: str, value) -> int:
    """``value`` as an int in ``[1, MAX_TIMESTEPS]``, or raise naming ``field``."""
    value = check_int_range(field, value, 1)
    if value > MAX_TIMESTEPS:
        raise ValueError(
            f"{field}={value} is too large: it would allocate {value} entries per schedule "
            f"array ({value * 4 / 2**30:.1f} GiB in float32); allowed: 1 <= {field} <= "
            f"{MAX_TIMESTEPS}"
        )
    return value


def _is_number_like(value) -> bool:
    import jax

    return isinstance(value, int | float | np.ndarray | np.generic | jax.Array)


def check_number(
    field: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
    placeholders: bool = False,
) -> None:
    """Raise unless ``value`` is a real number (or array) with entries in the given range.

    Args:
      field: the argument name, for the message.
      value: a Python number, NumPy or JAX array (every entry is checked), or a tracer.
      low: lower bound (None: unbounded).
      high: upper bound (None: unbounded).
      low_open: exclude ``low`` itself.
      high_open: exclude ``high`` itself.
      allow_inf: accept ``+-inf`` (NaN never passes).
      placeholders: let non-numeric objects through (for pytree fields, which JAX
        rebuilds with placeholders); otherwise they raise ``TypeError``.

    Raises:
      TypeError: a string, a bool, a non-real array, or (without ``placeholders``)
        another non-numeric object.
      ValueError: a concrete entry that is NaN, infinite (unless ``allow_inf``) or out
        of range.
    """
    if isinstance(value, str | bytes | bool | np.bool_):
        raise TypeError(f"{field} must be a real number, got {type(value).__name__}: {value!r}")
    if not is_concrete(value):
        return
    if not _is_number_like(value):
        if placeholders:
            return
        raise TypeError(f"{field} must be a real number, got {type(value).__name__}: {value!r}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{field} must be a real number, got an array of dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = np.isnan(arr) | (~np.isfinite(arr) if not allow_inf else False)
    if low is not None:
        bad = bad | ((arr <= low) if low_open else (arr < low))
    if high is not None:
        bad = bad | ((arr >= high) if high_open else (arr > high))
    if np.any(bad):
        lo = "" if low is None else f"{low} {'<' if low_open else '<='} "
        hi = "" if high is None else f" {'<' if high_open else '<='} {high}"
        finite = "" if allow_inf else " and finite"
        shown = value if arr.ndim == 0 else f"<array with entries in [{arr.min()}, {arr.max()}]>"
        raise ValueError(f"{field}={shown} is not allowed: {lo}{field}{hi}{finite}, not NaN")
