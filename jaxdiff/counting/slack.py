"""Slack ("M") samplers of the Skellam bridges.

A bridge between counts ``x0`` and ``x1`` needs ``N = |x1 - x0| + 2 M`` jumps: ``|x1 - x0|``
net ones and ``M`` birth-death pairs that cancel. A slack sampler draws ``M >= 0`` per
entry, called as ``sampler(key, abs_diff, w)`` with ``abs_diff = |x1 - x0|`` (int array)
and ``w`` the schedule weight (``w(1) = 1`` in the forward bridge, ``w(t)`` at the current
time in the reverse step), as in Counting Flows (github.com/njwfish/counting_flows,
``bridges/cupy/slack_samplers.py``).

* ``ConstantM(m)``: ``round(m * w)``.
* ``BesselM(lam_p, lam_m)``: the exact conditional slack of a Skellam process with birth
  and death intensities ``lam_p * w`` and ``lam_m * w``, i.e. ``Bessel(|d|, 2 w
  sqrt(lam_p lam_m))`` (the smaller Poisson count given the difference).
* ``PoissonM(lam_p, lam_m)``: ``Poisson(2 sqrt(lam_p lam_m) * w)``, ignoring ``abs_diff``.
  The original's (numpy-only) ``PoissonM`` has no ``w``; scaling by ``w`` matches the two
  others and changes nothing in the forward bridge, where ``w = 1``.

Every size (``m``, ``lam_p``, ``lam_m``) must be at most ``MAX_COUNT = 2**24``, the range of
the counts (larger ones would saturate the int32 slack or leave the float32-exact range);
the bridges report the slack they actually drew through their jump counts
(``CountingSampleOutput.max_count``).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from jaxdiff._validation import check_real
from jaxdiff.counting.random import MAX_COUNT, bessel, poisson

__all__ = ["BesselM", "ConstantM", "PoissonM"]


def _check_size(field: str, value) -> float:
    """``value`` as a float in ``[0, MAX_COUNT]`` (finite; no strings or bools)."""
    value = check_real(field, value, 0.0)
    if value > MAX_COUNT:
        raise ValueError(
            f"{field}={value} is too large: the slack must stay within the count range "
            f"0 <= {field} <= 2**24 = {MAX_COUNT}"
        )
    return value


@dataclasses.dataclass(frozen=True)
class ConstantM:
    """Deterministic slack ``round(m * w)`` (``0 <= m <= 2**24``); the key is unused.

    Call: ``(key, abs_diff [..], w [float, broadcastable]) -> int32 [..]``.
    """

    m: float

    def __post_init__(self):
        _check_size("m", self.m)

    def __call__(self, key, abs_diff, w):
        """Slack ``M`` int32 of the broadcast shape of ``abs_diff`` and ``w``."""
        del key
        w = jnp.asarray(w, jnp.result_type(float))
        shape = jnp.broadcast_shapes(jnp.shape(abs_diff), w.shape)
        return jnp.broadcast_to(jnp.round(self.m * w), shape).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class _BirthDeathRates:
    """The birth and death rates ``lam_p``, ``lam_m`` (in ``[0, 2**24]``) of a slack law."""

    lam_p: float
    lam_m: float

    def __post_init__(self):
        _check_size("lam_p", self.lam_p)
        _check_size("lam_m", self.lam_m)


@dataclasses.dataclass(frozen=True)
class PoissonM(_BirthDeathRates):
    """Slack ``M ~ Poisson(2 sqrt(lam_p lam_m) w)`` independent of the difference."""

    def __call__(self, key, abs_diff, w):
        """Slack ``M`` int32 of the broadcast shape of ``abs_diff`` and ``w``."""
        w = jnp.asarray(w, jnp.result_type(float))
        shape = jnp.broadcast_shapes(jnp.shape(abs_diff), w.shape)
        rate = jnp.broadcast_to(2.0 * math.sqrt(self.lam_p * self.lam_m) * w, shape)
        return poisson(key, rate)


@dataclasses.dataclass(frozen=True)
class BesselM(_BirthDeathRates):
    """Slack ``M ~ Bessel(abs_diff, 2 w sqrt(lam_p lam_m))``, exact (see ``random.bessel``)."""

    def __call__(self, key, abs_diff, w):
        """Slack ``M`` int32 of the broadcast shape of ``abs_diff`` and ``w``."""
        w = jnp.asarray(w, jnp.result_type(float))
        return bessel(key, self.lam_p * w, self.lam_m * w, abs_diff)
