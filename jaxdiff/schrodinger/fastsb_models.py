"""FastSB-OT's model contract: schedule names, the noise-to-score wrapper, the driver adapter.

``score_model(x, t)``: ``x`` float32 ``[B, ...]`` (any layout, passed untouched), ``t``
float32 ``[B]`` in ``[t_min, 1]`` (1 = noise); it returns the score ``grad log p_t(x)``
shaped like ``x``, or the noise ``eps`` (``x = alpha x0 + sigma eps``) when it has the
attribute ``predicts_noise = True``. :class:`NoisePredictorToScoreWrapper` turns a noise
predictor into a score model explicitly. The sampling driver calls
``model_fn(x, t, context)`` and needs it hashable (a static argument of the compiled
run); :class:`ScoreModelFn` adapts one to the other and checks the output's shape when
the run is traced.

:func:`make_schedule` maps the seed's schedule names onto jaxdiff's VP schedules. Where
it departs from the original (spec fastsb-ot section 2.8, M14): ``"linear"`` is the
original's ``ab(t)`` at its default ``num_timesteps = 1000`` (``beta_min = 0.1``,
``beta_max = 20``); the original scaled both by ``num_timesteps``, so the README's
``make_schedule(..., num_timesteps=config.num_timesteps)`` changed the schedule with the
step count, here ``num_timesteps`` is only the default number of steps. ``"cosine"`` is
clipped at ``max_beta = 999`` by rescaling time (the original's ``ab(1) ~ 3.7e-33`` makes
DDIM's first step divide by ``6e-17``). ``"quadratic"`` and ``"sigmoid"`` are refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jaxdiff._broadcast import broadcast_t
from jaxdiff.schedules import continuous
from jaxdiff.schedules.checks import check_number
from jaxdiff.schedules.continuous_base import ContinuousSchedule

__all__ = [
    "SCHEDULES",
    "NoisePredictorToScoreWrapper",
    "ScoreModelFn",
    "check_schedule",
    "make_schedule",
]

#: The seed's schedule names jaxdiff supports, and why the others are refused.
SCHEDULES = ("linear", "cosine")
_REFUSED = {
    "quadratic": "its beta(t) = N (b0 + (b1 - b0) t^2) is not a jaxdiff schedule yet",
    "sigmoid": "it interpolates a discrete cumprod linearly, so beta(t) jumps at every knot",
}


def make_schedule(name: str = "linear", num_timesteps: int = 1000, **kwargs) -> ContinuousSchedule:
    """The jaxdiff VP schedule for one of the seed's schedule names (see the module).

    Args:
      name: ``"linear"`` (kwargs ``beta_min``, ``beta_max``) or ``"cosine"`` (``s``,
        ``max_beta``); case-insensitive.
      num_timesteps: the schedule's default number of sampler steps (>= 1). The solver
        uses ``config.num_timesteps`` instead.
      **kwargs: the schedule's numbers.

    Raises:
      ValueError: another name (listing the supported ones) or a bad value.
    """
    if isinstance(name, str) and name.lower() in _REFUSED:
        raise ValueError(
            f"make_schedule({name!r}) is not supported: {_REFUSED[name.lower()]}; "
            f"supported: {list(SCHEDULES)} (or any jaxdiff ContinuousSchedule)"
        )
    if not isinstance(name, str) or name.lower() not in SCHEDULES:
        raise ValueError(f"name={name!r} is not a FastSB-OT schedule; supported: {list(SCHEDULES)}")
    return continuous.make_schedule(name.lower(), num_timesteps=num_timesteps, **kwargs)


@dataclasses.dataclass(frozen=True, eq=False)
class NoisePredictorToScoreWrapper:
    """A noise predictor ``eps(x, t)`` as a score model ``s(x, t) = -eps / sigma(t)``.

    ``sigma(t)`` is ``schedule.sigma(t)`` floored at ``sqrt(clamp)``: the original's two
    floors, ``sqrt(max(1 - ab, clamp))`` and ``max(sigma, 1e-4)``, are this one for
    ``clamp >= 1e-8``. ``x`` ``[B, ...]``, ``t`` ``[B]`` float32 (1 = noise); the result has
    ``eps``'s shape and dtype promoted with float32. Hashed by identity.

    Attributes:
      noise_model: ``noise_model(x, t) -> eps``, shaped like ``x``.
      schedule: the :class:`~jaxdiff.schedules.continuous_base.ContinuousSchedule` the
        model was trained on.
      clamp: floor of ``sigma^2``, in ``(0, 1)`` (default 1e-8, the original's).
    """

    noise_model: Any
    schedule: ContinuousSchedule
    clamp: float = 1e-8

    def __post_init__(self):
        if not callable(self.noise_model):
            raise TypeError(f"noise_model must be callable, got {type(self.noise_model).__name__}")
        check_schedule(self.schedule)
        check_number("clamp", self.clamp, low=0.0, high=1.0, low_open=True, high_open=True)

    def __call__(self, x, t):
        """The score ``-eps(x, t) / max(sigma(t), sqrt(clamp))`` at ``x`` ``[B, ...]``."""
        eps = self.noise_model(x, t)
        _check_output("noise_model", eps, x)
        sigma = jnp.maximum(self.schedule.sigma(t), jnp.sqrt(self.clamp))
        return -eps / broadcast_t(sigma, x)


def check_schedule(schedule) -> None:
    """Raise ``TypeError`` unless ``schedule`` is a jaxdiff continuous schedule."""
    if not isinstance(schedule, ContinuousSchedule):
        raise TypeError(
            "schedule must be a jaxdiff ContinuousSchedule (make_schedule('linear') ...), got "
            f"{type(schedule).__name__}"
        )


def _check_output(field: str, out, x) -> None:
    """Raise at trace time unless ``out`` is a floating array of ``x``'s shape."""
    if not hasattr(out, "shape") or not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{field} must return a floating array, got {type(out).__name__}")
    if tuple(out.shape) != tuple(x.shape):
        raise ValueError(
            f"{field} returned shape {tuple(out.shape)} for x of shape {tuple(x.shape)}; it must "
            "return an array of x's shape"
        )


@dataclasses.dataclass(frozen=True)
class ScoreModelFn:
    """``score_model(x, t)`` as the driver's hashable ``model_fn(x, t, context)``."""

    score_model: Any

    def __call__(self, x, t, context=None):
        """``score_model(x, t)``; ``context`` is unused (FastSB-OT has no conditioning)."""
        out = self.score_model(x, t)
        _check_output("score_model", out, x)
        return out
