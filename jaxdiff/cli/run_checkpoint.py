"""Reading the parameters of a ``jaxdiff train`` run, for ``jaxdiff convert --to-torch``.

A run directory (:func:`jaxdiff.train.run_directory`) holds ``config.json`` (the hashed
config parts ``model``, ``data`` and ``objective``) and, written by
:func:`jaxdiff.train.fit` through :class:`jaxdiff.train.CheckpointManager`, one Orbax
checkpoint per saved step in ``checkpoints/<step>/default`` holding the
:class:`~jaxdiff.train.TrainState` as a dict (``step``, ``params``, ``opt_state``,
``ema_params``, ``key``). Steps still being written live in Orbax temporary directories
whose names are not integers, so only committed steps are seen.

``CheckpointManager.restore`` needs a template state, which a converter cannot build
(the optimiser state depends on training-only settings that the run's ``config.json``
does not record), and it moves unreadable steps aside. Here Orbax reads one parameter
tree alone (a partial restore shaped by the step's own metadata) onto the host CPU and
never changes the run directory.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

__all__ = [
    "RUN_CONFIG",
    "TrainCheckpoint",
    "committed_steps",
    "find_train_checkpoint",
    "restore_train_params",
]

RUN_CONFIG = "config.json"
_CHECKPOINTS = "checkpoints"
_ITEM = "default"  # the item name Orbax's CheckpointManager gives a single-item save
_RUN_PARTS = ("model", "data", "objective")


@dataclasses.dataclass(frozen=True)
class TrainCheckpoint:
    """One committed checkpoint of a ``jaxdiff train`` run.

    Attributes:
      run_dir: the run directory (holds ``config.json``).
      step_dir: ``run_dir/checkpoints/<step>``.
      step: the optimiser step it was saved at.
    """

    run_dir: Path
    step_dir: Path
    step: int

    @property
    def config_path(self) -> Path:
        """The run's ``config.json``."""
        return self.run_dir / RUN_CONFIG


def committed_steps(checkpoints: Path) -> list[int]:
    """Sorted step numbers of the committed ``checkpoints/<step>`` folders (none: ``[]``)."""
    if not checkpoints.is_dir():
        return []
    return sorted(int(p.name) for p in checkpoints.iterdir() if p.is_dir() and p.name.isdigit())


def _looks_like_run(source: Path) -> bool:
    """``config.json`` and ``checkpoints/``, or a ``config.json`` of run_directory's parts."""
    config = source / RUN_CONFIG
    if not config.is_file():
        return False
    if (source / _CHECKPOINTS).is_dir():
        return True
    try:
        parts = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False  # not a run's config (the caller's error lists what --from may be)
    return isinstance(parts, dict) and set(_RUN_PARTS) <= set(parts)


def find_train_checkpoint(source: Path) -> TrainCheckpoint | None:
    """The checkpoint ``source`` names, or None if it is no part of a ``jaxdiff train`` run.

    Args:
      source: a run directory (its newest committed step is taken) or one of its
        ``checkpoints/<step>`` directories.

    Raises:
      FileNotFoundError: ``source`` is a run directory without a committed checkpoint,
        or a step directory of a run without ``config.json``.
    """
    source = Path(source).absolute()
    if source.parent.name == _CHECKPOINTS and source.name.isdigit() and source.is_dir():
        run_dir = source.parent.parent
        if not (run_dir / RUN_CONFIG).is_file():
            raise FileNotFoundError(
                f"--from {source} is a checkpoint step directory but {run_dir / RUN_CONFIG} "
                "(the `jaxdiff train` run config) is missing"
            )
        return TrainCheckpoint(run_dir, source, int(source.name))
    if not source.is_dir() or not _looks_like_run(source):
        return None
    steps = committed_steps(source / _CHECKPOINTS)
    if not steps:
        raise FileNotFoundError(
            f"--from {source} is a `jaxdiff train` run directory without checkpoints "
            f"(no {_CHECKPOINTS}/<step>/ inside); train it first"
        )
    return TrainCheckpoint(source, source / _CHECKPOINTS / str(steps[-1]), steps[-1])


def restore_train_params(checkpoint: TrainCheckpoint, *, ema: bool = True):
    """The EMA (or, with ``ema=False``, raw) parameters stored in ``checkpoint``.

    Returns:
      The parameter pytree (nested dicts of float32 arrays on the host CPU), as
      :class:`~jaxdiff.train.TrainState` held it (``ema_params`` or ``params``).

    Raises:
      ValueError: the step is unreadable (truncated, garbled, not a train state) or
        holds non-finite values; the message names the step directory.
    """
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    field = "ema_params" if ema else "params"
    item = checkpoint.step_dir / _ITEM
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        meta = checkpointer.metadata(item)
        tree = getattr(meta, "item_metadata", meta)
        if tree is None or field not in tree:
            raise ValueError(f"holds no {field!r} (not a jaxdiff TrainState)")
        target = {
            field: jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=cpu), dict(tree[field])
            )
        }
        restore = ocp.args.PyTreeRestore(
            item=target,
            restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True,
        )
        params = checkpointer.restore(item, args=restore)[field]
    except Exception as err:  # noqa: BLE001 - Orbax/TensorStore raise many kinds
        raise ValueError(
            f"{checkpoint.step_dir} is not a readable `jaxdiff train` checkpoint (truncated "
            f"or corrupt): {type(err).__name__}: {str(err)[:200]}"
        ) from err
    finally:
        checkpointer.close()
    if not all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params)):
        raise ValueError(f"{checkpoint.step_dir} holds non-finite {field}")
    return params
