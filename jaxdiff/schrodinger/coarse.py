"""``CoarseToFineScore``: run the high-noise steps of an image sampler at 1/2 or 1/4 resolution.

A score-model wrapper for the Schrödinger-bridge samplers (:class:`~jaxdiff.schrodinger.
FastSBOTSolver`, :class:`~jaxdiff.schrodinger.AdvancedHierarchicalDiffusionSampler` with
``prediction_type="score"``, :class:`~jaxdiff.schrodinger.BridgeMethod`): for ``t >
t_switch`` the score of an NHWC image ``x`` ``[B, H, W, C]`` comes from one call of a
coarse model on ``[B, H/k, W/k, C]`` (``1/k^2`` of the pixels), below it from the fine
model. New in jaxdiff: the ATLAS original has no resolutions at all (spec atlas.md
section 1: "Nothing is hierarchical: no levels, no resolutions, no coarse-to-fine
seeding").

Notation: ``k`` in {2, 4} is the factor, ``P`` the ``k x k`` average pooling, ``U`` the
nearest-neighbour upsampling; ``P U = I``, ``P^T = U / k^2``, so ``U P`` is the orthogonal
projection onto block-constant images and ``x = U P x + d`` with the detail ``d = (I - U
P) x``. On the schedule ``x = alpha_t x0 + sigma_t z``:

1. ``y = P x = alpha_t P x0 + (sigma_t / k) z'`` with ``z' ~ N(0, I)`` (``P P^T = I /
   k^2``): the coarse image sees the pooled data ``P x0`` at noise ``sigma_t / k``, i.e.
   at the log-SNR ``log_snr(t) + 2 log k`` (Hoogeboom, Heek & Salimans 2023, "simple
   diffusion", sec. 3: the resolution shift of the noise schedule).
2. ``coarse_model(u, t')`` is a score model of ``P x0`` on the same schedule (a separate
   low-resolution network, or the same fully-convolutional one). With ``t' =
   t_from_log_snr(log_snr(t) + 2 log k)`` (so ``t' < t``) and ``u = (alpha(t') / alpha(t))
   y``, ``u`` is distributed as ``alpha(t') P x0 + sigma(t') z'``, hence
   ``grad_y log p_Y(y) = (alpha(t') / alpha(t)) coarse_model(u, t')``.
3. Assumption A (high noise): the data's detail ``(I - U P) x0`` is negligible and
   independent of ``P x0``, so on the detail subspace ``d ~ N(0, sigma_t^2)``. In the
   orthonormal coordinates ``w = U^T x / k = k y`` of the block-constant subspace,
   ``p_t(x) = p_Y(P x) N(d; 0, sigma_t^2)`` up to a constant, whose gradient is

   ``s(x, t) = U grad_y log p_Y(P x) / k^2 - (x - U P x) / sigma_t^2``.

   This is the score used for ``t > t_switch``; it is exact for data without detail
   (``x0 = U c``) and an exact coarse model (``tests/schrodinger/test_coarse.py``).

The variance is kept consistent with ``p_t``: under the probability-flow ODE ``dx/dt = f x
- g^2 s / 2`` the detail follows ``d' = (f + g^2 / (2 sigma^2)) d = (d log sigma / dt) d``,
so ``d_t = d_1 sigma_t / sigma_1``: a zero-data Gaussian whose variance stays ``sigma_t^2``
for latents of std ``sigma_1`` (VP's ``N(0, I)`` latents: up to ``1 / (1 - alpha_1^2)``,
``1 + 4e-5`` on the linear schedule). At the switch the
state already has ``p_t``'s detail variance under Assumption A, so nothing is re-noised and
the fine model takes over the same ODE path.

When Assumption A fails: for data detail of std ``s`` comparable to ``sigma_t``, ``p_t``'s
detail variance is ``alpha_t^2 s^2 + sigma_t^2``, not ``sigma_t^2``. For Gaussian detail
independent of ``P x0`` the probability-flow run then ends with the detail std scaled by
``sigma_ts / sqrt(alpha_ts^2 s^2 + sigma_ts^2)`` (``ts = t_switch``): choose ``t_switch``
high enough that ``alpha_ts s << sigma_ts`` (linear VP, ``t_switch = 0.5``: ``alpha = 0.28,
sigma = 0.96``, a factor 0.9962 for ``s = 0.3``; ``t_switch = 0.2``: 0.923).

The branch is chosen on the step's time ``t[0]`` with ``jax.lax.cond`` (one model runs per
call): the samplers call the model with ``t`` ``[B]`` equal within a step. ``t'``, the gain
and ``sigma_t`` are per example. ``t'`` must stay in the schedule's range: with a VE
schedule (``log_snr(0)`` finite) keep ``log_snr(t_switch) + 2 log k <= log_snr(0)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxdiff._broadcast import broadcast_t
from jaxdiff.schedules.checks import check_number
from jaxdiff.schedules.continuous_base import ContinuousSchedule
from jaxdiff.schrodinger.fastsb_models import _check_output, check_schedule

__all__ = ["FACTORS", "CoarseToFineScore"]

#: The resolution factors ``k`` (the coarse image is ``H/k x W/k``).
FACTORS = (2, 4)


def _pool(x, k: int):
    """``P x``: ``k x k`` average pooling, ``[B, H, W, C] -> [B, H/k, W/k, C]``."""
    b, h, w, c = x.shape
    return x.reshape(b, h // k, k, w // k, k, c).mean(axis=(2, 4))


def _upsample(y, k: int):
    """``U y``: nearest-neighbour upsampling, ``[B, h, w, C] -> [B, k h, k w, C]``."""
    return jnp.repeat(jnp.repeat(y, k, axis=1), k, axis=2)


@dataclasses.dataclass(frozen=True, eq=False)
class CoarseToFineScore:
    """A score model that uses ``coarse_model`` at 1/``factor`` resolution above ``t_switch``.

    Called as ``score(x, t)`` with ``x`` ``[B, H, W, C]`` (NHWC, ``H`` and ``W`` divisible
    by ``factor``) and ``t`` ``[B]`` continuous time in ``[0, 1]`` (1 = noise), equal
    entries within a call; returns the score ``[B, H, W, C]`` (see the module), in the
    models' output dtypes promoted together. Hashed by identity, so it is a valid static
    ``score_model`` for the samplers.

    Attributes:
      fine_model: ``fine_model(x, t) -> score`` at full resolution.
      coarse_model: ``coarse_model(u, t') -> score`` on ``[B, H/k, W/k, C]``: a score model
        of the pooled data ``P x0`` on the same schedule.
      schedule: the :class:`~jaxdiff.schedules.continuous_base.ContinuousSchedule` of both.
      factor: ``k``, 2 or 4.
      t_switch: in ``(0, 1)``; the coarse score is used where ``t[0] > t_switch``.

    Raises:
      TypeError: a model that is not callable, or a schedule that is not continuous.
      ValueError: a ``factor`` other than 2 or 4, ``t_switch`` outside ``(0, 1)``, a model
        with ``predicts_noise = True`` (wrap it in
        :class:`~jaxdiff.schrodinger.NoisePredictorToScoreWrapper`); at the call, ``x`` not
        ``[B, H, W, C]`` with ``H``, ``W`` divisible by ``factor``, or a model returning
        another shape than its input's.
    """

    fine_model: Any
    coarse_model: Any
    schedule: ContinuousSchedule
    factor: int = 2
    t_switch: float = 0.5

    def __post_init__(self):
        for field in ("fine_model", "coarse_model"):
            model = getattr(self, field)
            if not callable(model):
                raise TypeError(f"{field} must be callable, got {type(model).__name__}")
            if getattr(model, "predicts_noise", False) is True:
                raise ValueError(
                    f"{field} has predicts_noise=True; CoarseToFineScore combines scores: wrap "
                    "a noise predictor in NoisePredictorToScoreWrapper(model, schedule) first"
                )
        check_schedule(self.schedule)
        if isinstance(self.factor, bool) or self.factor not in FACTORS:
            raise ValueError(f"factor={self.factor!r} is not allowed; choose one of {FACTORS}")
        object.__setattr__(self, "factor", int(self.factor))
        check_number("t_switch", self.t_switch, low=0.0, high=1.0, low_open=True, high_open=True)

    def coarse_score(self, x, t):
        """The full-resolution score from one coarse call (module, steps 1-3), ``x``'s shape."""
        k, sched = self.factor, self.schedule
        t_c = sched.t_from_log_snr(sched.log_snr(t) + 2.0 * math.log(k))
        y = _pool(x, k)
        gain = broadcast_t(sched.alpha(t_c) / sched.alpha(t), y)
        u = gain * y
        score_u = self.coarse_model(u, t_c)
        _check_output("coarse_model", score_u, u)
        sigma = broadcast_t(sched.sigma(t), x)
        return _upsample(gain * score_u, k) / k**2 - (x - _upsample(y, k)) / sigma**2

    def __call__(self, x, t):
        """The coarse score where ``t[0] > t_switch``, else ``fine_model(x, t)``."""
        shape = tuple(jnp.shape(x))
        k = self.factor
        if len(shape) != 4 or shape[1] % k or shape[2] % k:
            raise ValueError(
                f"x has shape {shape}; CoarseToFineScore needs [B, H, W, C] (NHWC) with H and "
                f"W divisible by factor={k}"
            )
        t = jnp.asarray(t)
        fine = jax.eval_shape(self.fine_model, x, t)
        _check_output("fine_model", fine, x)
        coarse = jax.eval_shape(self.coarse_score, x, t)
        dtype = jnp.result_type(fine.dtype, coarse.dtype)
        return jax.lax.cond(
            jnp.ravel(t)[0] > self.t_switch,
            lambda x, t: self.coarse_score(x, t).astype(dtype),
            lambda x, t: self.fine_model(x, t).astype(dtype),
            x,
            t,
        )
