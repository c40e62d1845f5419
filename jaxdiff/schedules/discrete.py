"""Discrete-time noise schedules (DDPM family) as pytrees.

A :class:`DiscreteSchedule` holds ``betas`` and ``alphas_cumprod`` (``alpha_bar``),
both ``[T]`` arrays, with ``T = num_train_timesteps``. Training timestep ``t`` (0-based,
as diffusers counts) corrupts data as ``x_t = alpha_t x_0 + sigma_t eps`` with
``alpha_t = sqrt(alpha_bar_t)`` and ``sigma_t = sqrt(1 - alpha_bar_t)``.

Schedules are ``flax.struct`` dataclasses: they pass through ``jit`` and ``vmap`` (for
example a vmap over ``beta_end``), and their math stays in float32 (float64 under
``jax_enable_x64``) whatever dtype the model computes in.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._validation import check_bool, check_choice, check_unit_interval_array, is_concrete
from jaxdiff.schedules.betas import (
    BETA_SCHEDULES,
    IGNORES_BETA_RANGE,
    make_betas,
    rescale_zero_terminal_snr,
)
from jaxdiff.schedules.checks import check_number, check_timesteps

__all__ = ["DiscreteSchedule"]

_CUSTOM = ("custom", "custom_betas", "custom_alphas_cumprod")


def _schedule_dtype():
    return jnp.zeros(()).dtype  # float32, or float64 when x64 is enabled


@struct.dataclass
class DiscreteSchedule:
    """A discrete noise schedule.

    Attributes:
      betas: ``[T]`` per-step variances.
      alphas_cumprod: ``[T]`` cumulative products ``alpha_bar_t``.
      schedule_type: name of the schedule that made it (static).
      rescaled_zero_snr: whether ``rescale_zero_terminal_snr`` was applied (static).
    """

    betas: Any
    alphas_cumprod: Any
    schedule_type: str = struct.field(pytree_node=False, default="linear")
    rescaled_zero_snr: bool = struct.field(pytree_node=False, default=False)

    @classmethod
    def create(
        cls,
        schedule_type: str = "linear",
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        *,
        betas=None,
        alphas_cumprod=None,
        rescale_betas_zero_snr: bool = False,
    ) -> DiscreteSchedule:
        """Build a schedule by name or from custom ``betas`` / ``alphas_cumprod``.

        Args:
          schedule_type: ``linear``, ``scaled_linear``, ``quadratic``, ``cosine``
            (alias ``squaredcos_cap_v2``), ``sigmoid``, ``exponential`` or ``custom``.
          num_train_timesteps: ``T``; ignored when custom arrays are given.
          beta_start: beta of the first step (may be traced).
          beta_end: beta of the last step (may be traced).
          betas: custom ``[T]`` betas in (0, 1].
          alphas_cumprod: custom ``[T]`` decreasing ``alpha_bar`` in (0, 1].
          rescale_betas_zero_snr: apply Lin et al. (2024) zero-terminal-SNR rescaling.

        Raises:
          TypeError: a string or bool for a number, a non-bool flag, an unknown type.
          ValueError: an unknown name; ``num_train_timesteps`` outside ``[1,
            MAX_TIMESTEPS]`` (refused before anything is allocated); concrete
            ``beta_start`` / ``beta_end`` outside ``(0, 1)``, NaN, or reversed
            (``beta_start > beta_end``); betas whose ``alphas_cumprod`` underflows to 0.
        """
        dtype = _schedule_dtype()
        name = check_choice("schedule_type", schedule_type, [*BETA_SCHEDULES, *_CUSTOM])
        check_bool("rescale_betas_zero_snr", rescale_betas_zero_snr)
        if betas is not None and alphas_cumprod is not None:
            raise ValueError("give either custom_betas or custom_alphas_cumprod, not both")
        if betas is not None:
            betas, _ = check_unit_interval_array("custom_betas", betas, dtype)
            name = "custom"
        elif alphas_cumprod is not None:
            ab, _ = check_unit_interval_array("custom_alphas_cumprod", alphas_cumprod, dtype)
            betas = 1.0 - jnp.concatenate([ab[:1], ab[1:] / ab[:-1]])
            name = "custom"
        elif name in _CUSTOM:
            raise ValueError(
                f"schedule_type={schedule_type!r} needs custom_betas or custom_alphas_cumprod"
            )
        else:
            check_timesteps("num_train_timesteps", num_train_timesteps)
            _check_beta_range(beta_start, beta_end, uses_range=name not in IGNORES_BETA_RANGE)
            betas = make_betas(name, num_train_timesteps, beta_start, beta_end).astype(dtype)
            _check_no_underflow(betas, name, num_train_timesteps, beta_start, beta_end)
        if rescale_betas_zero_snr:
            betas = rescale_zero_terminal_snr(betas)
        alphas_cumprod = jnp.cumprod(1.0 - betas)
        return cls(
            betas=betas,
            alphas_cumprod=alphas_cumprod,
            schedule_type=name,
            rescaled_zero_snr=bool(rescale_betas_zero_snr),
        )

    @property
    def num_train_timesteps(self) -> int:
        """``T``, the number of training timesteps (static)."""
        return self.betas.shape[-1]

    @property
    def alphas(self):
        """``[T]`` per-step ``alpha_t = 1 - beta_t``."""
        return 1.0 - self.betas

    @property
    def alpha_t(self):
        """``[T]`` signal scale ``sqrt(alpha_bar_t)``."""
        return jnp.sqrt(self.alphas_cumprod)

    @property
    def sigma_t(self):
        """``[T]`` noise scale ``sqrt(1 - alpha_bar_t)``."""
        return jnp.sqrt(1.0 - self.alphas_cumprod)

    @property
    def snr(self):
        """``[T]`` signal-to-noise ratio ``alpha_bar / (1 - alpha_bar)``."""
        return self.alphas_cumprod / (1.0 - self.alphas_cumprod)

    @property
    def karras_sigmas(self):
        """``[T]`` variance-exploding noise levels ``sqrt((1 - alpha_bar) / alpha_bar)``."""
        return jnp.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)

    def get_schedule_info(self) -> dict:
        """Summary of the schedule (host values; call outside ``jit``).

        Returns a dict with ``schedule_type``, ``num_train_timesteps``, ``betas_range``,
        ``alphas_cumprod_range`` (min, max), ``snr`` (the ``[T]`` SNR curve as numpy),
        ``log_snr_range`` and ``rescaled_zero_snr``.
        """
        betas = np.asarray(self.betas)
        ab = np.asarray(self.alphas_cumprod)
        with np.errstate(divide="ignore"):
            snr = ab / (1.0 - ab)
            log_snr = np.log(snr)
        return {
            "schedule_type": self.schedule_type,
            "num_train_timesteps": self.num_train_timesteps,
            "betas_range": (float(betas.min()), float(betas.max())),
            "alphas_cumprod_range": (float(ab.min()), float(ab.max())),
            "snr": snr,
            "log_snr_range": (float(log_snr.min()), float(log_snr.max())),
            "rescaled_zero_snr": self.rescaled_zero_snr,
        }


def _check_beta_range(beta_start, beta_end, *, uses_range: bool) -> None:
    """Raise unless concrete ``beta_start <= beta_end`` both lie in ``(0, 1)``.

    Strings and bools raise ``TypeError`` even for schedules that ignore them (cosine).
    """
    bounds = dict(low=0.0, high=1.0, low_open=True, high_open=True) if uses_range else {}
    check_number("beta_start", beta_start, **bounds)
    check_number("beta_end", beta_end, **bounds)
    if uses_range and is_concrete((beta_start, beta_end)):
        start, end = np.asarray(beta_start, np.float64), np.asarray(beta_end, np.float64)
        if np.any(start > end):
            raise ValueError(
                f"beta_start={beta_start} > beta_end={beta_end}: the betas would decrease "
                "(a reversed schedule); give beta_start <= beta_end"
            )


def _check_no_underflow(betas, name, num_train_timesteps, beta_start, beta_end) -> None:
    """Raise when concrete named betas drive ``alphas_cumprod`` to 0 (before any rescaling).

    Such a schedule has infinite noise levels, and the zero-SNR rescaling of it is NaN.
    """
    if not is_concrete(betas):
        return
    last = float(jnp.cumprod(1.0 - betas)[-1])  # the smallest: alphas_cumprod decreases
    if not last > 0.0:
        raise ValueError(
            f"schedule_type={name!r} with num_train_timesteps={num_train_timesteps}, "
            f"beta_start={beta_start}, beta_end={beta_end} gives alphas_cumprod that "
            f"underflow to 0 in {betas.dtype} (infinite noise levels); lower beta_end or "
            "num_train_timesteps"
        )
