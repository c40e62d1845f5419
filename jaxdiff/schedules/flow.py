"""Rectified-flow / flow-matching noise schedule as a pytree.

Data and noise are joined by a straight line (Liu et al. 2023, "Flow Straight and
Fast", eq. 1; Lipman et al. 2023, "Flow Matching for Generative Modeling"):

    ``x_sigma = (1 - sigma) x_0 + sigma eps``,  so ``alpha = 1 - sigma``,

and a network predicts the velocity ``u = d x_sigma / d sigma = eps - x_0``
(prediction type ``flow``; see :mod:`jaxdiff.samplers.prediction`). Time ``t`` in
``[0, 1]`` maps to ``sigma`` through the timestep shift of Esser et al. (2024, "Scaling
Rectified Flow Transformers" (SD3), resolution-dependent shift ``sqrt(m / n)``):

    ``sigma(t) = shift t / (1 + (shift - 1) t)``,

which spends more steps at high noise when ``shift > 1`` (SD3 uses 3.0). The model is
told the timestep ``sigma * T``. Sampling grids follow diffusers'
``FlowMatchEulerDiscreteScheduler``: the training sigmas are ``sigma(i / T)`` for
``i = T..1``; an ``n``-step grid spaces ``n`` timesteps evenly between the largest and
smallest training sigma and applies the shift once more (diffusers' rule), or shifts a
user-given descending sigma list. The sampler appends the terminal ``sigma = 0``.

``shift`` is a traced leaf (a vmap or a new value does not recompile); ``T`` is static.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._broadcast import broadcast_t
from jaxdiff._validation import check_int_range, check_unit_interval_array
from jaxdiff.schedules.checks import check_number, check_timesteps

__all__ = ["FlowSchedule"]


def _dtype():
    return jnp.zeros(()).dtype  # float32, or float64 when x64 is enabled


@struct.dataclass
class FlowSchedule:
    """A rectified-flow schedule ``x = (1 - sigma) x0 + sigma eps``.

    Attributes:
      shift: timestep shift (traced scalar, ``> 0``; 1 means no shift).
      custom_sigmas: ``[n]`` descending sigmas in ``(0, 1]`` (before the shift) that fix
        the sampling grid, or None for the evenly spaced grid.
      num_train_timesteps: ``T`` (static); the model timestep is ``sigma * T``.
      schedule_type: ``"flow"`` (static).
    """

    shift: Any
    custom_sigmas: Any = None
    num_train_timesteps: int = struct.field(pytree_node=False, default=1000)
    schedule_type: str = struct.field(pytree_node=False, default="flow")

    @classmethod
    def create(cls, num_train_timesteps: int = 1000, shift=1.0, sigmas=None) -> FlowSchedule:
        """Build a flow schedule.

        Args:
          num_train_timesteps: ``T`` (static int ``>= 1``).
          shift: SD3 timestep shift, ``> 0`` (may be traced).
          sigmas: optional custom descending sigmas ``[n]`` in ``(0, 1]``; the shift is
            applied to them too, as diffusers does. A sampler on this schedule then
            takes exactly ``n`` steps.

        Raises:
          TypeError: ``shift`` given as a string or bool, ``num_train_timesteps`` not an int.
          ValueError: naming ``num_train_timesteps`` (outside ``[1, MAX_TIMESTEPS]``),
            ``shift`` (concrete and not a finite scalar ``> 0``) or ``sigmas``.
        """
        check_timesteps("num_train_timesteps", num_train_timesteps)
        check_number("shift", shift, low=0.0, low_open=True)
        if np.ndim(shift) != 0:
            raise ValueError(f"shift must be a scalar, got shape {np.shape(shift)}")
        shift = jnp.asarray(shift, _dtype())
        if sigmas is not None:
            sigmas = _check_sigmas(sigmas)
        return cls(shift=shift, custom_sigmas=sigmas, num_train_timesteps=int(num_train_timesteps))

    # --- the path ------------------------------------------------------------------
    def shift_sigma(self, sigma):
        """SD3 shift ``shift s / (1 + (shift - 1) s)`` of an array of sigmas (any shape)."""
        return self.shift * sigma / (1.0 + (self.shift - 1.0) * sigma)

    def sigma(self, t):
        """``sigma(t)`` for continuous ``t`` in ``[0, 1]`` (any shape): the shifted ``t``."""
        return self.shift_sigma(jnp.asarray(t, _dtype()))

    @staticmethod
    def alpha(sigma):
        """Signal scale ``alpha = 1 - sigma``."""
        return 1.0 - sigma

    def timestep(self, sigma):
        """Model timestep ``sigma * T`` (diffusers' convention)."""
        return sigma * self.num_train_timesteps

    @staticmethod
    def add_noise(x0, eps, sigma):
        """``x_sigma = (1 - sigma) x0 + sigma eps``; ``sigma`` scalar or ``[B]``."""
        sigma = broadcast_t(sigma, x0)
        return (1.0 - sigma) * x0 + sigma * eps

    @staticmethod
    def velocity(x0, eps):
        """Return the regression target ``u = eps - x0`` (Liu et al. 2023, eq. 1)."""
        return eps - x0

    # --- grids ---------------------------------------------------------------------
    @property
    def train_sigmas(self):
        """``[T]`` descending training sigmas ``sigma(i / T)``, ``i = T, ..., 1``."""
        T = self.num_train_timesteps
        t = jnp.arange(T, 0, -1, dtype=_dtype()) / T
        return self.shift_sigma(t)

    @property
    def sigma_max(self):
        """Largest training sigma (1 for every shift)."""
        return self.shift_sigma(jnp.ones((), _dtype()))

    @property
    def sigma_min(self):
        """Smallest training sigma ``sigma(1 / T)``."""
        return self.shift_sigma(jnp.asarray(1.0 / self.num_train_timesteps, _dtype()))

    @property
    def num_custom_sigmas(self) -> int | None:
        """Length of ``custom_sigmas`` (static), or None when the grid is evenly spaced."""
        return None if self.custom_sigmas is None else self.custom_sigmas.shape[0]

    def inference_sigmas(self, num_inference_steps: int):
        """``[n]`` descending sampling sigmas, without the terminal 0.

        Evenly spaced timesteps from ``sigma_max T`` to ``sigma_min T``, divided by
        ``T`` and shifted (so the shift acts twice on the low end, exactly as in
        diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps``); or the shifted
        ``custom_sigmas`` when given, whose length must equal ``num_inference_steps``.
        """
        n = check_int_range("num_inference_steps", num_inference_steps, 1)
        if self.custom_sigmas is not None:
            if n != self.num_custom_sigmas:
                raise ValueError(
                    f"num_inference_steps={n} does not match the {self.num_custom_sigmas} "
                    "custom sigmas of this FlowSchedule; they must be equal"
                )
            base = self.custom_sigmas
        else:
            base = jnp.linspace(self.sigma_max, self.sigma_min, n)
        return self.shift_sigma(base)

    def get_schedule_info(self) -> dict:
        """Summary (host values; call outside ``jit``).

        Returns a dict with ``schedule_type``, ``num_train_timesteps``, ``shift``,
        ``sigmas_range`` (min, max of the training sigmas), ``snr`` (the ``[T]`` SNR
        ``(1 - sigma)^2 / sigma^2`` as numpy, high noise first), ``log_snr_range`` and
        ``custom_sigmas`` (numpy or None).
        """
        sig = np.asarray(self.train_sigmas, np.float64)
        snr = (1.0 - sig) ** 2 / sig**2
        with np.errstate(divide="ignore"):
            log_snr = np.log(snr)
        return {
            "schedule_type": self.schedule_type,
            "num_train_timesteps": self.num_train_timesteps,
            "shift": float(self.shift),
            "sigmas_range": (float(sig.min()), float(sig.max())),
            "snr": snr,
            "log_snr_range": (float(log_snr.min()), float(log_snr.max())),
            "custom_sigmas": None if self.custom_sigmas is None else np.asarray(self.custom_sigmas),
        }


def _check_sigmas(sigmas):
    arr, host = check_unit_interval_array("sigmas", sigmas, _dtype())
    if host is not None and np.any(np.diff(host) >= 0):
        raise ValueError(f"sigmas must be strictly decreasing, got {host.tolist()}")
    return arr
