"""Fixed-step Runge-Kutta integration of a flow-matching velocity field, both directions.

Notation (jaxdiff's time convention, :mod:`jaxdiff.train.objectives`): the path
``x_t = (1 - t) x_0 + t x_1`` joins data ``x_0`` (``t = 0``) to noise ``x_1`` (``t = 1``),
and a velocity model ``v(x, t) ~ E[x_1 - x_0 | x_t = x]`` is the ODE right-hand side
``dx/dt = v(x, t)`` whose flow carries the marginals (Lipman et al. 2023, "Flow Matching
for Generative Modeling", eq. 1 and Thm. 1; Liu et al. 2023, "Flow Straight and Fast",
eq. 1). *Generate* integrates from ``t = 1`` (noise) to ``t = 0`` (data); *invert*
from ``t = 0`` to ``t = 1`` (data to its noise code).

An explicit ``s``-stage Runge-Kutta method with Butcher tableau ``(c, A, b)`` (Hairer,
Norsett & Wanner 1993, "Solving Ordinary Differential Equations I", sec. II.1, eq. 1.8)
steps a grid ``t_0, ..., t_n`` with ``h_i = t_{i+1} - t_i`` (negative when generating)::

    k_j     = v(x_i + h_i sum_{l<j} a_jl k_l,  t_i + c_j h_i),   j = 1..s       (1)
    x_{i+1} = x_i + h_i sum_j b_j k_j                                        (2)

The four tableaux below are data (:data:`TABLEAUX`); one :class:`FlowODE` config runs any
of them. Each stage is one model call and so one row of the sampling driver
(:func:`jaxdiff.samplers.sample`): ``K = n s`` rows, the NFE, known before running. The
driver's state ``x`` is the next stage's model input (1); the carry holds ``x_i`` and the
stage derivatives ``k`` (``[s, B, ...]``). Row ``(i, j)`` stores ``h_i``, ``j`` and one
weight vector: ``a_{j+1, :}`` (the next stage's input) or, on the last stage, ``b`` (2).

Schedule: the driver gets a :class:`~jaxdiff.schedules.flow.FlowSchedule`, whose ``sigma``
is this ``t`` (``x = (1 - sigma) x_0 + sigma eps``). The model is told
``schedule.timestep(t) = t T`` with ``T = num_train_timesteps``, so a model trained with
``FlowMatchingObjective.create(time_scale=T)`` sees the times it was trained on
(``FlowSchedule.create(num_train_timesteps=1)`` for ``time_scale = 1``). The shift only
places the grid (``grid="shifted"``). Classifier-free guidance is the driver's: with a
``context`` the guided velocity ``v_u + w (v_c - v_u)`` (Ho & Salimans 2022) is the ODE's
right-hand side; one batched call per row, so the NFE does not change.

``jaxdiff.samplers.Euler`` on a FlowSchedule is this Euler method on diffusers' grid
(``times`` = the schedule's ``inference_sigmas`` and 0), generate only;
``jaxdiff.samplers.Heun`` differs on the last step (diffusers' plain Euler into 0).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._validation import check_int_range, check_real_array, is_concrete
from jaxdiff.samplers.base import set_choice
from jaxdiff.samplers.driver import Plan
from jaxdiff.schedules.checks import MAX_TIMESTEPS
from jaxdiff.schedules.flow import FlowSchedule

__all__ = [
    "DIRECTIONS",
    "GRIDS",
    "TABLEAUX",
    "ButcherTableau",
    "FlowODE",
    "check_flow_schedule",
    "set_time_grid",
]

DIRECTIONS = ("generate", "invert")
GRIDS = ("uniform", "shifted")
DEFAULT_NUM_STEPS = 10
_TOL = 1e-12


@dataclasses.dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge-Kutta method as data (hashable: a static field of a config).

    Attributes:
      name: label for messages.
      order: classical order ``p`` (global error ``O(h^p)``).
      c: ``[s]`` nodes.
      a: ``s`` rows of ``s`` coefficients, strictly lower triangular (explicit).
      b: ``[s]`` weights.

    Raises:
      ValueError: mismatched lengths, a non-explicit ``a``, ``sum(b) != 1`` or a row sum
        of ``a`` that is not ``c`` (HNW 1993, eq. 1.9), or ``order < 1``.
    """

    name: str
    order: int
    c: tuple
    a: tuple
    b: tuple

    def __post_init__(self):
        check_int_range("order", self.order, 1)
        s = len(self.b)
        a = np.asarray(self.a, np.float64)
        if s < 1 or len(self.c) != s or a.shape != (s, s):
            raise ValueError(
                f"tableau {self.name!r}: b and c need s >= 1 entries and a shape [s, s]; got "
                f"len(b)={s}, len(c)={len(self.c)}, a of shape {a.shape}"
            )
        if np.any(np.triu(a) != 0):
            raise ValueError(f"tableau {self.name!r}: a must be strictly lower triangular")
        if abs(sum(self.b) - 1.0) > _TOL or np.any(np.abs(a.sum(1) - self.c) > _TOL):
            raise ValueError(
                f"tableau {self.name!r}: need sum(b) = 1 and row sums of a equal to c; got "
                f"sum(b)={sum(self.b)}, row sums {a.sum(1).tolist()}, c={list(self.c)}"
            )

    @property
    def num_stages(self) -> int:
        """``s``: model calls per step."""
        return len(self.b)

    def row_weights(self) -> np.ndarray:
        """``[s, s]`` weights of ``k`` after each stage: ``a_{j+1}``, then ``b`` (last stage)."""
        return np.concatenate(
            [
                np.asarray(self.a[1:], np.float64).reshape(-1, self.num_stages),
                np.asarray(self.b, np.float64)[None],
            ]
        )


