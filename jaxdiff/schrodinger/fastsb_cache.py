"""``PersistentKernelCache``: JAX's persistent compilation cache, for FastSB-OT's users.

The original README's ``fastsb_ot.cache.PersistentKernelCache`` ("stores FFT kernels and
Fisher buffers on disk") never existed (spec fastsb-ot section 4). In JAX the expensive,
reusable artefact is the compiled XLA program, and JAX can already keep it on disk.
"""

from __future__ import annotations

from pathlib import Path

import jax

from jaxdiff._validation import check_int_range, check_real

__all__ = ["PersistentKernelCache"]


class PersistentKernelCache:
    """JAX's persistent compilation cache: compiled programs kept on disk across processes.

    :meth:`enable` points JAX at a directory. Entries are keyed by a hash of the program,
    its compile options, the jax/jaxlib versions and the devices, so processes (and
    versions) sharing a directory never load a program compiled for something else. Each
    entry is one file, written once (an existing key is never rewritten); an entry that
    fails to load (e.g. read while another process is still writing it) makes JAX warn and
    compile instead, so sharing a directory is safe. With ``max_size_bytes``, JAX evicts
    the least recently used entries and serialises access with a file lock (this needs
    the ``filelock`` package).
    """

    def enable(
        self,
        directory,
        *,
        min_compile_time_secs: float = 1.0,
        min_entry_size_bytes: int = 0,
        max_size_bytes: int = -1,
    ) -> Path:
        """Cache every program that takes ``min_compile_time_secs`` or more to compile.

        Args:
          directory: the cache directory (created if missing).
          min_compile_time_secs: programs compiling faster are not written (>= 0; JAX's
            default 1 s: reading back a small program is not faster than compiling it).
          min_entry_size_bytes: smaller entries are not written (>= 0).
          max_size_bytes: evict beyond this size (> 0), or -1 for no limit (default).

        Returns:
          The directory, resolved.
        """
        path = Path(directory).expanduser().resolve()
        check_real("min_compile_time_secs", min_compile_time_secs, 0.0)
        check_int_range("min_entry_size_bytes", min_entry_size_bytes, 0)
        if check_int_range("max_size_bytes", max_size_bytes, -1) == 0:
            raise ValueError("max_size_bytes=0 would disable the cache; use > 0 or -1")
        path.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_secs)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", min_entry_size_bytes)
        jax.config.update("jax_compilation_cache_max_size", max_size_bytes)
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()  # take effect even if this process compiled already
        return path

    @property
    def directory(self) -> Path | None:
        """The directory JAX caches into now, or None when the cache is off."""
        current = jax.config.jax_compilation_cache_dir
        return None if current is None else Path(current)

    def entries(self) -> list[Path]:
        """The cached program files (empty when the cache is off)."""
        directory = self.directory
        if directory is None or not directory.is_dir():
            return []
        return sorted(p for p in directory.iterdir() if p.name.endswith("-cache"))
