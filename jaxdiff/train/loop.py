"""``fit``: the training loop around the pure train step.

It builds (or resumes) the :class:`~jaxdiff.train.state.TrainState`, places it on a
data-parallel mesh, runs the jitted step, logs averaged metrics to ``metrics.jsonl``
and a tqdm bar, and saves Orbax checkpoints. Everything random is a pure function of
the step -- the step key is ``fold_in(key, step)`` and the batch is ``data(step)`` --
so a run that is killed and resumed ends with bit-identical parameters.

A run whose newest checkpoint has reached ``num_steps`` returns at once
(skip-if-finished), with that state. A non-finite logged loss raises a
``RuntimeWarning`` (training goes on; the record shows ``"nan"``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdiff._keys import as_key
from jaxdiff._validation import check_int_range
from jaxdiff.train.checkpoint import CheckpointManager
from jaxdiff.train.config import TrainingConfig
from jaxdiff.train.metrics import MetricsWriter
from jaxdiff.train.objectives import as_batch
from jaxdiff.train.optim import make_lr_schedule, make_optimizer
from jaxdiff.train.sharding import data_mesh, replicated, shard_batch
from jaxdiff.train.state import TrainState
from jaxdiff.train.step import make_train_step

__all__ = ["FitResult", "array_batches", "fit"]


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      state: the final :class:`TrainState` (``state.ema_params`` for sampling).
      start_step: the step training started from (0, or the resumed checkpoint's).
      num_steps: the total number of steps of the run.
      run_dir: the run directory, or None.
      history: the metric records logged by this call.
    """

    state: TrainState
    start_step: int
    num_steps: int
    run_dir: Path | None
    history: list[dict]


def array_batches(arrays, batch_size: int, *, seed: int):
    """Batches of an in-memory dataset as a pure function of the step.

    Epoch ``e`` visits the rows in the order ``default_rng([seed, e]).permutation(n)``
    and drops the incomplete last batch, so ``batch(step)`` depends only on
    ``(seed, step)``.

    Args:
      arrays: a pytree (e.g. ``{"x": ..., "context": ...}``) of ``[n, ...]`` arrays.
      batch_size: rows per batch, ``<= n``.
      seed: data-order seed.

    Returns:
      ``(batch_fn, steps_per_epoch)`` with ``batch_fn(step) -> pytree of [batch_size, ...]``.
    """
    leaves = [np.asarray(a) for a in jax.tree.leaves(arrays)]
    if not leaves:
        raise ValueError("arrays is empty")
    n = leaves[0].shape[0]
    if any(a.shape[0] != n for a in leaves):
        raise ValueError(f"all arrays need the same leading size, got {[a.shape for a in leaves]}")
    check_int_range("batch_size", batch_size, 1, n)
    check_int_range("seed", seed, 0)
    host = jax.tree.map(np.asarray, arrays)
    steps_per_epoch = n // batch_size
    cache = {}

    def batch_fn(step: int):
        epoch, i = divmod(int(step), steps_per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        idx = cache[epoch][i * batch_size : (i + 1) * batch_size]
        return jax.tree.map(lambda a: a[idx], host)

    return batch_fn, steps_per_epoch


def _show_progress(config: TrainingConfig) -> bool:
    if config.progress is not None:
        return bool(config.progress)
    return jax.process_index() == 0 and sys.stderr.isatty()


def _say(say: Callable[[str], None], message: str) -> None:
    """``say(message)`` without garbling an active tqdm bar (stdout or stderr)."""
    with tqdm.external_write_mode():
        say(message)


def _checked_batch(raw, step: int, config: TrainingConfig, *, first: bool) -> dict:
    """``as_batch(raw)`` after checking ``data(step)``'s leaves (finiteness: first batch).

    Raises:
      TypeError: a non-numeric leaf.
      ValueError: leaves of different leading sizes, no leading axis, or (first batch)
        NaN / inf entries.
    """
    batch = as_batch(raw)
    where = f"data({step})"
    sizes = set()
    for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
        name = where + jax.tree_util.keystr(path)
        arr = leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)
        if not (jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == np.bool_):
            raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
        if arr.ndim == 0:
            raise ValueError(f"{name} must have a leading batch axis, got a scalar")
        sizes.add(arr.shape[0])
        if first and jnp.issubdtype(arr.dtype, jnp.inexact) and not bool(jnp.isfinite(arr).all()):
            raise ValueError(f"{name} has non-finite entries (NaN or inf)")
    if len(sizes) > 1:
        raise ValueError(f"{where} leaves have different leading sizes {sorted(sizes)}")
    return batch


