"""Argument checks of the Skellam bridges (constructors, ``__call__`` and ``sample``).

Every check returns the checked value and changes nothing it is given. Shapes and dtypes
are always checked; values only where they are concrete (outside ``jit``): traced counts
are clipped to the documented range (never wrapped) and the samplers report the range in
their health (``CountingSampleOutput.in_range``).

Limits (documented, see ``jaxdiff.counting.random``): every count lies in
``[-MAX_COUNT, MAX_COUNT]`` with ``MAX_COUNT = 2**24``, the float32-exact integers;
``n_steps <= MAX_STEPS``; a returned trajectory takes at most ``MAX_TRAJECTORY_BYTES``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._validation import (
    check_bool,
    check_finite_array,
    check_int_range,
    concrete_value,
    is_concrete,
)
from jaxdiff.counting.random import MAX_COUNT
from jaxdiff.counting.schedules import make_weight_schedule

__all__ = [
    "MAX_STEPS",
    "MAX_TRAJECTORY_BYTES",
    "as_float_array",
    "bridge_options",
    "check_counts",
    "check_guidance",
    "check_model",
    "check_n_steps",
    "check_time_values",
]

MAX_STEPS = 10**6
MAX_TRAJECTORY_BYTES = 2**32  # 4 GiB of int32 states


def _host_array(field: str, value, what: str) -> np.ndarray | jax.Array:
    """``value`` as an array without a JAX dtype conversion (which could wrap int64)."""
    if value is None or isinstance(value, str | bytes):
        raise TypeError(f"{field} must be {what}, got {type(value).__name__}: {value!r:.60}")
    if isinstance(value, jax.Array):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{field} must be {what}, got {type(value).__name__} ({err})") from None


def check_counts(field: str, x, batch_shape=None) -> jax.Array:
    """``x`` as an int32 ``[batch, d]`` array of counts in ``[-MAX_COUNT, MAX_COUNT]``.

    Args:
        field: the argument's name (for messages).
        x: integer array-like ``[batch, d]`` (any integer dtype), ``batch, d >= 1``.
        batch_shape: the shape ``x`` must have, or None.

    Raises:
        TypeError: not an integer array (floats, bools, strings, None).
        ValueError: not 2-D, empty, another shape than ``batch_shape``, or (concrete
            values) a count outside the range; int64 counts are never wrapped to int32.
    """
    arr = _host_array(field, x, "an integer array of counts [batch, d]")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{field} must be an integer array (counts), got dtype {arr.dtype}")
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"{field} must have shape [batch, d] with batch, d >= 1, got {arr.shape}")
    if batch_shape is not None and arr.shape != tuple(batch_shape):
        raise ValueError(f"{field} has shape {arr.shape}, expected {tuple(batch_shape)}")
    if not is_concrete(arr):
        return jnp.clip(arr, -MAX_COUNT, MAX_COUNT).astype(jnp.int32)
    host = np.asarray(arr)  # on the host: jnp ops would be staged inside a jit trace
    lo, hi = int(host.min()), int(host.max())
    if lo < -MAX_COUNT or hi > MAX_COUNT:
        raise ValueError(
            f"{field} has counts in [{lo}, {hi}]; allowed: |count| <= 2**24 = {MAX_COUNT} "
            "(float32-exact integers)"
        )
    if isinstance(arr, jax.Array):
        return arr.astype(jnp.int32)
    return jnp.asarray(host.astype(np.int32))


def as_float_array(field: str, value) -> jax.Array:
    """``value`` (real numbers, not strings or bools) as a float JAX array."""
    arr = _host_array(field, value, "a real number or array")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{field} must be real numbers, got dtype {arr.dtype}: {value!r:.60}")
    check_finite_array(field, arr)
    return jnp.asarray(arr, jnp.result_type(float))


def check_time_values(t):
    """Raise if a concrete ``t`` has entries outside ``[0, 1]``; its host copy or None."""
    host = concrete_value(t)
    if host is not None and not np.all((host >= 0.0) & (host <= 1.0)):
        raise ValueError(f"t must lie in [0, 1]; got values in [{host.min()}, {host.max()}]")
    return host


def check_model(model) -> None:
    """Raise ``TypeError`` unless ``model`` is callable as ``(key, x_t, t, context)``."""
    if not callable(model) or isinstance(model, type):
        raise TypeError(f"model must be callable (key, x_t, t, context) -> x0, got {model!r:.60}")


def check_n_steps(n_steps, shape, return_trajectory) -> tuple[int, bool]:
    """``(n_steps, return_trajectory)`` checked against ``MAX_STEPS`` and the trajectory size."""
    n_steps = check_int_range("n_steps", n_steps, 1, MAX_STEPS)
    return_trajectory = check_bool("return_trajectory", return_trajectory)
    nbytes = (n_steps + 1) * int(np.prod(shape)) * 4
    if return_trajectory and nbytes > MAX_TRAJECTORY_BYTES:
        raise ValueError(
            f"return_trajectory=True with n_steps={n_steps} and x1 of shape {tuple(shape)} "
            f"needs {nbytes} bytes; at most {MAX_TRAJECTORY_BYTES} are allowed (use fewer "
            "steps or a smaller batch)"
        )
    return n_steps, return_trajectory


def check_guidance(guidance_x0, guidance_schedule, shape, n_steps):
    """``(guidance_x0 float [batch, d], schedule float [n_steps + 1])``, or ``(None, None)``."""
    if guidance_x0 is None:
        if guidance_schedule is not None:
            raise ValueError("guidance_schedule is given but guidance_x0 is None")
        return None, None
    if guidance_schedule is None:
        raise ValueError("guidance_schedule is required when guidance_x0 is given")
    gx0 = as_float_array("guidance_x0", guidance_x0)
    if gx0.shape != tuple(shape):
        raise ValueError(f"guidance_x0 has shape {gx0.shape}, expected {tuple(shape)}")
    gs = as_float_array("guidance_schedule", guidance_schedule)
    if gs.shape != (n_steps + 1,):
        raise ValueError(
            f"guidance_schedule must have shape ({n_steps + 1},) (n_steps + 1), got {gs.shape}"
        )
    return gx0, gs


def bridge_options(slack_sampler, schedule_type, delta, homogeneous_time, schedule_kwargs):
    """Check the constructor arguments every Skellam bridge shares.

    Returns:
        ``(slack_sampler, weight_schedule, delta, homogeneous_time)``.
    """
    if not callable(slack_sampler) or isinstance(slack_sampler, type):
        raise TypeError(
            f"slack_sampler must be callable (key, abs_diff, w), got {slack_sampler!r:.60}"
        )
    schedule = make_weight_schedule(schedule_type, **schedule_kwargs)
    return (
        slack_sampler,
        schedule,
        check_bool("delta", delta),
        check_bool("homogeneous_time", homogeneous_time),
    )