TABLEAUX = {
    "euler": ButcherTableau("euler", 1, (0.0,), ((0.0,),), (1.0,)),
    # explicit midpoint (Runge 1895)
    "midpoint": ButcherTableau("midpoint", 2, (0.0, 0.5), ((0.0, 0.0), (0.5, 0.0)), (0.0, 1.0)),
    # Heun's method, the explicit trapezoidal rule (Heun 1900)
    "heun": ButcherTableau("heun", 2, (0.0, 1.0), ((0.0, 0.0), (1.0, 0.0)), (0.5, 0.5)),
    # the classical Runge-Kutta method (Kutta 1901)
    "rk4": ButcherTableau(
        "rk4",
        4,
        (0.0, 0.5, 0.5, 1.0),
        ((0.0, 0.0, 0.0, 0.0), (0.5, 0.0, 0.0, 0.0), (0.0, 0.5, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0)),
        (1 / 6, 1 / 3, 1 / 3, 1 / 6),
    ),
}


def check_flow_schedule(schedule) -> FlowSchedule:
    """Return ``schedule`` if it is a FlowSchedule (it sets the model's time scale)."""
    if not isinstance(schedule, FlowSchedule):
        raise TypeError(
            "schedule must be a jaxdiff.schedules.FlowSchedule (the model is told t * "
            f"num_train_timesteps), got {type(schedule).__name__}"
        )
    return schedule


def _check_times(times, direction: str, num_steps):
    """Validate a user grid: 1-D, ``>= 2`` entries, in ``[0, 1]``, strictly monotone.

    Tracers (the driver's ``jit``) and JAX's non-numeric pytree placeholders are let
    through after the shape check; every concrete grid, NumPy or JAX, is checked.
    """
    if not hasattr(times, "shape") and not isinstance(times, list | tuple):
        return times  # a placeholder while JAX maps over the pytree
    if not is_concrete(times):
        if num_steps is not None and tuple(times.shape) != (num_steps + 1,):
            raise ValueError(f"times must have shape ({num_steps + 1},), got {times.shape}")
        return times
    arr = check_real_array("times", times, 1, 1)
    host = np.asarray(arr, np.float64)
    if host.shape[0] < 2 or host.min() < 0.0 or host.max() > 1.0:
        raise ValueError(
            f"times must be a grid of >= 2 times in [0, 1]; got {host.tolist()!r:.200}"
        )
    steps = np.diff(host)
    want = "decreasing" if direction == "generate" else "increasing"
    if np.any(steps >= 0 if direction == "generate" else steps <= 0):
        raise ValueError(
            f"times must be strictly {want} for direction={direction!r} (generate runs t: "
            f"1 -> 0, invert 0 -> 1); got {host.tolist()!r:.200}"
        )
    return arr.astype(jnp.result_type(float))


def set_time_grid(config) -> None:
    """Check and set a frozen config's ``num_steps`` and ``times`` (FlowODE, FlowSDE).

    ``num_steps`` in ``[1, MAX_TIMESTEPS]`` (default :data:`DEFAULT_NUM_STEPS`, or
    ``len(times) - 1``); ``times`` by :func:`_check_times` for ``config.direction``.
    """
    n = config.num_steps
    if n is not None:
        n = check_int_range("num_steps", n, 1, MAX_TIMESTEPS)
    if config.times is None:
        object.__setattr__(config, "num_steps", DEFAULT_NUM_STEPS if n is None else n)
        return
    times = _check_times(config.times, config.direction, n)
    if hasattr(times, "shape"):
        if n is not None and times.shape[0] != n + 1:
            raise ValueError(
                f"num_steps={n} does not match times with {times.shape[0]} entries "
                f"(num_steps = len(times) - 1 = {times.shape[0] - 1}); leave num_steps out"
            )
        n = times.shape[0] - 1
    object.__setattr__(config, "times", times)
    object.__setattr__(config, "num_steps", n)


