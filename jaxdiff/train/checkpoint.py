"""Orbax checkpoints in config-hash run directories, with auto-resume and fallback.

Run directories (after Counting Flows): a run lives in ``root / config_hash(model_cfg,
data_cfg, objective_cfg)``. The hash covers only what defines the *model being learnt*
-- architecture, data and objective -- never training-only settings (step count,
learning rate, batch size ...), so ``fit`` with more steps or a new learning rate
resumes the same run, while a new architecture starts a new one. The hash is a SHA-256
of a canonical JSON form (sorted keys, dataclasses with their class name, tuples as
lists, floats by ``repr``), stable across processes and Python versions (unlike
``hash()``).

:class:`CheckpointManager` wraps ``orbax.checkpoint.CheckpointManager``: keep-N,
asynchronous saves (the device-to-host copy finishes before ``save`` returns, orbax's
default, so the caller may donate or update the state at once; the file writes run in
the background), and orbax's atomic commit (a step is written to a temporary
directory and renamed when complete, so a process killed mid-save leaves no step
behind). :meth:`CheckpointManager.restore` starts from the newest step; if that step
cannot be read, or holds non-finite values, it warns, moves the step aside (kept in
``corrupt_checkpoints/``) and falls back to the previous one. Checkpoints of another
model (a different state structure) are refused with :class:`CheckpointMismatchError`
before anything is touched.
Restores are placed with the caller's sharding, so a run saved on 8 devices resumes on 1.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from jaxdiff._atomic import atomic_write_text
from jaxdiff._validation import check_bool, check_int_range
from jaxdiff.train.checkpoint_checks import (
    CheckpointMismatchError,
    move_aside,
    stored_signature,
    structure_differences,
    tree_signature,
)
from jaxdiff.train.state import TrainState

__all__ = [
    "CheckpointManager",
    "CheckpointMismatchError",
    "canonical_config",
    "config_hash",
    "run_directory",
]


_MODULE_BOOKKEEPING = ("parent", "name")


def canonical_config(obj):
    """A JSON-able canonical form of nested dataclasses, dicts, lists, enums and scalars.

    Flax modules count as dataclasses (their ``parent`` and ``name`` bookkeeping is
    left out), dtypes by name, named functions (``nn.silu``) by import path.

    Raises:
      TypeError: for objects with no canonical form (lambdas, local functions, large
        arrays, arbitrary objects).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        skip = _MODULE_BOOKKEEPING if isinstance(obj, nn.Module) else ()
        fields = {
            f.name: canonical_config(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.name not in skip
        }
        return {"__class__": type(obj).__name__, **fields}
    if isinstance(obj, np.dtype) or (isinstance(obj, type) and issubclass(obj, np.generic)):
        return {"__dtype__": np.dtype(obj).name}
    if isinstance(getattr(obj, "dtype", None), np.dtype) and not hasattr(obj, "shape"):
        return {"__dtype__": obj.dtype.name}  # jnp.float32 and other scalar types
    if isinstance(obj, dict):
        return {
            str(k): canonical_config(v) for k, v in sorted(obj.items(), key=lambda i: str(i[0]))
        }
    if hasattr(obj, "items") and hasattr(obj, "keys"):  # OmegaConf DictConfig and friends
        return canonical_config(dict(obj.items()))
    if isinstance(obj, list | tuple):
        return [canonical_config(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return canonical_config(obj.value)
    if isinstance(obj, bool | str) or obj is None:
        return obj
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return repr(f) if not math.isfinite(f) else f
    if isinstance(obj, np.ndarray | jax.Array) and np.asarray(obj).size <= 1024:
        return {"__array__": str(np.asarray(obj).dtype), "v": np.asarray(obj).tolist()}
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    name = getattr(obj, "__qualname__", "")
    if callable(obj) and name and "<" not in name:  # named functions: by import path
        return {"__callable__": f"{getattr(obj, '__module__', '')}.{name}"}
    raise TypeError(
        f"config value {obj!r} of type {type(obj).__name__} has no canonical form; use "
        "dataclasses, dicts, lists, strings, numbers, enums or small arrays"
    )


def config_hash(model_cfg, data_cfg, objective_cfg, *, length: int = 12) -> str:
    """Hex digest naming the run of (model, data, objective) configurations.

    Args:
      model_cfg: the network's configuration (dataclass or dict, nested freely).
      data_cfg: the data set's configuration.
      objective_cfg: the objective's configuration (schedule, prediction type ...).
      length: number of hex characters kept (1..64).

    Returns:
      ``length`` lowercase hex characters of the SHA-256 of the canonical JSON.
    """
    check_int_range("length", length, 1, 64)
    payload = {
        "model": canonical_config(model_cfg),
        "data": canonical_config(data_cfg),
        "objective": canonical_config(objective_cfg),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_directory(root, model_cfg, data_cfg, objective_cfg) -> Path:
    """``root / config_hash(...)``, created, with the configs written to ``config.json``."""
    path = Path(root) / config_hash(model_cfg, data_cfg, objective_cfg)
    path.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model": canonical_config(model_cfg),
        "data": canonical_config(data_cfg),
        "objective": canonical_config(objective_cfg),
    }
    if jax.process_index() == 0:
        atomic_write_text(path / "config.json", json.dumps(cfg, indent=2, sort_keys=True))
    return path


def _to_tree(state: TrainState) -> dict:
    state = state.replace(key=jax.random.key_data(state.key))
    return serialization.to_state_dict(state)


def _from_tree(template: TrainState, tree: dict) -> TrainState:
    impl = jax.random.key_impl(template.key)
    state = serialization.from_state_dict(
        template.replace(key=jax.random.key_data(template.key)), tree
    )
    return state.replace(key=jax.random.wrap_key_data(state.key, impl=impl))


def _all_finite(tree) -> bool:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)


class CheckpointManager:
    """Keep-N, async, atomic checkpoints of a :class:`TrainState` in one directory.

    Args:
      directory: the run directory (created); checkpoints go to ``directory/checkpoints``.
      keep: number of checkpoints kept (oldest deleted first), an int >= 1.
      async_save: write in a background thread (``wait_until_finished`` to block).

    Raises:
      TypeError: ``directory`` is not a path, ``keep`` not an int (a bool is not a
        count) or ``async_save`` not a bool.
      ValueError: ``keep < 1``.
    """

    def __init__(self, directory, *, keep: int = 3, async_save: bool = True):
        if not isinstance(directory, str | os.PathLike):
            raise TypeError(
                f"directory must be a str or os.PathLike path, got "
                f"{type(directory).__name__}: {directory!r}"
            )
        keep = check_int_range("keep", keep, 1)
        async_save = check_bool("async_save", async_save)
        self.directory = Path(directory).absolute() / "checkpoints"
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    # --- queries -------------------------------------------------------------------
    def all_steps(self) -> list[int]:
        """Committed checkpoint steps, ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """Newest committed step, or None."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    # --- save / restore ------------------------------------------------------------
    def save(self, state: TrainState) -> None:
        """Save ``state`` under step ``int(state.step)`` (async when enabled)."""
        step = int(state.step)
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(_to_tree(state)), force=True)

    def restore(self, template: TrainState, *, sharding=None) -> TrainState | None:
        """Newest readable checkpoint shaped like ``template``, or None if there is none.

        Args:
          template: a state with the right structure, shapes and dtypes (e.g. a fresh
            ``TrainState.create``); its values are not used.
          sharding: a ``jax.sharding.Sharding`` for every restored leaf (e.g. the
            replicated sharding of the current mesh); default: the template's.

        First every step's stored structure is read from its metadata; if a readable
        one differs from ``template``'s (another model's checkpoints), this raises and
        touches nothing. Then, newest first, a step that fails to load or holds
        non-finite values is moved aside to ``corrupt_checkpoints/<step>-<n>`` (kept
        for inspection, see :mod:`jaxdiff.train.checkpoint_checks`) with a
        ``RuntimeWarning``, and the next older one is tried; so the step can be
        re-trained and saved again.

        Raises:
          CheckpointMismatchError: a stored structure differs from ``template``'s.
        """
        self.wait_until_finished()
        tree = _to_tree(template)
        self._check_structures(tree)

        def abstract(x):
            x = jnp.asarray(x)
            sh = sharding if sharding is not None else getattr(x, "sharding", None)
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh)

        target = jax.tree.map(abstract, tree)
        moved = False
        try:
            for step in reversed(self.all_steps()):
                try:
                    restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
                    state = _from_tree(template, restored)
                    if int(state.step) != step:
                        raise ValueError(f"stored step {int(state.step)} != directory step {step}")
                    if not _all_finite((state.params, state.ema_params, state.opt_state)):
                        raise ValueError("non-finite values")
                except MemoryError:  # the host, not the step, is at fault: keep it
                    raise
                except Exception as err:  # noqa: BLE001 - any other failure: unreadable
                    kept = move_aside(self.directory / str(step))
                    moved = True
                    warnings.warn(
                        f"checkpoint step {step} in {self.directory} is unreadable or corrupt "
                        f"({type(err).__name__}: {str(err)[:300]}); moved it to {kept} and "
                        "falling back to an older one",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                return state
            return None
        finally:
            if moved:
                if jax.process_count() > 1:
                    ocp.multihost.sync_global_processes("jaxdiff_corrupt_steps_moved")
                self._manager.reload()

    def _check_structures(self, tree) -> None:
        """Raise :class:`CheckpointMismatchError` if a readable step is another model's."""
        expected = tree_signature(tree)
        for step in reversed(self.all_steps()):
            try:
                stored = stored_signature(self.directory / str(step))
            except Exception:  # noqa: BLE001 - unreadable metadata: a corrupt step
                continue
            differences = structure_differences(stored, expected)
            if differences:
                raise CheckpointMismatchError(self.directory, step, differences)

    def wait_until_finished(self) -> None:
        """Block until pending asynchronous saves are committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release orbax's resources."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
