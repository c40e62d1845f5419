"""Weight schedules ``w(t)`` of the Skellam bridges: monotone maps ``[0, 1] -> [0, 1]``.

``w(t)`` is the fraction of the bridge's jumps (births + deaths between ``x0`` at ``t = 0``
and ``x1`` at ``t = 1``) already realised at time ``t``: ``N_t ~ Binomial(N_1, w(t))``.
Shapes follow Counting Flows (github.com/njwfish/counting_flows,
``bridges/*/scheduling.py``): ``linear``, ``cosine``, ``early_dense`` (``t**(1/c)``),
``late_dense`` (``t**c``) and ``sigmoid``.

Differences from the original, on purpose:

* the original ``make_weight_schedule(K, schedule_type="linear", **kw)`` is called as
  ``make_weight_schedule(schedule_type, **kw)``, so the name lands in ``K`` and every
  bridge silently uses ``linear``; here the name really selects the schedule;
* the original drops ``concentration`` / ``steepness``; here they are honoured;
* ``sigmoid`` is rescaled to hit 0 and 1 exactly at the ends (the raw logistic gives
  ``w(0) ~ 0.007``, which would break the bridge endpoints).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from jaxdiff._validation import check_choice, check_real

__all__ = ["SCHEDULE_TYPES", "WeightSchedule", "make_weight_schedule"]

SCHEDULE_TYPES = ("linear", "cosine", "early_dense", "late_dense", "sigmoid")
_KWARGS = {"early_dense": ("concentration",), "late_dense": ("concentration",)}
_KWARGS["sigmoid"] = ("steepness",)


@dataclasses.dataclass(frozen=True)
class WeightSchedule:
    """A weight schedule ``w(t)``; hashable, so it can be a static jit argument.

    Attributes:
        schedule_type: one of ``SCHEDULE_TYPES``.
        concentration: exponent ``c > 0`` of ``early_dense`` / ``late_dense``.
        steepness: slope ``s > 0`` of ``sigmoid``.
    """

    schedule_type: str = "linear"
    concentration: float = 2.0
    steepness: float = 10.0

    def __call__(self, t):
        """``w(t)`` for ``t`` in ``[0, 1]`` (any shape, float); ``w(0) = 0``, ``w(1) = 1``."""
        t = jnp.clip(jnp.asarray(t, jnp.result_type(float)), 0.0, 1.0)
        name = self.schedule_type
        if name == "linear":
            return t
        if name == "cosine":
            return 0.5 * (1.0 - jnp.cos(jnp.pi * t))
        if name == "early_dense":
            return t ** (1.0 / self.concentration)
        if name == "late_dense":
            return t**self.concentration
        s = self.steepness  # sigmoid, rescaled so that w(0) = 0 and w(1) = 1
        lo = 1.0 / (1.0 + math.exp(0.5 * s))
        hi = 1.0 / (1.0 + math.exp(-0.5 * s))
        return (1.0 / (1.0 + jnp.exp(-s * (t - 0.5))) - lo) / (hi - lo)


def make_weight_schedule(schedule_type: str = "linear", **kwargs) -> WeightSchedule:
    """Build a ``WeightSchedule`` by name.

    Args:
        schedule_type: one of ``SCHEDULE_TYPES`` (case-insensitive).
        **kwargs: ``concentration`` (``early_dense``, ``late_dense``) or ``steepness``
            (``sigmoid``), positive floats.

    Raises:
        ValueError: unknown name, or a parameter that is not finite and positive.
        TypeError: a keyword the chosen schedule does not take, or a parameter that is
            not a real number (strings, bools).
    """
    name = check_choice("schedule_type", schedule_type, SCHEDULE_TYPES)
    allowed = _KWARGS.get(name, ())
    for field in kwargs:
        if field not in allowed:
            raise TypeError(
                f"schedule_type={name!r} takes no keyword {field!r}; allowed: {list(allowed)}"
            )
    checked = {field: check_real(field, value, 0.0, strict=True) for field, value in kwargs.items()}
    return WeightSchedule(name, **checked)
