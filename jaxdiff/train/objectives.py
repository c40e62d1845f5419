"""Training objectives: pure ``(key, params, apply_fn, batch) -> (loss, aux)`` callables.

Notation: data ``x_0`` ``[B, ...]`` (``batch["x"]``), noise ``eps ~ N(0, I)``, optional
conditioning ``batch["context"]``. ``apply_fn(params, x_t, t, context)`` is the model
contract of DESIGN.md (``t`` a ``[B]`` array). Each objective is a ``flax.struct``
dataclass (schedule numbers are traced leaves, choices static), so it can be closed
over by, or passed through, ``jit``.

Randomness is *per example*: ``key`` is one typed key (split into ``B`` keys) or a
``[B]`` array of keys, and example ``i``'s time and noise depend only on its own key.
Hence a batch split into micro-batches (or sharded over devices) sees exactly the same
noise as the whole batch, and accumulated gradients equal big-batch gradients.

Objectives (each loss is a mean over batch and feature dimensions):

* :class:`DenoisingObjective` -- DDPM training on a
  :class:`~jaxdiff.schedules.DiscreteSchedule`: ``t ~ U{0..T-1}``,
  ``x_t = alpha_t x_0 + sigma_t eps`` and regression onto ``eps`` (Ho et al. 2020,
  eq. 14, "simple" loss), ``v = alpha_t eps - sigma_t x_0`` (Salimans & Ho 2022, eq. 11)
  or ``x_0`` (``"sample"``).
* :class:`ScoreMatchingObjective` -- denoising score matching on a continuous VP (or
  VE) schedule (Song et al. 2021, eq. 7): ``t ~ U(t_min, 1)``, the model predicts
  ``s(x_t, t) ~ grad log p_t``, loss ``lambda(t) |s + eps / sigma_t|^2`` with
  ``lambda = sigma^2`` (default), ``g^2`` (likelihood weighting, Song et al. 2021b) or 1.
* :class:`FlowMatchingObjective` -- conditional flow matching with the rectified-flow
  path (Liu et al. 2023; Lipman et al. 2023, sec. 4.1 with ``sigma_min = 0``).

  **Convention**: ``t = 0`` is data and ``t = 1`` is noise,
  ``x_t = (1 - t) x_0 + t x_1`` with ``x_1 = batch["x1"]`` if given (e.g. an OT-paired
  source sample) else ``eps``, and the target velocity is ``u = x_1 - x_0``. This is
  :class:`~jaxdiff.schedules.FlowSchedule` with ``sigma = t`` and prediction type
  ``"flow"``, so the samplers integrate it from ``t = 1`` down to 0. (Lipman et al.
  run time the other way: their ``t`` is our ``1 - t`` and their velocity our ``-u``.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxdiff._broadcast import broadcast_t
from jaxdiff._keys import example_keys  # re-exported: per-example keys of the objectives
from jaxdiff._validation import check_choice, check_real, concrete_value
from jaxdiff.schedules import ContinuousSchedule, DiscreteSchedule

__all__ = [
    "DenoisingObjective",
    "FlowMatchingObjective",
    "Objective",
    "ScoreMatchingObjective",
    "as_batch",
    "example_keys",
]

ApplyFn = Callable[..., jax.Array]
Objective = Callable[[jax.Array, Any, ApplyFn, dict], tuple[jax.Array, dict]]


def as_batch(batch) -> dict:
    """A batch as a dict with ``"x"`` (and optional ``"context"``, ``"x1"``)."""
    if isinstance(batch, dict):
        if "x" not in batch:
            raise ValueError(f"batch must have an 'x' entry, got keys {sorted(batch)}")
        return batch
    return {"x": batch}


def _number(field: str, value, low: float, *, strict: bool = False) -> float:
    """A finite real (a Python/NumPy scalar or a concrete 0-d array) ``>= low``, else raise."""
    if isinstance(value, jax.Array | np.ndarray) and value.ndim == 0:
        host = concrete_value(value)
        value = value if host is None else float(host)  # a tracer fails in check_real
    return check_real(field, value, low, strict=strict)


def _float_data(batch):
    x = jnp.asarray(batch["x"])
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.zeros(()).dtype)  # counts / ints
    return x


def _mse(pred, target):
    """``[B]`` mean squared error over the non-batch dims, in the target's dtype."""
    err = pred.astype(target.dtype) - target
    return jnp.mean(err.reshape(err.shape[0], -1) ** 2, axis=1)


