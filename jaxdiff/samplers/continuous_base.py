"""The base config of the continuous-time samplers (PC, probability flow).

The samplers in :mod:`jaxdiff.samplers.pc` and :mod:`jaxdiff.samplers.probability_flow`
run on a :class:`~jaxdiff.schedules.continuous.ContinuousSchedule` through the one
driver (:mod:`jaxdiff.samplers.driver`). The model gets continuous time: ``model(x, t,
context)`` with ``t`` float32 ``[B]`` in ``[t_min, 1]`` and ``x`` the unscaled state
``x_t = alpha(t) x_0 + sigma(t) eps``. Its output is turned into the score with
``score = -eps / sigma(t)`` (Song et al. 2021, "Score-Based Generative Modeling through
SDEs", section 3.3; score_sde's ``get_score_fn``).

Time runs from ``t = 1`` (the prior, std ``schedule.prior_std``) down to ``t_min > 0``,
where the score is still finite.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from jaxdiff.samplers.base import check_flags, set_choice
from jaxdiff.samplers.prediction import to_x0_eps
from jaxdiff.schedules.checks import check_number, check_timesteps
from jaxdiff.schedules.continuous_base import ContinuousSchedule

__all__ = ["CONTINUOUS_PREDICTION_TYPES", "ContinuousMethod", "check_open_unit"]

CONTINUOUS_PREDICTION_TYPES = ("epsilon", "score", "v_prediction", "sample")


def check_open_unit(field: str, value) -> None:
    """Raise if a concrete ``value`` is not a real number in ``(0, 1)``.

    Tracers (``is_concrete`` is False) and the non-numeric placeholders JAX puts in
    pytrees while it maps over them are let through; strings and bools raise.
    """
    check_number(field, value, low=0.0, high=1.0, low_open=True, high_open=True, placeholders=True)


@struct.dataclass
class ContinuousMethod:
    """Common configuration of continuous-time samplers.

    Attributes:
      num_steps: number of time steps ``N`` (static); ``None`` uses the schedule's
        ``num_timesteps``.
      prediction_type: ``epsilon``, ``score``, ``v_prediction`` (VP schedules only) or
        ``sample`` (static).
      t_min: smallest time the model is evaluated at (traced), ``0 < t_min < 1``;
        score_sde's ``eps`` (default 1e-3).
      denoise_final: return the model's ``x0`` estimate at the end (static).
    """

    num_steps: int | None = struct.field(pytree_node=False, default=None)
    prediction_type: str = struct.field(pytree_node=False, default="epsilon")
    denoise_final: bool = struct.field(pytree_node=False, default=False)
    t_min: float = 1e-3

    def __post_init__(self):
        """Check every field that does not need the schedule (names canonicalised)."""
        if self.num_steps is not None:
            check_timesteps("num_steps", self.num_steps)
        set_choice(self, "prediction_type", CONTINUOUS_PREDICTION_TYPES)
        check_flags(self, "denoise_final")
        check_open_unit("t_min", self.t_min)

    def validate(self, schedule) -> int:
        """Check the static fields against ``schedule``; return the number of steps."""
        if not isinstance(schedule, ContinuousSchedule):
            raise TypeError(
                f"{type(self).__name__} needs a ContinuousSchedule (see "
                f"jaxdiff.schedules.continuous.make_schedule), got {type(schedule).__name__}"
            )
        n = schedule.num_timesteps if self.num_steps is None else self.num_steps
        if self.prediction_type == "v_prediction" and not schedule.variance_preserving:
            raise ValueError(
                f"prediction_type='v_prediction' needs a variance-preserving schedule; "
                f"the {schedule.kind!r} schedule is variance exploding (use epsilon, score "
                f"or sample)"
            )
        return int(n)

    def time_grid(self, num_points: int):
        """``[num_points]`` times from 1 down to ``t_min`` (``[1.]`` for one point)."""
        return jnp.linspace(1.0, jnp.asarray(self.t_min, jnp.float32), num_points)

    @staticmethod
    def schedule_rows(schedule, t) -> dict:
        """``{"alpha", "sigma", "f", "g2"}`` of ``schedule`` at the row times ``t`` ``[K]``."""
        return {
            "alpha": schedule.alpha(t),
            "sigma": schedule.sigma(t),
            "f": schedule.f(t),
            "g2": schedule.g2(t),
        }

    def scale_model_input(self, x, step):
        """Continuous-time models take ``x_t`` unscaled."""
        return x

    def predict(self, model_output, x, alpha, sigma):
        """``(x0, eps, score)`` implied by the model output at ``x = alpha x0 + sigma eps``."""
        x0, eps = to_x0_eps(model_output, x, alpha, sigma, self.prediction_type)
        return x0, eps, -eps / sigma
