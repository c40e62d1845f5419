"""What :class:`~jaxdiff.train.checkpoint.CheckpointManager` checks before it restores.

Two faults look alike from outside ("this step cannot be restored") but need opposite
handling:

* **Another model's checkpoints** (a run directory reused for a different hidden size,
  say, or with gradient clipping switched on or off, which changes the optimiser
  state): the stored tree is readable and well formed, only its structure differs from
  this run's. Restoring nothing and starting from step 0 in that directory would let
  keep-N rotation delete the other model's steps (or never save the new ones), so this
  is refused with :class:`CheckpointMismatchError` naming the leaves that differ, and
  nothing on disk is touched.
* **A corrupt step** (truncated, garbled, non-finite): it is moved aside into
  ``corrupt_checkpoints/`` beside ``checkpoints/`` (kept for inspection, never deleted;
  Orbax does not look there), so the step can be re-trained and saved again.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import orbax.checkpoint as ocp

__all__ = [
    "CORRUPT_DIR",
    "CheckpointMismatchError",
    "move_aside",
    "stored_signature",
    "structure_differences",
    "tree_signature",
]

CORRUPT_DIR = "corrupt_checkpoints"
_SHOWN = 6  # differences listed in an error message


class CheckpointMismatchError(ValueError):
    """A run directory holds checkpoints of another model (a different state structure).

    Attributes:
      directory: the checkpoints directory.
      step: the step whose stored structure was compared.
      differences: one line per differing leaf (see :func:`structure_differences`).
    """

    def __init__(self, directory, step: int, differences: list[str]):
        self.directory, self.step, self.differences = Path(directory), step, differences
        shown = "; ".join(differences[:_SHOWN])
        more = f"; and {len(differences) - _SHOWN} more" if len(differences) > _SHOWN else ""
        super().__init__(
            f"{directory} holds checkpoints of a different model (or optimiser set-up): "
            f"the parameter / state structure stored at step {step} differs from this "
            f"run's ({shown}{more}). "
            "Nothing was changed. Train in another run directory (e.g. one from "
            "run_directory(root, model_cfg, data_cfg, objective_cfg)) or move those "
            "checkpoints away."
        )


def _key_name(entry) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def tree_signature(tree) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"a/b/c": (shape, dtype name)}`` for every leaf of ``tree`` (arrays or metadata)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        "/".join(_key_name(k) for k in path): (tuple(leaf.shape), str(leaf.dtype))
        for path, leaf in flat
    }


def stored_signature(step_dir: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """The :func:`tree_signature` of a committed step, read from its metadata only.

    Raises:
      Exception: whatever Orbax raises for an unreadable (corrupt) metadata file.
    """
    checkpointer = ocp.StandardCheckpointer()
    try:
        meta = checkpointer.metadata(step_dir / "default")
    finally:
        checkpointer.close()
    tree = getattr(meta, "item_metadata", meta)
    if tree is None:
        raise ValueError(f"{step_dir} has no tree metadata")
    return tree_signature(tree)


def structure_differences(stored: dict, expected: dict) -> list[str]:
    """Readable lines for leaves only stored, only expected, or of another shape/dtype."""
    lines = []
    for name in sorted(set(stored) | set(expected)):
        if name not in expected:
            lines.append(f"{name} only in the checkpoint")
        elif name not in stored:
            lines.append(f"{name} missing from the checkpoint")
        elif stored[name] != expected[name]:
            (s_shape, s_dtype), (e_shape, e_dtype) = stored[name], expected[name]
            lines.append(
                f"{name}: stored {s_dtype}{list(s_shape)}, this run {e_dtype}{list(e_shape)}"
            )
    return lines


def move_aside(step_dir: Path) -> Path:
    """Rename a corrupt step directory to ``../corrupt_checkpoints/<step>-<n>`` (kept).

    Only process 0 renames (the directory is shared); every process gets the path.
    """
    target_root = step_dir.parent.parent / CORRUPT_DIR
    n = 1
    while (target_root / f"{step_dir.name}-{n}").exists():
        n += 1
    target = target_root / f"{step_dir.name}-{n}"
    if jax.process_index() == 0:
        target_root.mkdir(parents=True, exist_ok=True)
        os.replace(step_dir, target)
    return target
