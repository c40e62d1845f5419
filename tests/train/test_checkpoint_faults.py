"""Checkpoint faults that used to lose work or data: corrupt newest step, another model."""

import hashlib
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nets import bind
from jaxdiff.nets.mlp import MLP
from jaxdiff.train import (
    CheckpointManager,
    CheckpointMismatchError,
    FlowMatchingObjective,
    TrainingConfig,
    array_batches,
    fit,
)
from jaxdiff.train.checkpoint_checks import CORRUPT_DIR

X = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
CFG = TrainingConfig(
    batch_size=16, num_steps=30, log_interval=10, checkpoint_interval=10, progress=False
)


def _fit(run_dir, hidden=8, config=CFG):
    net = MLP(hidden_dim=hidden, depth=1, time_embed_dim=4)
    params = net.init(jax.random.key(0), X[:1], jnp.zeros(1))["params"]
    data, _ = array_batches({"x": X}, config.batch_size, seed=1)
    return fit(
        jax.random.key(2),
        params,
        bind(net).apply_fn,
        FlowMatchingObjective.create(),
        data,
        config,
        run_dir=run_dir,
    )


def _garble(step_dir):
    """Overwrite every data file of a step (its commit marker stays: it looks complete)."""
    for root, _, files in os.walk(step_dir):
        for f in files:
            if "commit_success" not in f and "CHECKPOINT_METADATA" not in f:
                path = os.path.join(root, f)
                n = os.path.getsize(path)
                with open(path, "wb") as fh:
                    fh.write(b"\x00garbage" * (n // 8 + 1))


def _snapshot(root):
    """``{relative path: sha256}`` of every file under ``root`` (and the directories)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = None
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_corrupt_newest_step_is_moved_aside_and_retrained(tmp_path):
    first = _fit(tmp_path)
    ckpt = tmp_path / "checkpoints"
    assert CheckpointManager(tmp_path).all_steps() == [10, 20, 30]
    _garble(ckpt / "30")
    before = _snapshot(ckpt / "30")
    with pytest.warns(RuntimeWarning, match="step 30 .* moved it to"):
        resumed = _fit(tmp_path)
    assert resumed.start_step == 20 and int(resumed.state.step) == 30
    # the corrupt copy is kept, byte for byte, where Orbax does not look
    kept = tmp_path / CORRUPT_DIR / "30-1"
    assert _snapshot(kept) == before
    # the re-trained step is on disk and equals the first run's final state
    mgr = CheckpointManager(tmp_path)
    assert mgr.all_steps() == [10, 20, 30]
    mgr.close()
    jax.tree.map(np.testing.assert_array_equal, resumed.state.params, first.state.params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing corrupt any more
        again = _fit(tmp_path)
    assert again.start_step == 30 and again.history == []  # no repeated work
    jax.tree.map(np.testing.assert_array_equal, again.state.params, first.state.params)


def test_two_corruptions_of_one_step_are_both_kept(tmp_path):
    _fit(tmp_path)
    for n in (1, 2):
        _garble(tmp_path / "checkpoints" / "30")
        with pytest.warns(RuntimeWarning, match="unreadable or corrupt"):
            assert _fit(tmp_path).start_step == 20
        assert (tmp_path / CORRUPT_DIR / f"30-{n}").is_dir()
    assert sorted(os.listdir(tmp_path / CORRUPT_DIR)) == ["30-1", "30-2"]


def test_another_models_checkpoints_are_refused_and_left_untouched(tmp_path):
    _fit(tmp_path, hidden=8)
    before = _snapshot(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused outright, not "unreadable or corrupt"
        with pytest.raises(CheckpointMismatchError) as info:
            _fit(tmp_path, hidden=16)
    message = str(info.value)
    assert "different model" in message and "step 30" in message
    assert "params/dense_0/kernel: stored float32[6, 8], this run float32[6, 16]" in message
    assert isinstance(info.value, ValueError) and info.value.differences
    assert _snapshot(tmp_path) == before  # every file byte-identical, nothing added
    assert _fit(tmp_path, hidden=8).start_step == 30  # the owner still resumes


def test_mismatch_is_refused_even_behind_a_corrupt_newest_step(tmp_path):
    """The structure of every step is compared before any corrupt step is moved."""
    _fit(tmp_path, hidden=8)
    _garble(tmp_path / "checkpoints" / "30")
    before = _snapshot(tmp_path)
    with pytest.raises(CheckpointMismatchError, match="step 20"):
        _fit(tmp_path, hidden=16)
    assert _snapshot(tmp_path) == before


def test_out_of_memory_during_restore_leaves_the_step_in_place(tmp_path, monkeypatch):
    """A MemoryError is the host's fault, not the step's: it propagates, nothing moves."""
    first = _fit(tmp_path)
    mgr = CheckpointManager(tmp_path)

    def no_memory(*args, **kwargs):
        raise MemoryError("host out of memory")

    monkeypatch.setattr(mgr._manager, "restore", no_memory)
    with pytest.raises(MemoryError):
        mgr.restore(first.state)
    mgr.close()
    assert CheckpointManager(tmp_path).all_steps() == [10, 20, 30]
    assert not (tmp_path / CORRUPT_DIR).exists()
