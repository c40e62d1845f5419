"""Run a benchmark's parts in order, each timed, a failing part recorded as a result."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence


def run_parts(parts: Sequence[tuple[str, Callable[[], list]]], selected) -> dict[str, list]:
    """``{name: rows}`` for every ``(name, fn)`` of ``parts`` (in order); ``[]`` if not selected.

    A part that raises prints its traceback and gets one row ``{"part_error": ...}``, so the
    other parts still run; each selected part's wall time is printed.
    """
    tables = {name: [] for name, _ in parts}
    for name, fn in parts:
        if name in selected:
            start = time.perf_counter()
            try:
                tables[name] = fn()
            except Exception:
                traceback.print_exc()
                tables[name] = [{"part_error": traceback.format_exc(limit=3)}]
            print(f"[{name}: {time.perf_counter() - start:.1f} s]", flush=True)
    return tables
