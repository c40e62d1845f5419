"""Euler and Euler-ancestral samplers in sigma space.

After Karras et al. (2022), "Elucidating the Design Space of Diffusion-Based Generative
Models" (EDM), Algorithm 2.

Notation: a discrete (VP) schedule is walked in its variance-exploding form
``x = x0 + sigma eps`` with ``sigma = sqrt((1 - alpha_bar) / alpha_bar)``; the model is
fed the VP state ``x / sqrt(1 + sigma^2)`` at a fractional training timestep. A
:class:`~jaxdiff.schedules.flow.FlowSchedule` is walked in its own form
``x = (1 - sigma) x0 + sigma eps`` and the model is fed ``x`` at timestep ``sigma T``.
In both, ``d = (x - x0) / sigma`` is the probability-flow ODE direction ``dx/dsigma``
(EDM eqs. 1 and 3 with ``sigma(t) = t``; for flow it is the velocity ``eps - x0``), so one Euler
update serves both; that is why Euler takes either schedule instead of a separate
flow method. Grids match diffusers' ``EulerDiscreteScheduler``,
``EulerAncestralDiscreteScheduler`` and ``FlowMatchEulerDiscreteScheduler``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import jax.numpy as jnp
from flax import struct

from jaxdiff.samplers.base import DiscreteMethod, check_flags, check_knob, set_choice
from jaxdiff.samplers.driver import Plan
from jaxdiff.samplers.noise import normal_like
from jaxdiff.schedules.discrete import DiscreteSchedule
from jaxdiff.schedules.flow import FlowSchedule
from jaxdiff.schedules.sigmas import interp_timesteps, karras_sigmas, sigma_to_t

__all__ = [
    "SigmaMethod",
    "SigmaGrid",
    "Euler",
    "EulerAncestral",
    "INTERPOLATION_TYPES",
    "FINAL_SIGMAS_TYPES",
]

INTERPOLATION_TYPES = ("linear", "log_linear")
FINAL_SIGMAS_TYPES = ("zero", "sigma_min")
_ZERO_SNR_ALPHA_BAR = 2.0**-24  # diffusers' stand-in for alpha_bar_T = 0


class SigmaGrid(NamedTuple):
    """The sigma walk of one run (``K`` steps, ``K`` model calls for Euler).

    Attributes:
      timesteps: ``[K]`` model timesteps (fractional training timesteps, or ``sigma T``).
      sigmas: ``[K + 1]`` descending sigmas; step ``i`` goes ``sigmas[i] -> sigmas[i+1]``.
      scale: ``[K]`` model-input scale at ``sigmas[:K]`` (``1/sqrt(1+sigma^2)`` or 1).
      alpha: ``[K]`` signal scale of the model input (``scale`` for VP, ``1 - sigma``).
      init_noise_sigma: scalar std of the initial latents.
      num_sigmas: diffusers' ``len(scheduler.sigmas)`` (static int; sets the churn).
    """

    timesteps: Any
    sigmas: Any
    scale: Any
    alpha: Any
    init_noise_sigma: Any
    num_sigmas: int


@struct.dataclass
class SigmaMethod(DiscreteMethod):
    """Base of the sigma-space samplers (Euler, EulerAncestral, Heun).

    Attributes:
      timestep_spacing: default ``linspace`` (diffusers' Euler/Heun default; static).
        Ignored on a FlowSchedule, whose grid is always evenly spaced before the shift.
      use_karras_sigmas: replace the grid by Karras et al. (2022) eq. 5 sigmas between the
        grid's ends (``rho = 7``), with timesteps from
        :func:`~jaxdiff.schedules.sigmas.sigma_to_t` (static).

    Prediction types: ``epsilon``, ``v_prediction``, ``sample``, ``score`` on a
    DiscreteSchedule; ``flow``, ``sample``, ``epsilon``, ``score`` on a FlowSchedule
    (converted with ``alpha = 1 - sigma``). ``epsilon`` and ``score`` cannot recover
    ``x0`` at ``sigma = 1``, where ``x`` is pure noise: on a flow schedule use them with
    custom sigmas below 1.
    """

    schedule_types: ClassVar[tuple] = (DiscreteSchedule, FlowSchedule)
    timestep_spacing: str = struct.field(pytree_node=False, default="linspace")
    use_karras_sigmas: bool = struct.field(pytree_node=False, default=False)

    def __post_init__(self):
        super().__post_init__()
        check_flags(self, "use_karras_sigmas")

    def check_schedule(self, schedule) -> None:
        """Validate static fields against ``schedule``; raise naming the field."""
        self.validate(schedule)
        self.check_prediction_for(schedule)

    def sigma_grid(
        self, schedule, *, interpolation_type: str = "linear", final_sigmas_type: str = "zero"
    ) -> SigmaGrid:
        """Build the sigma walk of diffusers' ``set_timesteps`` (after ``check_schedule``).

        Discrete: the spaced timesteps (fractional for ``linspace``), their sigmas by
        linear interpolation in ``t`` (``log_linear``: ``n + 1`` sigmas evenly spaced in
        ``log sigma`` from the largest to the smallest training sigma, while the model
        timesteps stay the spaced ones, exactly as diffusers), optional Karras sigmas,
        then the final sigma (``zero`` or the smallest training sigma). Diffusers repeats
        the last sigma when ``sigma_min`` meets a grid that already ends there (a
        zero-length last step, the defect diffusers#6477 fixed for DPM-Solver); we drop
        that step, giving the same samples with one model call fewer.
        Flow: the schedule's shifted sigmas (or Karras between their ends), then 0.
        """
        n = self.num_inference_steps
        if isinstance(schedule, FlowSchedule):
            if interpolation_type != "linear" or final_sigmas_type != "zero":
                raise ValueError(
                    f"interpolation_type={interpolation_type!r} / final_sigmas_type="
                    f"{final_sigmas_type!r} do not apply to a FlowSchedule; use 'linear' / 'zero'"
                )
            sig = schedule.inference_sigmas(n)
            if self.use_karras_sigmas:
                sig = karras_sigmas(sig[-1], sig[0], n)
            walk = jnp.concatenate([sig, jnp.zeros((1,), sig.dtype)])
            return SigmaGrid(
                timesteps=schedule.timestep(sig),
                sigmas=walk,
                scale=jnp.ones_like(sig),
                alpha=1.0 - sig,
                init_noise_sigma=jnp.ones((), sig.dtype),
                num_sigmas=n + 1,
            )
        ab = schedule.alphas_cumprod
        if schedule.rescaled_zero_snr:
            ab = ab.at[-1].set(_ZERO_SNR_ALPHA_BAR)
        ab = jnp.where(ab > 0, ab, _ZERO_SNR_ALPHA_BAR)  # custom betas ending in 1
        train = jnp.sqrt((1.0 - ab) / ab)  # [T], increasing in t
        ts = self.spaced(schedule, round_linspace=False)  # host float64 [n]
        timesteps = jnp.asarray(ts, jnp.float32)
        if interpolation_type == "linear":
            sig = interp_timesteps(jnp.asarray(ts, ab.dtype), train)
        else:
            sig = jnp.exp(jnp.linspace(jnp.log(train[-1]), jnp.log(train[0]), n + 1))
        ends_at_min = interpolation_type == "log_linear" or ts[-1] == 0
        if self.use_karras_sigmas:
            sig = karras_sigmas(sig[-1], sig[0], n)
            timesteps = sigma_to_t(sig, train).astype(jnp.float32)
        else:
            ends_at_min = ends_at_min and interpolation_type == "linear"
        last = train[0] if final_sigmas_type == "sigma_min" else jnp.zeros((), sig.dtype)
        every = jnp.concatenate([sig, last[None]])
        num_steps = n - 1 if (final_sigmas_type == "sigma_min" and ends_at_min and n > 1) else n
        walk = every[: num_steps + 1]
        scale = 1.0 / jnp.sqrt(walk[:num_steps] ** 2 + 1.0)
        top = jnp.max(every)
        init = top if self.timestep_spacing in ("linspace", "trailing") else jnp.sqrt(top**2 + 1)
        return SigmaGrid(
            timesteps=timesteps[:num_steps],
            sigmas=walk,
            scale=scale,
            alpha=scale,
            init_noise_sigma=init,
            num_sigmas=int(every.shape[0]),
        )

    def init_state(self, x, plan):
        """Single-step method: no state."""
        return ()

    def scale_model_input(self, x, step):
        """``x / sqrt(1 + sigma^2)`` (discrete) or ``x`` (flow)."""
        return x * step["scale"]


@struct.dataclass
class Euler(SigmaMethod):
    """Euler sampler config.

    Matches diffusers' ``EulerDiscreteScheduler`` on a DiscreteSchedule and
    ``FlowMatchEulerDiscreteScheduler`` on a FlowSchedule.

    Attributes:
      interpolation_type: ``linear`` or ``log_linear`` sigma grid (static).
      final_sigmas_type: ``zero`` or ``sigma_min``: where the last step lands (static).
        With ``sigma_min`` on a grid that already ends at the smallest training sigma
        (``linspace``, or ``leading`` with ``steps_offset = 0``) the run makes ``n - 1``
        model calls; see :meth:`SigmaMethod.sigma_grid`. Otherwise NFE is ``n``.
      s_churn, s_tmin, s_tmax, s_noise: stochastic churn of Karras et al. (2022) Alg. 2
        (traced). ``gamma = min(s_churn / N, sqrt(2) - 1)`` on steps with
        ``s_tmin <= sigma <= s_tmax`` (``N`` as diffusers counts its sigmas), noise from
        the step's key. On a FlowSchedule they are ignored, as diffusers'
        ``FlowMatchEulerDiscreteScheduler.step`` ignores them.
    """

    interpolation_type: str = struct.field(pytree_node=False, default="linear")
    final_sigmas_type: str = struct.field(pytree_node=False, default="zero")
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        set_choice(self, "interpolation_type", INTERPOLATION_TYPES)
        set_choice(self, "final_sigmas_type", FINAL_SIGMAS_TYPES)
        for field in ("s_churn", "s_tmin", "s_noise"):
            check_knob(self, field, low=0.0)
        check_knob(self, "s_tmax", low=0.0, allow_inf=True)

    def plan(self, schedule) -> Plan:
        """Rows: ``sigma``, ``sigma_hat`` (churned), ``sigma_next``, ``scale``, ``alpha``."""
        self.check_schedule(schedule)
        grid = self.sigma_grid(
            schedule,
            interpolation_type=self.interpolation_type,
            final_sigmas_type=self.final_sigmas_type,
        )
        sigma = grid.sigmas[:-1]
        if isinstance(schedule, FlowSchedule):
            sigma_hat = sigma
        else:
            gamma = jnp.minimum(self.s_churn / (grid.num_sigmas - 1), math.sqrt(2.0) - 1.0)
            churned = (self.s_tmin <= sigma) & (sigma <= self.s_tmax)
            sigma_hat = sigma * (jnp.where(churned, gamma, 0.0) + 1.0)
        steps = {
            "sigma": sigma,
            "sigma_hat": sigma_hat,
            "sigma_next": grid.sigmas[1:],
            "scale": grid.scale,
            "alpha": grid.alpha,
        }
        return Plan(timesteps=grid.timesteps, steps=steps, init_noise_sigma=grid.init_noise_sigma)

    def step(self, key, state, x, model_output, step):
        """One (optionally churned) Euler step from ``sigma`` to ``sigma_next``."""
        s, s_hat, s_next = step["sigma"], step["sigma_hat"], step["sigma_next"]

        # 1. churn (EDM Alg. 2, lines 4-7): raise the noise level to sigma_hat = (1 + gamma) sigma
        #    by adding N(0, s_noise^2 (sigma_hat^2 - sigma^2)) noise; exactly x when gamma = 0.
        #    Arithmetic rather than lax.cond: a conditional costs a host sync per step on GPU.
        z = normal_like(key, x) * self.s_noise
        #    The where keeps it exact: XLA may contract s_hat^2 - s^2 into an FMA whose
        #    rounding residue is not zero when s_hat == s.
        x_hat = x + z * jnp.sqrt(jnp.where(s_hat > s, s_hat**2 - s**2, 0.0))
        # 2. x0 from the model output, which was computed at (x, sigma). As diffusers does,
        #    an epsilon output is read at sigma_hat (x0 = x_hat - sigma_hat eps), others at sigma.
        level = s_hat if self.prediction_type == "epsilon" else s
        x0, _ = self.predict(
            model_output, step["scale"] * x_hat, step["alpha"], step["scale"] * level
        )
        # 3. Euler step on dx/dsigma = (x - x0) / sigma (EDM Alg. 2, lines 8-9).
        d = (x_hat - x0) / s_hat
        return state, x_hat + d * (s_next - s_hat)


@struct.dataclass
class EulerAncestral(SigmaMethod):
    """Euler-ancestral sampler config (diffusers' ``EulerAncestralDiscreteScheduler``).

    Each step goes deterministically down to ``sigma_down`` and adds fresh noise of std
    ``sigma_up`` so the marginal noise level is ``sigma_next`` (k-diffusion's
    ``get_ancestral_step`` with ``eta = 1``; the DDPM ancestral step in sigma form, Ho
    et al. 2020). Discrete schedules only. ``use_karras_sigmas`` is our extension
    (diffusers' ancestral scheduler has only the plain grid); it walks Euler's grid.
    """

    def plan(self, schedule) -> Plan:
        """Rows: ``sigma``, ``sigma_up``, ``sigma_down``, ``scale``, ``alpha``."""
        if isinstance(schedule, FlowSchedule):
            raise TypeError(
                "schedule: EulerAncestral needs a DiscreteSchedule; its ancestral "
                "noise is variance-exploding. Use Euler on a FlowSchedule"
            )
        self.check_schedule(schedule)
        grid = self.sigma_grid(schedule)
        s, s_next = grid.sigmas[:-1], grid.sigmas[1:]
        up = jnp.sqrt(s_next**2 * (s**2 - s_next**2) / s**2)
        down = jnp.sqrt(s_next**2 - up**2)
        steps = {
            "sigma": s,
            "sigma_up": up,
            "sigma_down": down,
            "scale": grid.scale,
            "alpha": grid.alpha,
        }
        return Plan(timesteps=grid.timesteps, steps=steps, init_noise_sigma=grid.init_noise_sigma)

    def step(self, key, state, x, model_output, step):
        """One ancestral step from ``sigma`` to ``sigma_next``."""
        s, scale = step["sigma"], step["scale"]
        # 1. x0 from the model output at (x, sigma).
        x0, _ = self.predict(model_output, scale * x, step["alpha"], scale * s)
        # 2. deterministic Euler step down to sigma_down ...
        x_down = x + (x - x0) / s * (step["sigma_down"] - s)
        # 3. ... plus fresh noise of std sigma_up (sigma_down^2 + sigma_up^2 = sigma_next^2).
        noise = normal_like(key, x)
        return state, x_down + noise * step["sigma_up"]
