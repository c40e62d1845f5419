"""What every ``jaxdiff`` command prints: phase lines, and one line per user error.

:class:`Console` prints ``[  12.3s] message`` lines (seconds since the command
started), flushed at once so a pipe or a log file sees them as they happen.
:func:`run_guarded` runs a command and turns a user error (bad config, bad path, bad
number: ``ValueError``, ``TypeError``, ``OSError`` for files) into one line on stderr and
exit code 2; ``--debug`` or ``HYDRA_FULL_ERROR=1`` lets the traceback through instead.
Ctrl-C exits 130 with a line saying that the same command resumes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

__all__ = ["Console", "EXIT_INTERRUPTED", "EXIT_USAGE", "run_guarded"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_USER_ERRORS = (ValueError, TypeError, OSError)


class Console:
    """Phase lines on stdout, each prefixed with the seconds since construction."""

    def __init__(self, stream=None):
        self._stream = stream
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the command started."""
        return time.perf_counter() - self._start

    def __call__(self, message: str) -> None:
        """Print ``message`` as one phase line."""
        stream = self._stream or sys.stdout
        print(f"[{self.elapsed():6.1f}s] {message}", file=stream, flush=True)


def _one_line(err: BaseException) -> str:
    lines = [s.strip() for s in str(err).strip().splitlines() if s.strip()]
    text = " ".join(lines) if lines else type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return text


def run_guarded(app: str, command: Callable[[], int], *, debug: bool = False) -> int:
    """``command()``, with user errors printed as one line (see module); the exit code."""
    debug = debug or os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        return command()
    except KeyboardInterrupt:
        print(
            f"jaxdiff {app}: interrupted; the same command resumes from the last checkpoint",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    except _USER_ERRORS as err:
        if debug:
            raise
        print(f"jaxdiff {app}: error: {_one_line(err)}", file=sys.stderr, flush=True)
        return EXIT_USAGE