def _check_params(params) -> None:
    """Raise unless ``params`` is a non-empty pytree of finite numeric arrays."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    if not flat:
        raise ValueError(f"params must be a non-empty pytree of arrays, got {params!r:.80}")
    finite = []
    for path, leaf in flat:
        name = "params" + jax.tree_util.keystr(path)
        if isinstance(leaf, int | float) and not isinstance(leaf, bool):
            leaf = np.asarray(leaf)
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.number):
            raise TypeError(f"{name} must be a numeric array, got {type(leaf).__name__}")
        if jnp.issubdtype(dtype, jnp.inexact):
            finite.append((name, jnp.all(jnp.isfinite(leaf))))
    bad = [name for name, ok in jax.device_get(finite) if not ok]
    if bad:
        raise ValueError(f"params have non-finite entries (NaN or inf) in {bad[:5]}")


def _check_fit_arguments(key, params, apply_fn, objective, data, config, run_dir, mesh, log):
    """Validate :func:`fit`'s arguments before anything is built; returns the typed key."""
    if not isinstance(config, TrainingConfig):
        raise TypeError(f"config must be a TrainingConfig, got {type(config).__name__}")
    key = as_key(key, "key")
    if key.ndim != 0:
        raise ValueError(f"key must be a single key (shape ()), got shape {key.shape}")
    for name, fn in (("apply_fn", apply_fn), ("objective", objective), ("data", data)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}: {fn!r:.80}")
    _check_params(params)
    if run_dir is not None and not isinstance(run_dir, str | os.PathLike):
        raise TypeError(
            f"run_dir must be None or a str / os.PathLike path, got {type(run_dir).__name__}"
        )
    if mesh is not None and not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(f"mesh must be None or a jax.sharding.Mesh, got {type(mesh).__name__}")
    if log is not None and not callable(log):
        raise TypeError(f"log must be None or callable, got {type(log).__name__}")
    return key