def _noise(keys, x):
    return jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], x.dtype))(keys)


class _Base:
    """Shared ``__call__``: the batch mean of :meth:`per_example_loss`."""

    def __call__(self, key, params, apply_fn: ApplyFn, batch) -> tuple[jax.Array, dict]:
        """Return ``(loss, aux)``: scalar mean loss and a dict of scalar diagnostics."""
        losses = self.per_example_loss(key, params, apply_fn, batch)
        loss = jnp.mean(losses)
        return loss, {"loss": loss}


@struct.dataclass
class DenoisingObjective(_Base):
    """DDPM-style denoising loss on a discrete schedule (epsilon / v / x0 targets).

    Attributes:
      schedule: the :class:`DiscreteSchedule` (traced arrays).
      prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"`` (static).
    """

    schedule: DiscreteSchedule
    prediction_type: str = struct.field(pytree_node=False, default="epsilon")

    @classmethod
    def create(cls, schedule: DiscreteSchedule, prediction_type: str = "epsilon"):
        """Validate ``prediction_type`` and build."""
        if not isinstance(schedule, DiscreteSchedule):
            raise TypeError(f"schedule must be a DiscreteSchedule, got {type(schedule).__name__}")
        pt = check_choice("prediction_type", prediction_type, ("epsilon", "v_prediction", "sample"))
        return cls(schedule=schedule, prediction_type=pt)

    def per_example_loss(self, key, params, apply_fn: ApplyFn, batch) -> jax.Array:
        """``[B]`` losses; the model sees integer timesteps ``t`` ``[B]`` in ``[0, T)``."""
        batch = as_batch(batch)
        x0 = _float_data(batch)
        keys = jax.vmap(lambda k: jax.random.split(k))(example_keys(key, x0.shape[0]))
        n_t = self.schedule.num_train_timesteps
        t = jax.vmap(lambda k: jax.random.randint(k, (), 0, n_t))(keys[:, 0])
        eps = _noise(keys[:, 1], x0)
        ab = self.schedule.alphas_cumprod[t].astype(x0.dtype)
        alpha, sigma = broadcast_t(jnp.sqrt(ab), x0), broadcast_t(jnp.sqrt(1.0 - ab), x0)
        xt = alpha * x0 + sigma * eps
        if self.prediction_type == "epsilon":
            target = eps
        elif self.prediction_type == "v_prediction":
            target = alpha * eps - sigma * x0
        else:
            target = x0
        pred = apply_fn(params, xt, t, batch.get("context"))
        return _mse(pred, target)


