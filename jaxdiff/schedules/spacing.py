"""Inference timestep spacing, computed on the host from static integers.

The rules follow Lin et al. (2024), "Common Diffusion Noise Schedules and Sample Steps
are Flawed", Table 2.

Three rules pick ``n`` of the ``T`` training timesteps, in descending order:

* ``linspace``: evenly spaced from ``0`` to ``T - 1`` (or to ``T - 1`` excluding the
  end point for solvers that plan ``n + 1`` points);
* ``leading``: multiples of ``T // n`` starting at 0, plus ``steps_offset``;
* ``trailing``: counted down from ``T - 1`` in strides of ``T / n``.

The result matches diffusers' ``set_timesteps`` of the corresponding scheduler.
"""

from __future__ import annotations

import numpy as np

from jaxdiff._validation import check_choice, check_int_range

__all__ = ["TIMESTEP_SPACINGS", "spaced_timesteps"]

TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")


def spaced_timesteps(
    spacing: str,
    num_train_timesteps: int,
    num_inference_steps: int,
    *,
    steps_offset: int = 0,
    plan_extra_point: bool = False,
    round_linspace: bool = True,
    last_timestep: int | None = None,
) -> np.ndarray:
    """Descending float64 numpy array ``[num_inference_steps]`` of model timesteps.

    Args:
      spacing: ``linspace``, ``leading`` or ``trailing``.
      num_train_timesteps: ``T``.
      num_inference_steps: ``n``, ``1 <= n <= T``.
      steps_offset: added to ``leading`` timesteps (diffusers' ``steps_offset``).
      plan_extra_point: space ``n + 1`` points and drop the last (DPM-Solver's rule).
      round_linspace: round ``linspace`` values to integers (DDPM, DDIM, DPM-Solver) or
        keep them fractional (Euler, Heun).
      last_timestep: upper end for ``linspace``/``leading`` (defaults to ``T``).
    """
    spacing = check_choice("timestep_spacing", spacing, TIMESTEP_SPACINGS)
    check_int_range("num_train_timesteps", num_train_timesteps, 1)
    check_int_range("num_inference_steps", num_inference_steps, 1, num_train_timesteps)
    check_int_range("steps_offset", steps_offset, 0, num_train_timesteps - 1)
    T, n = num_train_timesteps, num_inference_steps
    last = T if last_timestep is None else last_timestep
    extra = 1 if plan_extra_point else 0
    if spacing == "linspace":
        ts = np.linspace(0, last - 1, n + extra)
        if round_linspace:
            ts = ts.round()
        ts = ts[::-1][:n]
    elif spacing == "leading":
        ratio = last // (n + extra)
        ts = (np.arange(0, n + extra) * ratio).round()[::-1][:n] + steps_offset
    else:
        ratio = T / n
        # [:n]: for some (T, n), e.g. (1000, 61), the float arange gains an (n + 1)-th point
        # near 0 that rounds to timestep -1; diffusers keeps it, we drop it.
        ts = (np.arange(last, 0, -ratio).round() - 1)[:n]
    if ts.size and ts[0] > T - 1:  # leading + steps_offset can pass the last timestep
        raise ValueError(
            f"steps_offset={steps_offset} puts the first of {n} leading timesteps at "
            f"{int(ts[0])} > num_train_timesteps - 1 = {T - 1}; lower steps_offset or n"
        )
    return np.ascontiguousarray(ts, dtype=np.float64)
