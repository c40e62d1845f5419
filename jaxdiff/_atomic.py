"""Write a file completely or not at all: a temporary sibling renamed into place.

The temporary file lives in the destination's folder (same file system), so the final
``os.replace`` is an atomic rename: readers see the old file or the new one, never a
partial write.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write(path, write_fn: Callable[[str], object], *, fsync: bool = False) -> Path:
    """Write ``path`` through ``write_fn(tmp)`` and rename it into place; returns ``path``.

    ``write_fn`` receives the path (``str``) of an empty temporary file
    ``.<name>.<random>.tmp`` in ``path``'s folder, which must exist, and writes there. On
    success the file (flushed to disk first when ``fsync``) replaces ``path`` with
    ``os.replace``. On any exception, ``KeyboardInterrupt`` included, the temporary file is
    removed, ``path`` is left as it was and the exception propagates. The new file gets
    the mode of the file it replaces, or (a new file) the mode ``open`` would give,
    ``0o666`` less the process umask -- not ``mkstemp``'s private ``0o600``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, _mode_for(path))
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


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write` of one string (UTF-8); returns ``path``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _mode_for(path: Path) -> int:
    """Permission bits for a file written at ``path`` (see :func:`atomic_write`)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
