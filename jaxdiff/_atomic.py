"""Write a file completely or not at all: a temporary sibling renamed into place.

The temporary file lives in the destination's folder (same file system), so the final
``os.replace`` is an atomic rename: readers see the old file or the new one, never a
partial write.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path, write_fn: Callable[[str], object], *, fsync: bool = False) -> Path:
    """Write ``path`` through ``write_fn(tmp)`` and rename it into place; returns ``path``.

    ``write_fn`` receives the path (``str``) of an empty temporary file
    ``.<name>.<random>.tmp`` in ``path``'s folder, which must exist, and writes there. On
    success the file (flushed to disk first when ``fsync``) replaces ``path`` with
    ``os.replace``. On any exception, ``KeyboardInterrupt`` included, the temporary file is
    removed, ``path`` is left as it was and the exception propagates. The file keeps
    ``tempfile.mkstemp``'s mode, ``0o600`` (read and write for its owner only).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
