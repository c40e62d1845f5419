"""The EDM noise schedule (Karras et al. 2022) in continuous time, and its step sigmas.

Variance exploding: ``alpha(t) = 1`` and, for ``t`` in ``[0, 1]``,

    ``sigma(t) = (sigma_min^(1/rho) + t (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho``,

the interpolation of Karras et al. (2022), "Elucidating the Design Space of
Diffusion-Based Generative Models", eq. 5, read as a function of continuous time (their
step ``i`` of ``N`` is ``t = 1 - i / (N - 1)``). The SDE is ``dx = g(t) dW`` with
``g(t)^2 = d sigma^2 / dt`` (Song et al. 2021, eq. 9); the prior is
``N(0, sigma_max^2 I)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax.numpy as jnp
from flax import struct

from jaxdiff.schedules.checks import check_timesteps
from jaxdiff.schedules.continuous_base import ContinuousSchedule, as_time, check_positive, param
from jaxdiff.schedules.sigmas import karras_sigmas

__all__ = ["KarrasSchedule", "karras_noise_schedule"]


@struct.dataclass
class KarrasSchedule(ContinuousSchedule):
    """EDM variance-exploding schedule over ``t`` in ``[0, 1]``.

    ``sigma(0) = sigma_min``, ``sigma(1) = sigma_max``; ``log_snr = -2 log sigma``;
    ``f = 0`` and ``g(t)^2 = 2 rho (sigma_max^(1/rho) - sigma_min^(1/rho))
    base(t)^(2 rho - 1)`` with ``base(t) = sigma(t)^(1/rho)``.

    Attributes:
      sigma_min: smallest noise level (traced), default 0.002.
      sigma_max: largest noise level, the prior std (traced), default 80.
      rho: curvature of the interpolation (traced), default 7.
    """

    sigma_min: Any = 0.002
    sigma_max: Any = 80.0
    rho: Any = 7.0

    kind: ClassVar[str] = "karras"
    variance_preserving: ClassVar[bool] = False

    @classmethod
    def create(cls, num_timesteps: int = 1000, sigma_min=0.002, sigma_max=80.0, rho=7.0):
        """Build with validation (concrete values are range-checked)."""
        check_timesteps("num_timesteps", num_timesteps)
        for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max), ("rho", rho)):
            check_positive(name, value)
        return cls(
            num_timesteps=num_timesteps,
            sigma_min=param(sigma_min),
            sigma_max=param(sigma_max),
            rho=param(rho),
        )

    def _ends(self):
        return self.sigma_min ** (1.0 / self.rho), self.sigma_max ** (1.0 / self.rho)

    def _base(self, t):
        lo, hi = self._ends()
        return lo + as_time(t) * (hi - lo)

    def log_alpha(self, t):
        """``0``: variance exploding."""
        return jnp.zeros_like(as_time(t))

    def sigma(self, t):
        """``base(t)^rho`` (EDM eq. 5 in continuous time)."""
        return self._base(t) ** self.rho

    def log_snr(self, t):
        """``-2 log sigma = -2 rho log base(t)``."""
        return -2.0 * self.rho * jnp.log(self._base(t))

    def t_from_log_snr(self, lam):
        """Invert in closed form: ``t = (exp(-lam / (2 rho)) - lo) / (hi - lo)``.

        Here ``lo = sigma_min^(1/rho)`` and ``hi = sigma_max^(1/rho)``.
        """
        lo, hi = self._ends()
        return (jnp.exp(-as_time(lam) / (2.0 * self.rho)) - lo) / (hi - lo)

    def beta(self, t):
        """``0``: no drift."""
        return jnp.zeros_like(as_time(t))

    def f(self, t):
        """``0``: no drift."""
        return jnp.zeros_like(as_time(t))

    def g2(self, t):
        """``d sigma^2 / dt = 2 rho (hi - lo) base^(2 rho - 1)``."""
        lo, hi = self._ends()
        return 2.0 * self.rho * (hi - lo) * self._base(t) ** (2.0 * self.rho - 1.0)

    @property
    def prior_std(self):
        """``sigma_max``: the prior is ``N(0, sigma_max^2 I)``."""
        return jnp.asarray(self.sigma_max)


def karras_noise_schedule(num_steps: int, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """EDM step sigmas (Karras et al. 2022, eq. 5) followed by a final 0.

    Args:
      num_steps: number of sampling steps ``N`` (static, >= 1).
      sigma_min: smallest noise level (may be traced).
      sigma_max: largest noise level (may be traced).
      rho: curvature of the interpolation (may be traced).

    Returns:
      ``[N + 1]`` decreasing sigmas ``sigma_0 = sigma_max, ..., sigma_{N-1} = sigma_min,
      sigma_N = 0`` (diffusers' ``EDMEulerScheduler`` sigmas with
      ``final_sigmas_type="zero"``).
    """
    check_timesteps("num_steps", num_steps)
    for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max), ("rho", rho)):
        check_positive(name, value)
    sigmas = karras_sigmas(param(sigma_min), param(sigma_max), num_steps, param(rho))
    return jnp.concatenate([sigmas, jnp.zeros((1,), sigmas.dtype)])