@struct.dataclass
class FlowODE:
    """Fixed-step Runge-Kutta sampler/inverter for a velocity model ``v(x, t) = dx/dt``.

    Run it with :func:`jaxdiff.samplers.sample` on a FlowSchedule; ``noise`` is the state at
    the grid's first time (noise to generate, data to invert; it is not rescaled) and the
    key is unused (deterministic). ``model_fn(x, t, context)`` returns the velocity
    (``x_1 - x_0``, prediction type ``flow``) for ``t = time * num_train_timesteps``.
    ``return_trajectory`` gives every row's model input; ``x_i`` are the rows
    ``s - 1, 2s - 1, ...`` (``trajectory[s - 1 :: s]``).

    Attributes:
      solver: ``euler`` (order 1), ``midpoint`` (2), ``heun`` (2) or ``rk4`` (4), or any
        explicit :class:`ButcherTableau` (static).
      num_steps: steps ``n`` (static); the run makes ``n s`` model calls. Default 10, or
        ``len(times) - 1`` when ``times`` is given (then it must match if given).
      direction: ``generate`` (t: 1 -> 0) or ``invert`` (t: 0 -> 1) (static).
      grid: ``uniform`` (``t_i`` evenly spaced) or ``shifted`` (the schedule's SD3 shift
        ``shift t / (1 + (shift - 1) t)`` of the uniform grid, more steps near noise for
        ``shift > 1``) (static).
      times: optional ``[n + 1]`` grid (traced), strictly decreasing (generate) or
        increasing (invert) in ``[0, 1]``; replaces ``grid``. Any sub-interval is allowed
        (e.g. generate from ``t = 0.6``).

    Raises:
      TypeError / ValueError naming the field: unknown names, ``num_steps`` outside
        ``[1, 2**24]``, a bad grid, ``times`` together with ``grid="shifted"``.
    """

    solver: Any = struct.field(pytree_node=False, default="rk4")
    num_steps: int | None = struct.field(pytree_node=False, default=None)
    direction: str = struct.field(pytree_node=False, default="generate")
    grid: str = struct.field(pytree_node=False, default="uniform")
    times: Any = None

    def __post_init__(self):
        if not isinstance(self.solver, ButcherTableau):
            set_choice(self, "solver", TABLEAUX)
        set_choice(self, "direction", DIRECTIONS)
        set_choice(self, "grid", GRIDS)
        if self.times is not None and self.grid != "uniform":
            raise ValueError(f"give times or grid={self.grid!r}, not both")
        set_time_grid(self)

    @property
    def tableau(self) -> ButcherTableau:
        """The Butcher tableau run by this config."""
        return self.solver if isinstance(self.solver, ButcherTableau) else TABLEAUX[self.solver]

    @property
    def num_model_calls(self) -> int:
        """NFE ``n s`` (static), equal to ``plan(schedule).num_model_calls``."""
        return self.num_steps * self.tableau.num_stages

    def time_grid(self, schedule):
        """``[n + 1]`` times ``t_0, ..., t_n`` in the direction of integration."""
        check_flow_schedule(schedule)
        if self.times is not None:
            return jnp.asarray(self.times)
        u = jnp.linspace(0.0, 1.0, self.num_steps + 1)
        if self.direction == "generate":
            u = u[::-1]
        return schedule.shift_sigma(u) if self.grid == "shifted" else u

    def plan(self, schedule) -> Plan:
        """Rows ``(i, j)``, ``K = n s``: ``h``, ``stage`` ``j``, ``weights`` ``[s]``, ``last``.

        The timesteps are ``(t_i + c_j h_i) T``.
        """
        ts = self.time_grid(schedule)
        tab = self.tableau
        s, n = tab.num_stages, self.num_steps
        h = ts[1:] - ts[:-1]
        c = jnp.asarray(tab.c, ts.dtype)
        row_t = (ts[:-1, None] + h[:, None] * c[None, :]).reshape(-1)
        steps = {
            "h": jnp.repeat(h, s),
            "stage": jnp.tile(jnp.arange(s, dtype=jnp.int32), n),
            "weights": jnp.tile(jnp.asarray(tab.row_weights(), ts.dtype), (n, 1)),
            "last": jnp.tile(jnp.arange(s) == s - 1, n),
        }
        return Plan(
            timesteps=schedule.timestep(row_t).astype(jnp.float32),
            steps=steps,
            init_noise_sigma=jnp.ones((), ts.dtype),
        )

    def init_state(self, x, plan):
        """Carry ``(x_i, k)``: the step's start and the ``[s, B, ...]`` stage derivatives."""
        return (x, jnp.zeros((self.tableau.num_stages,) + x.shape, x.dtype))

    def scale_model_input(self, x, step):
        """The state is the model input (no scaling on a flow path)."""
        return x

    def step(self, key, state, x, model_output, step):
        """Store ``k_j`` and form the next stage's input (1), or ``x_{i+1}`` (2)."""
        x_start, k = state
        # 1. k_j = v(stage input, t_i + c_j h_i): this row's model output.
        k = jax.lax.dynamic_update_index_in_dim(k, model_output.astype(k.dtype), step["stage"], 0)
        # 2. x_start + h sum_l w_l k_l with w = a_{j+1} (eq. 1) or b on the last stage (eq. 2);
        #    the entries l > j of w are zero, so stale k of the previous step never enter.
        x_new = x_start + step["h"] * jnp.tensordot(step["weights"].astype(k.dtype), k, axes=1)
        x_new = x_new.astype(x.dtype)
        # 3. after the last stage x_{i+1} starts the next step.
        return (jnp.where(step["last"], x_new, x_start), k), x_new