def fit(
    key,
    params,
    apply_fn: Callable,
    objective: Callable,
    data: Callable[[int], object],
    config: TrainingConfig,
    *,
    run_dir=None,
    mesh=None,
    steps_per_epoch: int | None = None,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Train ``params`` on ``objective`` for ``config.total_steps()`` optimiser steps.

    Args:
      key: typed PRNG key for all training noise (e.g. ``jax.random.key(config.seed)``).
      params: initial float parameters (ignored when a checkpoint is resumed).
      apply_fn: ``apply_fn(params, x, t, context) -> prediction``.
      objective: ``(key, params, apply_fn, batch) -> (loss, aux)``; see
        :mod:`jaxdiff.train.objectives`.
      data: ``data(step) -> batch`` (array or dict with ``"x"``), a pure function of the
        step, returning ``config.batch_size`` rows (this process's rows when multi-host).
        See :func:`array_batches`.
      config: :class:`TrainingConfig`.
      run_dir: directory for ``checkpoints/`` and ``metrics.jsonl`` (e.g. from
        :func:`~jaxdiff.train.checkpoint.run_directory`); None: no checkpoints or log.
      mesh: device mesh (default: all devices, see :func:`~jaxdiff.train.sharding.
        data_mesh`).
      steps_per_epoch: needed when ``config.num_steps`` is None (``epochs`` given).
      log: called with one line per phase (resumed / already finished / compiling /
        first step done) and per logged step (``step 100/3000  loss ...  lr ...``);
        None: quiet (the tqdm bar of ``config.progress`` only).

    Returns:
      A :class:`FitResult`.

    Raises:
      TypeError: an argument of the wrong type (a non-key ``key``, non-callable
        ``apply_fn`` / ``objective`` / ``data``, non-numeric ``params`` leaves, ...).
      ValueError: empty or non-finite ``params``, a batch of keys for ``key``.
      CheckpointMismatchError: ``run_dir`` holds another model's checkpoints
        (nothing there is touched).
    """
    key = _check_fit_arguments(key, params, apply_fn, objective, data, config, run_dir, mesh, log)
    say = log or (lambda message: None)
    num_steps = config.total_steps(steps_per_epoch)
    size = sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(params))
    where = "" if run_dir is None else f"; looking for checkpoints in {run_dir}"
    say(f"building the optimiser state of {size:,} parameters{where}")
    tx = make_optimizer(config, num_steps)
    lr_at = make_lr_schedule(config, num_steps)
    mesh = data_mesh() if mesh is None else mesh
    rep = replicated(mesh)
    state = jax.jit(lambda k, p: TrainState.create(k, p, tx), out_shardings=rep)(key, params)

    run_dir = None if run_dir is None else Path(run_dir)
    manager = None
    if run_dir is not None:
        manager = CheckpointManager(
            run_dir, keep=config.keep_checkpoints, async_save=config.async_checkpointing
        )
        try:
            restored = manager.restore(state, sharding=rep)
        except BaseException:  # e.g. another model's checkpoints: leave them as they are
            manager.close()
            raise
        if restored is not None:
            state = restored
    start = int(state.step)
    history: list[dict] = []
    if start >= num_steps:  # skip-if-finished
        ignored = f" (num_steps={num_steps} is below it: ignored)" if start > num_steps else ""
        say(f"run already finished: checkpoint at step {start}{ignored}; nothing to train")
        if manager is not None:
            manager.close()
        return FitResult(state, start, num_steps, run_dir, history)
    if start:
        say(f"resuming from the checkpoint at step {start} of {num_steps}")
    else:
        say(f"training {num_steps} steps from scratch")

    step_fn = make_train_step(apply_fn, objective, tx, config, mesh=mesh)
    writer = None
    if run_dir is not None and jax.process_index() == 0:
        writer = MetricsWriter(run_dir / "metrics.jsonl", resume_step=start)
    bar = tqdm(total=num_steps, initial=start, disable=not _show_progress(config), desc="train")
    pending: list[dict] = []
    try:
        tick = time.perf_counter()
        for s in range(start, num_steps):
            batch = shard_batch(_checked_batch(data(s), s, config, first=s == start), mesh)
            if s == start:
                _say(say, "compiling the train step")
            state, metrics = step_fn(state, batch)
            if s == start:
                jax.block_until_ready(metrics)
                _say(say, f"compiled; first step in {time.perf_counter() - tick:.1f}s")
                tick, tick_step = time.perf_counter(), s + 1
            pending.append(metrics)
            done = s + 1
            if done % config.log_interval == 0 or done == num_steps:
                host = jax.device_get(pending)
                record = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
                record["learning_rate"] = float(lr_at(s))
                pending = []
                if writer is not None:
                    record = writer.write(done, record)
                else:
                    record = {"step": done, **record}
                history.append(record)
                if not math.isfinite(record["loss"]):
                    warnings.warn(
                        f"non-finite loss {record['loss']} at step {done}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                bar.set_postfix(loss=f"{record['loss']:.4g}")
                now = time.perf_counter()
                rate = (done - tick_step) / max(now - tick, 1e-9) if done > tick_step else 0.0
                _say(
                    say,
                    f"step {done}/{num_steps}  loss {record['loss']:.4g}  "
                    f"lr {record['learning_rate']:.3g}  {rate:.1f} steps/s",
                )
            if manager is not None and (
                done % config.checkpoint_interval == 0 or done == num_steps
            ):
                manager.save(state)
            bar.update(1)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if manager is not None:
            manager.close()
    return FitResult(state, start, num_steps, run_dir, history)
