"""The pure train step: loss, gradients (with micro-batch accumulation), optax, EMA.

:func:`train_step` is a pure function ``(state, batch) -> (state, metrics)`` once its
keyword arguments (model, objective, optimiser, config) are fixed;
:func:`make_train_step` fixes them and returns the jitted function, sharded over a
mesh when one is given (state replicated, batch split along axis 0).

Precision (DESIGN.md, convention 7): parameters and gradients are float32. With
``mixed_precision="bf16"`` the float parameters, ``x`` and ``context`` are cast to
bfloat16 inside the loss, the model runs in bf16 and its output is cast back to float32
before the loss math; the cast is differentiated, so gradients arrive in float32.

Micro-batching: with ``k = batch_size // micro_batch_size > 1`` the batch is split into
``k`` micro-batches (micro-batch ``j`` holds examples ``j, j + k, j + 2k, ...``, so a
data-sharded batch stays balanced), gradients are summed in a ``lax.scan`` and averaged.
Because the objectives draw noise per example (:func:`jaxdiff._keys.example_keys`),
this equals the big-batch gradient up to float summation order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxdiff._keys import example_keys
from jaxdiff.train.config import TrainingConfig
from jaxdiff.train.objectives import as_batch
from jaxdiff.train.sharding import batch_sharding, replicated
from jaxdiff.train.state import TrainState, ema_update, step_key

__all__ = ["compute_gradients", "make_train_step", "train_step"]

_DTYPES = {"no": None, "bf16": jnp.bfloat16}


def _cast_floats(tree, dtype):
    def cast(a):
        if a is None or not jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating):
            return a
        return jnp.asarray(a).astype(dtype)

    return jax.tree.map(cast, tree)


def _compute_dtype_apply(apply_fn: Callable, dtype) -> Callable:
    """``apply_fn`` run in ``dtype`` (params, x, context cast), output back to float32."""
    if dtype is None:
        return apply_fn

    def wrapped(params, x, t, context=None):
        out = apply_fn(
            _cast_floats(params, dtype), x.astype(dtype), t, _cast_floats(context, dtype)
        )
        return out.astype(jnp.float32)

    return wrapped


def compute_gradients(params, keys, batch, *, apply_fn, objective, config: TrainingConfig):
    """Mean loss, aux and float32 gradients over ``batch``, accumulated over micro-batches.

    Args:
      params: float32 parameters.
      keys: ``[B]`` per-example keys.
      batch: dict of ``[B, ...]`` arrays.
      apply_fn: ``apply_fn(params, x, t, context)`` (static).
      objective: ``(key, params, apply_fn, batch) -> (loss, aux)``.
      config: supplies ``num_micro_batches`` and ``mixed_precision`` (static).

    Returns:
      ``(loss, aux, grads)``.
    """
    model = _compute_dtype_apply(apply_fn, _DTYPES[config.mixed_precision])
    grad_fn = jax.value_and_grad(lambda p, k, b: objective(k, p, model, b), has_aux=True)
    n = config.num_micro_batches
    if n == 1:
        (loss, aux), grads = grad_fn(params, keys, batch)
        return loss, aux, grads
    size = keys.shape[0]
    if size % n:
        raise ValueError(f"batch size {size} is not divisible by {n} micro-batches")

    def split(a):  # [B, ...] -> [n, B // n, ...]; micro-batch j = rows j, j+n, ...
        return jnp.moveaxis(a.reshape((size // n, n) + a.shape[1:]), 1, 0)

    micro = jax.tree.map(split, (keys, batch))
    (loss0, aux0), _ = jax.eval_shape(grad_fn, params, *jax.tree.map(lambda a: a[0], micro))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (loss0, aux0, params))

    def body(acc, mb):
        (loss, aux), grads = grad_fn(params, *mb)
        return jax.tree.map(jnp.add, acc, (loss, aux, grads)), None

    total, _ = jax.lax.scan(body, zeros, micro)
    return jax.tree.map(lambda a: a / n, total)


def train_step(
    state: TrainState, batch, *, apply_fn, objective, tx: optax.GradientTransformation, config
):
    """One optimiser step; pure (jit it, or use :func:`make_train_step`).

    Args:
      state: the :class:`TrainState`.
      batch: ``[B, ...]`` array or dict (``"x"``, optional ``"context"``, ``"x1"``).
      apply_fn: ``apply_fn(params, x, t, context) -> prediction`` (static).
      objective: e.g. :class:`~jaxdiff.train.objectives.DenoisingObjective`.
      tx: the optax optimiser (static).
      config: :class:`TrainingConfig` (static; ``ema_decay``, micro-batching, precision).

    Returns:
      ``(new_state, metrics)`` with scalar metrics ``loss`` (and the objective's aux)
      and ``grad_norm`` (global norm before clipping).
    """
    batch = as_batch(batch)
    size = jax.tree.leaves(batch)[0].shape[0]
    keys = example_keys(step_key(state), size)
    loss, aux, grads = compute_gradients(
        state.params, keys, batch, apply_fn=apply_fn, objective=objective, config=config
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = ema_update(state.ema_params, params, config.ema_decay)
    gnorm = optax.tree.norm(grads)  # optax.global_norm, under its current name
    metrics = {**aux, "loss": loss, "grad_norm": gnorm}
    new_state = state.replace(
        step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema
    )
    return new_state, metrics


def make_train_step(apply_fn, objective, tx, config: TrainingConfig, *, mesh=None):
    """``jit(train_step)`` with everything but ``(state, batch)`` fixed.

    With a ``mesh`` (see :func:`~jaxdiff.train.sharding.data_mesh`) the state is
    replicated and the batch split over the ``"data"`` axis; the same function serves
    1 or N devices. The input state buffer is donated.
    """
    fn = functools.partial(train_step, apply_fn=apply_fn, objective=objective, tx=tx, config=config)
    if mesh is None:
        return jax.jit(fn, donate_argnums=0)
    rep = replicated(mesh)
    return jax.jit(
        fn,
        in_shardings=(rep, batch_sharding(mesh)),
        out_shardings=(rep, rep),
        donate_argnums=0,
    )
