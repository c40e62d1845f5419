"""Allocation guards: refuse sizes that cannot fit before anything is allocated.

A request such as ``num_features=10**10`` or ``max_iterations=10**12`` would otherwise
reach the runtime's allocator and abort the process (SIGABRT) or exhaust the host.
The estimate is compared with the default device's memory (``bytes_limit`` of
``memory_stats()`` on accelerators; the host's physical memory on CPU).
"""

from __future__ import annotations

import os

import jax

__all__ = ["available_bytes", "check_allocation"]


def available_bytes() -> int:
    """Memory of the default device in bytes (physical memory for the CPU backend)."""
    stats = jax.devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    if limit:
        return int(limit)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_allocation(what: str, nbytes: int, hint: str) -> None:
    """Raise ``ValueError`` when ``nbytes`` (an estimate) exceeds the device's memory.

    Args:
        what: the arguments that set the size, as the user wrote them (e.g.
            ``"num_features=10000000000"``).
        nbytes: estimated bytes of the allocation.
        hint: what to change, appended to the message.
    """
    limit = available_bytes()
    if nbytes > limit:
        raise ValueError(
            f"{what} needs about {nbytes / 2**30:.1f} GiB, more than the "
            f"{limit / 2**30:.1f} GiB of {jax.devices()[0].platform} memory; {hint}"
        )
