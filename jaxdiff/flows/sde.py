"""Euler-Maruyama sampling of a velocity-and-score model that keeps the flow's marginals.

Notation (jaxdiff's time convention, :mod:`jaxdiff.flows.paths`): ``t = 0`` data, ``t = 1``
source; the marginals ``p_t`` of a path ``x_t = alpha x0 + beta x1 + gamma z`` are carried
by the velocity ``b(x, t) = E[u_t | x_t = x]`` (continuity equation ``dp/dt = -div(b p)``)
and ``s(x, t) = grad log p_t(x)`` is their score. For any ``eps(t) >= 0``,
``eps (lap p - div(s p)) = eps div(grad p - p grad log p) = 0``, so the Fokker-Planck
equations of

    forward  (t up):   dx = (b + eps s) dt + sqrt(2 eps) dW,                        (1)
    backward (t down): dx = (-b + eps s) d(-t) + sqrt(2 eps) dW,                    (2)

have the same solution ``p_t`` as the ODE ``dx/dt = b`` (Albergo, Boffi & Vanden-Eijnden
2023, "Stochastic Interpolants", sec. 2.2, Thm. 2.3, in our time direction; Song et al.
2021, "Score-based generative modeling through SDEs", eq. 6 and 13, for ``eps = g^2 / 2``).
``eps = 0`` is the ODE. One Euler-Maruyama step (Kloeden & Platen 1992, eq. 9.1.1) on a
grid ``t_0, ..., t_n``, ``h_i = t_{i+1} - t_i`` (negative when generating), ``n_i ~ N(0, I)``::

    x_{i+1} = x_i + h_i b(x_i, t_i) + |h_i| eps_i s(x_i, t_i) + sqrt(2 eps_i |h_i|) n_i   (3)

with ``eps_i = eps(t_i)``; generating (``h = -|h|``) it is ``x - |h| (b - eps s) + sqrt(2 eps
|h|) n``, the step of :func:`jaxdiff.flows.objectives.interpolant_objective`. It has weak
order 1: means and covariances at ``t_n`` are off by ``O(h)``.

**Last step deterministic**: the step into ``t_n`` uses ``eps_{n-1} = 0``, the ODE's Euler
step (the usual "denoise at the end" of Song et al. 2021's samplers), so no fresh noise of
size ``sqrt(2 eps h)`` is left on the samples; each step keeps the marginals to ``O(h^2)``
whatever its ``eps``, so the order is unchanged.

**Diffusion coefficient** ``eps(t)`` (``diffusion`` traced, ``diffusion_schedule`` static):
``"constant"``: ``eps = diffusion``; ``"bridge"``: ``eps = diffusion t (1 - t)``, i.e.
``diffusion gamma(t)^2 / sigma^2`` for the Schrödinger-bridge / interpolant ``gamma = sigma
sqrt(t (1 - t))``: it vanishes at both ends, where a learned score ``~ -z / gamma`` blows up
(for data on a manifold), keeping ``eps s = O(sqrt(t))`` bounded.

Model: ``model_fn(x, t, context)`` returns ``[..., 2 C]`` for ``x`` ``[..., C]``: velocity
channels, then score channels, on the last axis (the layout of
``CFMObjective(score_head=True)``), at ``t = time * num_train_timesteps`` of the
:class:`~jaxdiff.schedules.flow.FlowSchedule` (as :class:`~jaxdiff.flows.ode.FlowODE`).
One model call per step: ``K = n`` scan rows, the NFE. Noise comes from each row's key
through :func:`jaxdiff.samplers.noise.normal_like` (per-example keys supported).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import struct

from jaxdiff.flows.ode import DIRECTIONS, check_flow_schedule, set_time_grid
from jaxdiff.samplers.base import check_knob, set_choice
from jaxdiff.samplers.driver import Plan
from jaxdiff.samplers.noise import normal_like

__all__ = ["DIFFUSION_SCHEDULES", "FlowSDE"]

#: ``eps(t)``: ``"constant"`` ``diffusion``; ``"bridge"`` ``diffusion t (1 - t)``.
DIFFUSION_SCHEDULES = ("constant", "bridge")


@struct.dataclass
class FlowSDE:
    """Euler-Maruyama sampler (3) for a velocity-and-score model; keeps the ODE's marginals.

    Run it with :func:`jaxdiff.samplers.sample` on a FlowSchedule; ``noise`` is the state at
    the grid's first time (source samples ``x_1`` to generate; it is not rescaled) and the
    key drives the Brownian increments. ``return_trajectory`` gives ``x_1, ..., x_n``, the
    state at ``t_1, ..., t_n``.

    Attributes:
      diffusion: ``eps >= 0`` (traced; ``x``'s units squared per unit time); 0 is the ODE's
        Euler method (equal to ``FlowODE(solver="euler")`` on the same grid).
      diffusion_schedule: ``"constant"`` (``eps(t) = diffusion``) or ``"bridge"``
        (``diffusion t (1 - t)``) (static); see the module docstring.
      num_steps: steps ``n`` (static), one model call each. Default 10, or ``len(times) - 1``
        when ``times`` is given (then it must match if given).
      direction: ``generate`` (t: 1 -> 0, eq. 2) or ``invert`` (t: 0 -> 1, eq. 1) (static).
      times: optional ``[n + 1]`` grid (traced), strictly decreasing (generate) or
        increasing (invert) in ``[0, 1]``; default the uniform grid over ``[0, 1]``.

    Raises:
      TypeError / ValueError naming the field: ``diffusion`` not a real number ``>= 0``,
        unknown names, ``num_steps`` outside ``[1, 2**24]``, a bad ``times`` grid.
    """

    diffusion: Any = 1.0
    diffusion_schedule: str = struct.field(pytree_node=False, default="constant")
    num_steps: int | None = struct.field(pytree_node=False, default=None)
    direction: str = struct.field(pytree_node=False, default="generate")
    times: Any = None

    def __post_init__(self):
        check_knob(self, "diffusion", low=0.0)
        set_choice(self, "diffusion_schedule", DIFFUSION_SCHEDULES)
        set_choice(self, "direction", DIRECTIONS)
        set_time_grid(self)

    @property
    def num_model_calls(self) -> int:
        """NFE ``n`` (static), equal to ``plan(schedule).num_model_calls``."""
        return self.num_steps

    def time_grid(self, schedule):
        """``[n + 1]`` times ``t_0, ..., t_n`` in the direction of integration."""
        check_flow_schedule(schedule)
        if self.times is not None:
            return jnp.asarray(self.times)
        u = jnp.linspace(0.0, 1.0, self.num_steps + 1)
        return u[::-1] if self.direction == "generate" else u

    def diffusion_at(self, t):
        """``eps(t)`` (shape of ``t``) of :attr:`diffusion_schedule`."""
        t = jnp.asarray(t)
        eps = jnp.asarray(self.diffusion, t.dtype)
        if self.diffusion_schedule == "bridge":
            return eps * t * (1.0 - t)
        return eps * jnp.ones_like(t)

    def plan(self, schedule) -> Plan:
        """Rows ``i < n``: ``h`` ``h_i`` and ``eps`` ``eps(t_i)`` (0 on the last row).

        The timesteps are ``t_i T``.
        """
        ts = self.time_grid(schedule)
        eps = self.diffusion_at(ts[:-1])
        eps = jnp.where(jnp.arange(self.num_steps) == self.num_steps - 1, 0.0, eps)
        return Plan(
            timesteps=schedule.timestep(ts[:-1]).astype(jnp.float32),
            steps={"h": ts[1:] - ts[:-1], "eps": eps},
            init_noise_sigma=jnp.ones((), ts.dtype),
        )

    def init_state(self, x, plan):
        """No carry besides ``x`` (a one-step method)."""
        return ()

    def scale_model_input(self, x, step):
        """The state is the model input (no scaling on a flow path)."""
        return x

    def check_model_output(self, output_shape, x_shape) -> None:
        """The model returns ``[..., 2 C]`` (velocity, then score) for ``x`` ``[B, ..., C]``."""
        want = tuple(x_shape[:-1]) + (2 * x_shape[-1],)
        if len(x_shape) < 2 or tuple(output_shape) != want:
            raise ValueError(
                f"model_fn output has shape {tuple(output_shape)}; FlowSDE needs velocity "
                f"then score channels on the last axis of x [B, ..., C] = {tuple(x_shape)}, "
                f"i.e. {want} (CFMObjective(score_head=True)'s layout)"
            )

    def step(self, key, state, x, model_output, step):
        """One Euler-Maruyama step (3) from ``t_i`` to ``t_{i+1}``."""
        channels = x.shape[-1]
        b, s = model_output[..., :channels], model_output[..., channels:]
        h = step["h"].astype(x.dtype)
        eps_h = step["eps"].astype(x.dtype) * jnp.abs(h)
        x_new = x + h * b + eps_h * s + jnp.sqrt(2.0 * eps_h) * normal_like(key, x)
        return state, x_new.astype(x.dtype)
