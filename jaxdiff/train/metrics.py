"""Training metrics as JSON lines: one ``{"step": s, name: value, ...}`` object per line.

On resume the writer drops records beyond the restored step (they belong to steps that
will be recomputed), so a killed-and-resumed run leaves the same log as an
uninterrupted one. Only process 0 should write in multi-host runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from jaxdiff._atomic import atomic_write_text

__all__ = ["MetricsWriter", "read_metrics"]


def _scalar(v):
    v = float(np.asarray(v))
    return v if math.isfinite(v) else repr(v)  # JSON has no NaN / inf


def read_metrics(path) -> list[dict]:
    """All records of a jsonl metrics file (an incomplete last line is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            continue
    return out


class MetricsWriter:
    """Append-only jsonl writer.

    Args:
      path: the ``.jsonl`` file (parent directories are created).
      resume_step: when given, existing records with ``step > resume_step`` are removed.
    """

    def __init__(self, path, *, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a")  # noqa: SIM115 - closed in close()

    def write(self, step: int, metrics: dict) -> dict:
        """Append ``{"step": step, **metrics}`` (values converted to float); return it."""
        record = {"step": int(step), **{k: _scalar(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        return record

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