@struct.dataclass
class ScoreMatchingObjective(_Base):
    """Denoising score matching on a continuous schedule (Song et al. 2021, eq. 7).

    Attributes:
      schedule: a :class:`ContinuousSchedule` (e.g. ``VPLinearSchedule``).
      t_min: smallest training time (traced), default ``1e-5`` as in score_sde.
      weighting: ``"sigma2"`` (``lambda = sigma^2``), ``"likelihood"`` (``g^2``) or
        ``"none"`` (static).
    """

    schedule: ContinuousSchedule
    t_min: Any = 1e-5
    weighting: str = struct.field(pytree_node=False, default="sigma2")

    @classmethod
    def create(cls, schedule: ContinuousSchedule, t_min=1e-5, weighting: str = "sigma2"):
        """Validate and build."""
        if not isinstance(schedule, ContinuousSchedule):
            raise TypeError(f"schedule must be a ContinuousSchedule, got {type(schedule).__name__}")
        w = check_choice("weighting", weighting, ("sigma2", "likelihood", "none"))
        if not _number("t_min", t_min, 0.0) < 1.0:
            raise ValueError(f"t_min={t_min!r} must lie in [0, 1)")
        return cls(schedule=schedule, t_min=jnp.asarray(t_min, jnp.float32), weighting=w)

    def per_example_loss(self, key, params, apply_fn: ApplyFn, batch) -> jax.Array:
        """``[B]`` losses; the model sees continuous ``t`` ``[B]`` in ``[t_min, 1)``."""
        batch = as_batch(batch)
        x0 = _float_data(batch)
        keys = jax.vmap(lambda k: jax.random.split(k))(example_keys(key, x0.shape[0]))
        u = jax.vmap(lambda k: jax.random.uniform(k, (), x0.dtype))(keys[:, 0])
        t = self.t_min + (1.0 - self.t_min) * u
        eps = _noise(keys[:, 1], x0)
        alpha, sigma = self.schedule.alpha(t), self.schedule.sigma(t)
        xt = broadcast_t(alpha, x0) * x0 + broadcast_t(sigma, x0) * eps
        score = apply_fn(params, xt, t, batch.get("context")).astype(x0.dtype)
        # |s + eps / sigma|^2 lambda = |sigma s + eps|^2 lambda / sigma^2
        per = _mse(broadcast_t(sigma, x0) * score, -eps)
        if self.weighting == "sigma2":
            return per
        lam = self.schedule.g2(t) if self.weighting == "likelihood" else jnp.ones_like(t)
        return lam / sigma**2 * per


@struct.dataclass
class FlowMatchingObjective(_Base):
    """Rectified-flow / conditional flow matching (``t = 0`` data, ``t = 1`` noise).

    Attributes:
      time_scale: the model sees ``t * time_scale`` (1 for ``t`` in [0, 1]; use
        ``FlowSchedule.num_train_timesteps`` to match the samplers' ``sigma * T``).
      t_min: times are drawn from ``U(t_min, 1 - t_min)`` (traced), default 0.
    """

    time_scale: Any = 1.0
    t_min: Any = 0.0

    @classmethod
    def create(cls, time_scale=1.0, t_min=0.0):
        """Validate and build."""
        _number("time_scale", time_scale, 0.0, strict=True)
        if not _number("t_min", t_min, 0.0) < 0.5:
            raise ValueError(f"t_min={t_min!r} must lie in [0, 0.5)")
        return cls(
            time_scale=jnp.asarray(time_scale, jnp.float32), t_min=jnp.asarray(t_min, jnp.float32)
        )

    def per_example_loss(self, key, params, apply_fn: ApplyFn, batch) -> jax.Array:
        """``[B]`` losses ``mean |v(x_t, t) - (x_1 - x_0)|^2``."""
        batch = as_batch(batch)
        x0 = _float_data(batch)
        keys = jax.vmap(lambda k: jax.random.split(k))(example_keys(key, x0.shape[0]))
        u = jax.vmap(lambda k: jax.random.uniform(k, (), x0.dtype))(keys[:, 0])
        t = self.t_min + (1.0 - 2.0 * self.t_min) * u
        if "x1" in batch:
            x1 = jnp.asarray(batch["x1"], x0.dtype)
            if x1.shape != x0.shape:
                raise ValueError(f"batch['x1'] shape {x1.shape} must equal x's {x0.shape}")
        else:
            x1 = _noise(keys[:, 1], x0)
        tt = broadcast_t(t, x0)
        xt = (1.0 - tt) * x0 + tt * x1
        pred = apply_fn(params, xt, t * self.time_scale, batch.get("context"))
        return _mse(pred, x1 - x0)
