"""Pure update formulas of multistep DPM-Solver and DPM-Solver++.

Notation (Lu et al. 2022a, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic
Model Sampling in Around 10 Steps", sec. 3): ``x_t = alpha_t x0 + sigma_t eps`` and the
half log-SNR ``lambda_t = log(alpha_t / sigma_t)``. One step goes from ``s0`` (the current
noise level) to ``t`` (the next, less noisy one) with ``h = lambda_t - lambda_s0 > 0``;
``s1``, ``s2`` are the two previous levels, ``h0 = lambda_s0 - lambda_s1``,
``h1 = lambda_s1 - lambda_s2``, ``r0 = h0 / h``, ``r1 = h1 / h``. ``m0, m1, m2`` are the
converted model outputs at ``s0, s1, s2`` (``x0`` predictions for DPM-Solver++, noise
predictions for DPM-Solver).

The exact solution of the diffusion ODE by variation of constants (DPM-Solver, sec. 3.1,
for the noise model; DPM-Solver++, Lu et al. 2022b, "DPM-Solver++: Fast Solver for Guided
Sampling of Diffusion Probabilistic Models", sec. 4.1, for the data model) is a linear
term in ``x_s0`` plus an exponentially weighted integral of the model over ``lambda``.
Expanding the model in ``lambda`` around ``s0`` with backward differences of the history
gives every update here as

    ``x_t = ratio x_s0 + c0 D0 + c1 D1 + c2 D2 (+ noise_std z)``

with ``D0 = m0``, ``D1``, ``D2`` the first and second divided differences (scaled by
``h``) and ``c_k`` integrals of ``exp`` times powers of ``lambda``, written with
``expm1``. Order 2 has two ``c1``: ``midpoint`` (DPM-Solver++(2M), Lu et al. 2022b,
Algorithm 2) and ``heun`` (the exact first-order Taylor weight); order 3 always uses the
latter. ``sde-dpmsolver++`` is the SDE variant of DPM-Solver++ (Lu et al. 2022b,
appendix; Gonzalez et al. 2023 "SEEDS" give the same exponential integrator): the same
form with ``h`` doubled in the weights plus fresh Gaussian noise. These are the
formulas of diffusers' ``DPMSolverMultistepScheduler``; all functions are traceable and
elementwise, with scalars (or arrays broadcasting against ``x``) for the levels.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

__all__ = ["ALGORITHM_TYPES", "SOLVER_TYPES", "Weights", "weights", "multistep_update"]

ALGORITHM_TYPES = ("dpmsolver++", "dpmsolver", "sde-dpmsolver++")
SOLVER_TYPES = ("midpoint", "heun")


class Weights(NamedTuple):
    """Coefficients of one update ``x_t = ratio x + c0 D0 + c1 D1 + c2 D2 + noise_std z``.

    Attributes:
      ratio: weight of the current sample ``x_s0``.
      c0: weight of ``D0 = m0`` (the first-order, DDIM-like term).
      c1_midpoint: order-2 weight of ``D1`` for ``solver_type="midpoint"``.
      c1: weight of ``D1`` for ``heun`` order 2 and for order 3.
      c2: order-3 weight of ``D2``.
      noise_std: standard deviation of the injected noise (0 for the ODE solvers).
    """

    ratio: Any
    c0: Any
    c1_midpoint: Any
    c1: Any
    c2: Any
    noise_std: Any


def weights(algorithm_type: str, alpha_t, sigma_t, alpha_s, sigma_s, h) -> Weights:
    """Update weights from ``s0`` to ``t`` (``algorithm_type`` static, the rest traced).

    With ``e = expm1(-h)`` (``expm1(h)`` for DPM-Solver), the integrals of the
    exponential against ``1``, ``lambda`` and ``lambda^2`` over the step:

    * DPM-Solver++ (data model, Lu et al. 2022b, sec. 4.1 / Algorithm 2):
      ``ratio = sigma_t / sigma_s``, ``c0 = -alpha_t e``, ``c1_midpoint = c0 / 2``,
      ``c1 = alpha_t (e / h + 1)``, ``c2 = -alpha_t ((e + h) / h^2 - 1/2)``.
    * DPM-Solver (noise model, Lu et al. 2022a, sec. 3.3 and appendix B):
      ``ratio = alpha_t / alpha_s``, ``c0 = -sigma_t e``, ``c1_midpoint = c0 / 2``,
      ``c1 = -sigma_t (e / h - 1)``, ``c2 = -sigma_t ((e - h) / h^2 - 1/2)``.
    * SDE-DPM-Solver++: ``ratio = sigma_t / sigma_s exp(-h)`` and, with
      ``e2 = expm1(-2h)``, ``c0 = -alpha_t e2``, ``c1 = alpha_t (e2 / (2h) + 1)``,
      ``c2 = alpha_t ((-e2 - 2h) / (2h)^2 - 1/2)``, ``noise_std = sigma_t sqrt(-e2)``.

    At ``sigma_t = 0`` (``h = inf``, the last step with ``final_sigmas_type="zero"``)
    the DPM-Solver++ first-order update returns ``m0`` exactly.
    """
    # h = inf only on a last step to sigma = 0, which is always first order; keep the
    # higher-order weights (unused there) finite instead of inf / inf.
    hk = jnp.where(jnp.isfinite(h), h, 1.0)
    if algorithm_type == "dpmsolver++":
        e, ek = jnp.expm1(-h), jnp.expm1(-hk)
        return Weights(
            ratio=sigma_t / sigma_s,
            c0=-alpha_t * e,
            c1_midpoint=-0.5 * alpha_t * e,
            c1=alpha_t * (ek / hk + 1.0),
            c2=-alpha_t * ((ek + hk) / hk**2 - 0.5),
            noise_std=jnp.zeros_like(h),
        )
    if algorithm_type == "dpmsolver":
        e = jnp.expm1(h)
        return Weights(
            ratio=alpha_t / alpha_s,
            c0=-sigma_t * e,
            c1_midpoint=-0.5 * sigma_t * e,
            c1=-sigma_t * (e / h - 1.0),
            c2=-sigma_t * ((e - h) / h**2 - 0.5),
            noise_std=jnp.zeros_like(h),
        )
    if algorithm_type == "sde-dpmsolver++":
        e2, ek = jnp.expm1(-2.0 * h), jnp.expm1(-2.0 * hk)  # exp(-2h) - 1, in (-1, 0]
        return Weights(
            ratio=sigma_t / sigma_s * jnp.exp(-h),
            c0=-alpha_t * e2,
            c1_midpoint=-0.5 * alpha_t * e2,
            c1=alpha_t * (ek / (2.0 * hk) + 1.0),
            c2=alpha_t * ((-ek - 2.0 * hk) / (2.0 * hk) ** 2 - 0.5),
            noise_std=sigma_t * jnp.sqrt(-e2),
        )
    raise ValueError(
        f"algorithm_type={algorithm_type!r} is not supported; choose one of "
        f"{sorted(ALGORITHM_TYPES)}"
    )


def multistep_update(
    order, w: Weights, x, m0, m1, m2, h, h0, h1, *, max_order: int, solver_type: str, noise=None
):
    """One multistep update of the given order (1, 2 or 3) from ``x`` at ``s0``.

    Args:
      order: int32 scalar (traced) in ``[1, max_order]``. All branches up to
        ``max_order`` are evaluated (a few fused elementwise ops) and the one of this
        order is selected with ``jnp.where``: a ``lax.switch`` would make XLA read the
        branch index on the host at every step on GPU.
      w: the :func:`weights` of this step.
      x: ``[B, ...]`` current sample.
      m0: ``[B, ...]`` converted model output at ``s0`` (this step's).
      m1: ``[B, ...]`` converted output at ``s1``, or None when ``max_order < 2``.
      m2: ``[B, ...]`` converted output at ``s2``, or None when ``max_order < 3``.
      h: scalar ``lambda_t - lambda_s0`` (``inf`` when ``sigma_t = 0``).
      h0: scalar ``lambda_s0 - lambda_s1`` (read by orders 2 and 3 only, so a finite
        placeholder is harmless on warm-up steps).
      h1: scalar ``lambda_s1 - lambda_s2`` (read by order 3 only).
      max_order: the solver's ``solver_order`` (static): branches above it are not built.
      solver_type: ``midpoint`` or ``heun`` (static), used by order 2.
      noise: ``[B, ...]`` standard normal noise, or None for the ODE solvers.

    Returns:
      ``[B, ...]`` sample at ``t``.
    """
    base = w.ratio * x
    if noise is not None:
        base = base + w.noise_std * noise

    def first(_):
        # DPM-Solver-1 / DPM-Solver++1: zeroth-order Taylor term only (DDIM's update).
        return base + w.c0 * m0

    def second(_):
        # Two-step backward difference: D1 = (m0 - m1) / r0 ~ h dm/dlambda.
        d1 = (m0 - m1) * (h / h0)
        c1 = w.c1_midpoint if solver_type == "midpoint" else w.c1
        return base + w.c0 * m0 + c1 * d1

    def third(_):
        # Three-step differences (Lu et al. 2022b, appendix; diffusers' third-order step):
        # D1_0 = (m0 - m1) / r0, D1_1 = (m1 - m2) / r1,
        # D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1) / (r0 + r1).
        r0, r1 = h0 / h, h1 / h
        d1_0, d1_1 = (m0 - m1) / r0, (m1 - m2) / r1
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        return base + w.c0 * m0 + w.c1 * d1 + w.c2 * d2

    out = first(None)
    if max_order >= 2:
        out = jnp.where(order == 2, second(None), out)
    if max_order >= 3:
        out = jnp.where(order == 3, third(None), out)
    return out
