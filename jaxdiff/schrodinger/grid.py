"""User time grids of the bridge samplers: ``(t_0, ..., t_N)``, 1 = noise, decreasing.

A grid is static (it sets the scan's length): a tuple of Python floats, checked here
once. A final ``0`` is read as the method's ``t_min``, where the score is finite (ATLAS's
seed passes ``[1.0, 0.8, 0.6, 0.4, 0.2, 0.0]``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["check_grid", "grid_times"]


def check_grid(timesteps, num_steps) -> tuple[float, ...]:
    """``timesteps`` as a tuple of floats, or raise naming the field and the rule broken."""
    if isinstance(timesteps, str | bytes) or not hasattr(timesteps, "__len__"):
        raise TypeError(f"timesteps must be a sequence of floats, got {timesteps!r:.80}")
    grid = np.asarray(timesteps)
    if grid.ndim != 1 or not np.issubdtype(grid.dtype, np.number) or grid.dtype == bool:
        raise TypeError(f"timesteps must be a 1-D sequence of numbers, got {timesteps!r:.80}")
    grid = grid.astype(np.float64)
    if grid.size < 2:
        raise ValueError(f"timesteps needs at least 2 times (one step), got {grid.tolist()}")
    if not np.all(np.isfinite(grid)) or grid.min() < 0 or grid.max() > 1:
        raise ValueError(f"timesteps must lie in [0, 1], got {grid.tolist()}")
    if np.any(np.diff(grid) >= 0):
        raise ValueError(f"timesteps must be strictly decreasing (1 = noise), got {grid.tolist()}")
    if np.any(grid[:-1] == 0):
        raise ValueError(f"only the last of timesteps may be 0, got {grid.tolist()}")
    if num_steps is not None and num_steps != grid.size - 1:
        raise ValueError(
            f"num_steps={num_steps} does not match timesteps ({grid.size - 1} steps); "
            "give one of them"
        )
    return tuple(float(t) for t in grid)


def grid_times(timesteps: tuple[float, ...], t_min):
    """``[N + 1]`` float32 step times of a checked grid, a final 0 replaced by ``t_min``."""
    grid = jnp.asarray(timesteps, jnp.float32)
    t_min = jnp.asarray(t_min, jnp.float32)
    return grid.at[-1].set(jnp.where(grid[-1] == 0, t_min, grid[-1]))
