"""Data parallelism with ``jax.sharding``: one code path for 1 or N devices.

A 1-D :class:`~jax.sharding.Mesh` over all devices with axis ``"data"``; the train
state is replicated (``PartitionSpec()``) and every batch leaf is split along its
leading (batch) axis (``PartitionSpec("data")``). ``jit`` then inserts the gradient
all-reduce itself -- no ``pmap``/``pmean`` in library code (DESIGN.md, scale).

Multi-host: call ``jax.distributed.initialize()`` (coordinator address, process count
and id from the cluster environment or arguments) in every process *before* any other
JAX call. ``jax.devices()`` then lists every host's devices, so :func:`data_mesh` spans
them all; each process loads its own slice of the global batch (e.g. rows
``process_index::process_count``) and :func:`shard_batch` assembles the global array
with ``jax.make_array_from_process_local_data``. Orbax checkpoints are written
collectively (every process calls ``save``), and the same code runs unchanged.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["DATA_AXIS", "batch_sharding", "data_mesh", "replicate", "replicated", "shard_batch"]

DATA_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
    """1-D mesh named ``"data"`` over ``devices`` (default: all, on all hosts)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices is empty; give at least one device")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading axis over the ``"data"`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree, mesh: Mesh):
    """``device_put`` every leaf of ``tree`` replicated on ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch, mesh: Mesh):
    """Place a batch pytree on ``mesh``, split along axis 0.

    Single process: ``batch`` is the global batch. Multi-process: ``batch`` is this
    process's local rows and the result is the global array (``make_array_from_
    process_local_data``).

    Raises:
      ValueError: a leaf's leading size is not divisible by the number of devices.
    """
    sharding = batch_sharding(mesh)
    n_local = len(mesh.local_devices)

    def put(a):
        a = np.asarray(a) if not isinstance(a, jax.Array) else a
        if a.ndim == 0 or a.shape[0] % n_local:
            raise ValueError(
                f"batch leaf with shape {a.shape}: the batch size must be divisible by the "
                f"{n_local} local devices"
            )
        if jax.process_count() == 1:
            return jax.device_put(a, sharding)
        return jax.make_array_from_process_local_data(sharding, np.asarray(a))

    return jax.tree.map(put, batch)
