"""Fields and helpers shared by the discrete-schedule sampling methods.

:class:`DiscreteMethod` carries what DDPM, DDIM, DPM-Solver, Euler and Heun have in
common: the number of inference steps and their spacing (static), the prediction type
(static), and the x0 post-processing (``clip_sample`` / dynamic ``thresholding``, whose
switches are static and whose numbers are traced). Subclasses add their own knobs and
implement ``plan``, ``init_state``, ``scale_model_input`` and ``step``
(see :mod:`jaxdiff.samplers.driver`).
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._validation import check_bool, check_choice, check_int_range, is_concrete
from jaxdiff.samplers.prediction import PREDICTION_TYPES, clip_or_threshold, to_x0_eps
from jaxdiff.schedules.checks import MAX_TIMESTEPS, check_number
from jaxdiff.schedules.discrete import DiscreteSchedule
from jaxdiff.schedules.flow import FlowSchedule
from jaxdiff.schedules.spacing import TIMESTEP_SPACINGS, spaced_timesteps

__all__ = ["DiscreteMethod", "check_flags", "check_knob", "set_choice"]


def set_choice(method, field: str, choices) -> None:
    """Store ``method.<field>`` as its lower-case canonical name, or raise listing choices.

    Used in ``__post_init__`` of the frozen method configs (names are static fields, so
    they are always concrete); ``"EPSILON"`` becomes ``"epsilon"``.
    """
    object.__setattr__(method, field, check_choice(field, getattr(method, field), choices))


def check_flags(method, *fields: str) -> None:
    """Raise ``TypeError`` unless each named static field of ``method`` is a real bool."""
    for field in fields:
        check_bool(field, getattr(method, field))


def check_knob(method, field: str, **bounds) -> None:
    """Check a traced numeric field of a method config (see ``check_number``).

    Strings and bools always raise. Python and NumPy numbers (what a user writes) are
    range-checked. JAX arrays are checked for a real dtype only: JAX transformations
    rebuild the config from arrays that are not knob values (``jax.grad`` cotangents,
    ``tree_map`` results, zeros), and tracers and placeholders pass.
    """
    value = getattr(method, field)
    if isinstance(value, jax.Array):
        if is_concrete(value) and not jnp.issubdtype(value.dtype, jnp.number):
            raise TypeError(f"{field} must be a real number, got an array of dtype {value.dtype}")
        return
    check_number(field, value, placeholders=True, **bounds)


@struct.dataclass
class DiscreteMethod:
    """Common configuration of discrete-schedule samplers.

    Attributes:
      num_inference_steps: number of denoising steps ``n`` (static).
      timestep_spacing: ``linspace``, ``leading`` or ``trailing`` (static).
      steps_offset: offset added to ``leading`` timesteps (static).
      prediction_type: what the model predicts (static); see
        :mod:`jaxdiff.samplers.prediction`.
      thresholding: dynamic thresholding of predicted x0 (static switch).
      clip_sample: clip predicted x0 to ``[-clip_sample_range, clip_sample_range]``
        (static switch).
      dynamic_thresholding_ratio: quantile for thresholding (traced).
      sample_max_value: upper bound of the threshold (traced).
      clip_sample_range: clipping bound (traced).

    Fields are checked at construction: static ones always (names are stored in lower
    case), traced ones whenever they are concrete (``0 < dynamic_thresholding_ratio <=
    1``, ``sample_max_value > 0``, ``clip_sample_range > 0``). Checks against the
    schedule (``num_inference_steps <= num_train_timesteps``) happen in :meth:`validate`.
    """

    num_inference_steps: int = struct.field(pytree_node=False, default=50)
    timestep_spacing: str = struct.field(pytree_node=False, default="leading")
    steps_offset: int = struct.field(pytree_node=False, default=0)
    prediction_type: str = struct.field(pytree_node=False, default="epsilon")
    thresholding: bool = struct.field(pytree_node=False, default=False)
    clip_sample: bool = struct.field(pytree_node=False, default=False)
    dynamic_thresholding_ratio: float = 0.995
    sample_max_value: float = 1.0
    clip_sample_range: float = 1.0

    # schedule classes this method can plan on (subclasses widen it)
    schedule_types: ClassVar[tuple] = (DiscreteSchedule,)

    def __post_init__(self):
        """Check every field that does not need the schedule (names canonicalised)."""
        check_int_range("num_inference_steps", self.num_inference_steps, 1, MAX_TIMESTEPS)
        check_int_range("steps_offset", self.steps_offset, 0)
        set_choice(self, "timestep_spacing", TIMESTEP_SPACINGS)
        set_choice(self, "prediction_type", PREDICTION_TYPES)
        check_flags(self, "thresholding", "clip_sample")
        check_knob(self, "dynamic_thresholding_ratio", low=0.0, low_open=True, high=1.0)
        check_knob(self, "sample_max_value", low=0.0, low_open=True)
        check_knob(self, "clip_sample_range", low=0.0, low_open=True)

    def validate(self, schedule) -> None:
        """Check the static fields against ``schedule``; raise naming the bad field."""
        if not isinstance(schedule, self.schedule_types):
            allowed = " or ".join(t.__name__ for t in self.schedule_types)
            raise TypeError(
                f"{type(self).__name__} needs a {allowed} as schedule, got "
                f"{type(schedule).__name__}"
            )
        check_int_range(
            "num_inference_steps", self.num_inference_steps, 1, schedule.num_train_timesteps
        )

    def spaced(self, schedule, **kwargs) -> np.ndarray:
        """Host float64 ``[n]`` descending timesteps for this method (see spacing)."""
        return spaced_timesteps(
            self.timestep_spacing,
            schedule.num_train_timesteps,
            self.num_inference_steps,
            steps_offset=self.steps_offset,
            **kwargs,
        )

    def check_prediction_for(self, schedule) -> None:
        """Raise when ``prediction_type`` is undefined on ``schedule``'s path.

        ``v_prediction`` needs a variance-preserving schedule; ``flow`` (velocity
        ``eps - x0``) needs a :class:`~jaxdiff.schedules.flow.FlowSchedule`.
        """
        flow = isinstance(schedule, FlowSchedule)
        if flow and self.prediction_type == "v_prediction":
            raise ValueError(
                "prediction_type='v_prediction' needs a variance-preserving "
                "schedule; on a FlowSchedule use flow, sample, epsilon or score"
            )
        if not flow and self.prediction_type == "flow":
            raise ValueError(
                "prediction_type='flow' (velocity eps - x0) needs a FlowSchedule "
                "(alpha = 1 - sigma); this is a DiscreteSchedule"
            )

    def process_x0(self, x0):
        """Clip or dynamically threshold a predicted ``x0`` as configured."""
        return clip_or_threshold(
            x0,
            thresholding=self.thresholding,
            clip_sample=self.clip_sample,
            ratio=self.dynamic_thresholding_ratio,
            max_value=self.sample_max_value,
            clip_range=self.clip_sample_range,
        )

    def predict(self, model_output, x, alpha, sigma):
        """``(x0, eps)`` from the model output with x0 clipped or thresholded.

        ``eps`` is the model's own noise estimate (before x0 post-processing), as in
        diffusers; methods that want it recomputed from the processed x0 do so.
        """
        x0, eps = to_x0_eps(model_output, x, alpha, sigma, self.prediction_type)
        return self.process_x0(x0), eps
