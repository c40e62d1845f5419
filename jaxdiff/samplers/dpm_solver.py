"""Multistep DPM-Solver and DPM-Solver++ samplers.

Lu et al. 2022a, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling
in Around 10 Steps"; Lu et al. 2022b, "DPM-Solver++: Fast Solver for Guided Sampling of
Diffusion Probabilistic Models".

Notation: ``x_t = alpha_t x0 + sigma_t eps``, ``lambda_t = log(alpha_t / sigma_t)``. A
discrete (VP) schedule is walked through noise levels ``s = sigma_t / alpha_t`` with
``alpha_t = 1 / sqrt(1 + s^2)``, ``sigma_t = s alpha_t``; a
:class:`~jaxdiff.schedules.flow.FlowSchedule` through ``alpha_t = 1 - s``, ``sigma_t = s``.
One model call per step. Step ``i`` (see :mod:`jaxdiff.samplers.dpm_updates`):

1. convert the model output to ``x0`` (DPM-Solver++, thresholded or clipped when asked)
   or to ``eps`` (DPM-Solver, via a thresholded ``x0`` when asked);
2. push it onto the history (the last ``solver_order - 1`` outputs, in the scan carry);
3. take the multistep update of the order planned for this step, from ``s_i`` to
   ``s_{i+1}``: lower orders while the history warms up, first order at the end when
   ``final_sigmas_type="zero"`` or ``euler_at_final`` (and, with ``lower_order_final``
   and fewer than 15 steps, order <= 2 on the second-to-last step and 1 on the last).

The grid, the orders and the updates match diffusers' PyTorch
``DPMSolverMultistepScheduler`` step for step, with these deliberate differences:

* a zero-length last step (``final_sigmas_type="sigma_min"`` on a grid that already ends
  at the smallest training sigma, e.g. with Karras sigmas; the defect diffusers#6477
  worked around with ``final_sigmas_type="zero"``) is dropped. Its update is the
  identity (NaN in diffusers for ``heun`` and order 3), so samples are unchanged and the
  run makes one model call fewer (``nfe = n - 1``); orders follow diffusers' ``n`` steps;
* with Karras sigmas on the cosine (``squaredcos_cap_v2``) schedule the model gets the
  fractional timesteps diffusers means to keep (diffusers truncates them to int64, which
  repeats timesteps and crashes its index lookup: diffusers#12771); our steps are
  indexed by scan row, so no lookup can drift;
* on a FlowSchedule the model gets fractional timesteps ``s T`` (diffusers truncates).
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._validation import check_choice, check_int_range, normalize_name
from jaxdiff.samplers.base import DiscreteMethod, check_flags, set_choice
from jaxdiff.samplers.dpm_updates import (
    ALGORITHM_TYPES,
    SOLVER_TYPES,
    multistep_update,
    weights,
)
from jaxdiff.samplers.driver import Plan
from jaxdiff.samplers.noise import normal_like
from jaxdiff.samplers.prediction import to_x0_eps
from jaxdiff.schedules.discrete import DiscreteSchedule
from jaxdiff.schedules.flow import FlowSchedule
from jaxdiff.schedules.sigmas import karras_sigmas, sigma_to_t

__all__ = ["DPMSolver", "FINAL_SIGMAS_TYPES", "solver_orders"]

FINAL_SIGMAS_TYPES = ("zero", "sigma_min")
_ZERO_SNR_ALPHA_BAR = 2.0**-24  # diffusers' stand-in for alpha_bar_T = 0 (zero terminal SNR)
_COSINE = ("cosine", "squaredcos_cap_v2")


def solver_orders(
    num_steps: int,
    solver_order: int,
    *,
    lower_order_final: bool,
    euler_at_final: bool,
    final_zero: bool,
) -> np.ndarray:
    """Host int32 ``[num_steps]``: the order diffusers uses at each step.

    Step ``i`` has ``i`` earlier outputs, so its order is ``min(i + 1, solver_order)``
    (warm-up). The last step is first order when ``euler_at_final``, when the final
    sigma is zero (``lambda = inf`` there), or when ``lower_order_final`` and
    ``num_steps < 15``; in that last case the second-to-last step is at most second order.
    """
    i = np.arange(num_steps)
    orders = np.minimum(i + 1, solver_order)
    short = lower_order_final and num_steps < 15
    if euler_at_final or final_zero or short:
        orders[-1] = 1
    if short and num_steps >= 2:
        orders[-2] = min(orders[-2], 2)
    return orders.astype(np.int32)


@struct.dataclass
class DPMSolver(DiscreteMethod):
    """Multistep DPM-Solver / DPM-Solver++ config (all fields below static).

    Attributes:
      algorithm_type: ``dpmsolver++`` (data-prediction solver, Lu et al. 2022b),
        ``dpmsolver`` (noise-prediction solver, Lu et al. 2022a; needs
        ``final_sigmas_type="sigma_min"``, as in diffusers) or ``sde-dpmsolver++``
        (stochastic; one fresh normal draw per step from the step's key).
      solver_order: 1, 2 or 3.
      solver_type: ``midpoint`` or ``heun``: the second-order weight (order 3 ignores it).
      lower_order_final: with fewer than 15 steps, lower the order of the last two steps.
      euler_at_final: make the last step first order.
      use_karras_sigmas: Karras et al. (2022, eq. 5, ``rho = 7``) sigmas between the
        smallest and largest training sigma; ``timestep_spacing`` is then unused and the
        model timesteps are :func:`~jaxdiff.schedules.sigmas.sigma_to_t`, rounded
        (kept fractional on the cosine schedule). Discrete schedules only.
      final_sigmas_type: the last step lands on ``zero`` noise or on the smallest
        training sigma (``sigma_min``; discrete schedules only).
      timestep_spacing: default ``linspace`` (diffusers' default for this solver); the
        ``n + 1``-point rule of diffusers (the last point dropped).

    The number of model calls is ``num_inference_steps`` (one fewer when a zero-length
    last step is dropped; see the module docstring).
    """

    schedule_types: ClassVar[tuple] = (DiscreteSchedule, FlowSchedule)
    timestep_spacing: str = struct.field(pytree_node=False, default="linspace")
    algorithm_type: str = struct.field(pytree_node=False, default="dpmsolver++")
    solver_order: int = struct.field(pytree_node=False, default=2)
    solver_type: str = struct.field(pytree_node=False, default="midpoint")
    lower_order_final: bool = struct.field(pytree_node=False, default=True)
    euler_at_final: bool = struct.field(pytree_node=False, default=False)
    use_karras_sigmas: bool = struct.field(pytree_node=False, default=False)
    final_sigmas_type: str = struct.field(pytree_node=False, default="zero")

    def __post_init__(self):
        super().__post_init__()
        set_choice(self, "algorithm_type", ALGORITHM_TYPES)
        check_int_range("solver_order", self.solver_order, 1, 3)
        set_choice(self, "solver_type", SOLVER_TYPES)
        set_choice(self, "final_sigmas_type", FINAL_SIGMAS_TYPES)
        check_flags(self, "lower_order_final", "euler_at_final", "use_karras_sigmas")

    # --- validation ------------------------------------------------------------------
    def check(self, schedule) -> None:
        """Validate the static fields against ``schedule``; raise naming the field."""
        self.validate(schedule)
        algorithm = check_choice("algorithm_type", self.algorithm_type, ALGORITHM_TYPES)
        check_int_range("solver_order", self.solver_order, 1, 3)
        check_choice("solver_type", self.solver_type, SOLVER_TYPES)
        final = check_choice("final_sigmas_type", self.final_sigmas_type, FINAL_SIGMAS_TYPES)
        if algorithm == "dpmsolver" and final == "zero":
            raise ValueError(
                "final_sigmas_type='zero' is not supported with algorithm_type='dpmsolver' "
                "(its noise-model update is undefined at sigma = 0); use 'sigma_min' or "
                "algorithm_type='dpmsolver++'"
            )
        flow = isinstance(schedule, FlowSchedule)
        if flow and (self.use_karras_sigmas or final == "sigma_min"):
            raise ValueError(
                "use_karras_sigmas=True / final_sigmas_type='sigma_min' need a "
                "DiscreteSchedule; on a FlowSchedule use use_karras_sigmas=False and "
                "final_sigmas_type='zero'"
            )
        self.check_prediction_for(schedule)

    @property
    def _algorithm(self) -> str:
        return normalize_name(self.algorithm_type)

    # --- grid --------------------------------------------------------------------------
    def _discrete_grid(self, schedule):
        """Timesteps ``[n]``, sigmas ``[n + 1]`` and whether the last step has length 0."""
        n = self.num_inference_steps
        ab = schedule.alphas_cumprod
        if schedule.rescaled_zero_snr:
            ab = ab.at[-1].set(_ZERO_SNR_ALPHA_BAR)
        ab = jnp.where(ab > 0, ab, _ZERO_SNR_ALPHA_BAR)  # custom betas ending in 1
        train = ((1.0 - ab) / ab) ** 0.5  # [T] increasing training sigmas
        if self.use_karras_sigmas:
            sig = karras_sigmas(train[0], train[-1], n)
            t = sigma_to_t(sig, train)
            if schedule.schedule_type not in _COSINE:
                t = jnp.round(t)
            ends_at_min = True
        else:
            ts = self.spaced(schedule, plan_extra_point=True)  # host float64 [n]
            sig, t = train[ts.astype(np.int64)], ts
            ends_at_min = bool(ts[-1] == 0)
        sigma_min = normalize_name(self.final_sigmas_type) == "sigma_min"
        last = train[0] if sigma_min else jnp.zeros((), train.dtype)
        sigmas = jnp.concatenate([sig, last[None]])
        alpha = 1.0 / (sigmas**2 + 1.0) ** 0.5
        return (
            jnp.asarray(t, jnp.float32),
            sigmas,
            alpha,
            sigmas * alpha,
            (sigma_min and ends_at_min and n > 1),
        )

    def _flow_grid(self, schedule):
        """Diffusers' ``use_flow_sigmas`` grid: ``n`` shifted sigmas, then 0."""
        n, T = self.num_inference_steps, schedule.num_train_timesteps
        if schedule.custom_sigmas is not None:
            sig = schedule.inference_sigmas(n)
        else:
            base = 1.0 - jnp.linspace(1.0, 1.0 / T, n + 1)  # 0 ... 1 - 1/T
            sig = schedule.shift_sigma(base[::-1][:-1])
        sigmas = jnp.concatenate([sig, jnp.zeros((1,), sig.dtype)])
        return schedule.timestep(sig).astype(jnp.float32), sigmas, 1.0 - sigmas, sigmas, False

    def plan(self, schedule) -> Plan:
        """Rows: levels at ``s0`` and ``t``, the ``lambda`` steps ``h, h0, h1``, the order."""
        self.check(schedule)
        flow = isinstance(schedule, FlowSchedule)
        grid = self._flow_grid if flow else self._discrete_grid
        timesteps, sigmas, alpha, sigma, drop_last = grid(schedule)
        n = self.num_inference_steps
        orders = solver_orders(
            n,
            self.solver_order,
            lower_order_final=self.lower_order_final,
            euler_at_final=self.euler_at_final,
            final_zero=normalize_name(self.final_sigmas_type) == "zero",
        )
        lam = jnp.log(alpha) - jnp.log(sigma)  # [n + 1]; inf at a zero final sigma
        # Two finite placeholders before the first level: only the unused branches of the
        # warm-up steps read them.
        pad = jnp.concatenate([lam[:1] - 2.0, lam[:1] - 1.0, lam])
        lam_s0, lam_s1, lam_s2 = pad[2 : n + 2], pad[1 : n + 1], pad[:n]
        steps = {
            "alpha_s0": alpha[:n],
            "sigma_s0": sigma[:n],
            "alpha_t": alpha[1:],
            "sigma_t": sigma[1:],
            "h": lam[1:] - lam_s0,
            "h0": lam_s0 - lam_s1,
            "h1": lam_s1 - lam_s2,
            "order": jnp.asarray(orders),
        }
        k = n - 1 if drop_last else n
        steps = jax.tree_util.tree_map(lambda a: a[:k], steps)
        return Plan(
            timesteps=timesteps[:k], steps=steps, init_noise_sigma=jnp.ones((), sigmas.dtype)
        )

    # --- loop ----------------------------------------------------------------------------
    def init_state(self, x, plan):
        """History ``(m_{i-1}, m_{i-2})[:solver_order - 1]`` of converted outputs, zeros."""
        return tuple(jnp.zeros_like(x) for _ in range(self.solver_order - 1))

    def scale_model_input(self, x, step):
        """DPM-Solver feeds ``x_t`` unscaled."""
        return x

    def convert_model_output(self, model_output, x, alpha, sigma):
        """``x0`` (DPM-Solver++) or ``eps`` (DPM-Solver) from the model output at ``x``.

        ``x0`` is thresholded / clipped when asked; for DPM-Solver ``eps`` is then
        recomputed from the processed ``x0`` (diffusers' ``convert_model_output``).
        """
        if self._algorithm != "dpmsolver":
            return self.predict(model_output, x, alpha, sigma)[0]
        _, eps = to_x0_eps(model_output, x, alpha, sigma, self.prediction_type)
        if not (self.thresholding or self.clip_sample):
            return eps
        x0 = self.process_x0((x - sigma * eps) / alpha)
        return (x - alpha * x0) / sigma

    def step(self, key, state, x, model_output, step):
        """One multistep update from ``s_i`` to ``s_{i+1}`` (order from the plan row)."""
        # 1. the model output as the quantity the solver integrates (x0 or eps).
        m0 = self.convert_model_output(model_output, x, step["alpha_s0"], step["sigma_s0"])
        history = tuple(state)
        m1 = history[0] if history else None
        m2 = history[1] if len(history) > 1 else None
        # 2. exponential-integrator weights of this step (Lu et al. 2022a/b).
        w = weights(
            self._algorithm,
            step["alpha_t"],
            step["sigma_t"],
            step["alpha_s0"],
            step["sigma_s0"],
            step["h"],
        )
        noise = None
        if self._algorithm.startswith("sde"):
            noise = normal_like(key, x)
        # 3. the planned-order multistep update; the new output joins the history.
        x_next = multistep_update(
            step["order"],
            w,
            x,
            m0,
            m1,
            m2,
            step["h"],
            step["h0"],
            step["h1"],
            max_order=self.solver_order,
            solver_type=normalize_name(self.solver_type),
            noise=noise,
        )
        new_state = ((m0,) + history)[: self.solver_order - 1]
        return new_state, x_next.astype(x.dtype)
