"""Config-hash run directories, Orbax checkpoints, fallback, resume, metrics log."""

import dataclasses
import enum
import json
import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nets.mlp import MLP
from jaxdiff.train import (
    CheckpointManager,
    FlowMatchingObjective,
    MetricsWriter,
    TrainingConfig,
    TrainState,
    array_batches,
    config_hash,
    fit,
    make_optimizer,
    read_metrics,
    run_directory,
)


class Kind(enum.Enum):
    A = "a"


@dataclasses.dataclass(frozen=True)
class ModelCfg:
    hidden: int = 32
    mult: tuple = (1, 2)
    kind: Kind = Kind.A


DATA = {"name": "toy", "dim": 2, "scale": 0.5}
OBJ = {"type": "flow"}


def test_config_hash_is_canonical_and_stable_across_processes():
    h = config_hash(ModelCfg(), DATA, OBJ)
    assert len(h) == 12 and int(h, 16) >= 0
    assert h == config_hash(ModelCfg(), {"scale": 0.5, "dim": 2, "name": "toy"}, OBJ)
    assert h != config_hash(ModelCfg(hidden=64), DATA, OBJ)
    assert h != config_hash(ModelCfg(), {**DATA, "dim": 3}, OBJ)
    assert h != config_hash(ModelCfg(), DATA, {"type": "score"})
    assert h != config_hash(DATA, ModelCfg(), OBJ)  # the three roles are distinguished
    code = (
        "import dataclasses, enum\n"
        "from jaxdiff.train.checkpoint import config_hash\n"
        "class Kind(enum.Enum):\n    A = 'a'\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class ModelCfg:\n    hidden: int = 32\n    mult: tuple = (1, 2)\n    kind: Kind = Kind.A\n"
        f"print(config_hash(ModelCfg(), {DATA!r}, {OBJ!r}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == h
    with pytest.raises(TypeError, match="canonical"):
        config_hash({"f": lambda x: x}, DATA, OBJ)
    with pytest.raises(TypeError, match="canonical"):
        config_hash({"big": np.zeros(5000)}, DATA, OBJ)


def test_config_hash_of_flax_modules():
    """A module can serve as its own config: fields, dtypes and activations by name."""
    h = config_hash(MLP(hidden_dim=8), DATA, OBJ)
    assert h == config_hash(MLP(hidden_dim=8), DATA, OBJ)
    assert h != config_hash(MLP(hidden_dim=16), DATA, OBJ)
    assert h != config_hash(MLP(hidden_dim=8, activation=jax.nn.gelu), DATA, OBJ)
    assert h != config_hash(MLP(hidden_dim=8, dtype=jnp.bfloat16), DATA, OBJ)
    assert config_hash({"dtype": jnp.float32}, DATA, OBJ) == config_hash(
        {"dtype": np.dtype("float32")}, DATA, OBJ
    )


def test_run_directory(tmp_path):
    d = run_directory(tmp_path, ModelCfg(), DATA, OBJ)
    assert d == tmp_path / config_hash(ModelCfg(), DATA, OBJ) and d.is_dir()
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model"]["hidden"] == 32 and cfg["data"]["dim"] == 2


def _state(key, step=0):
    net = MLP(hidden_dim=8, depth=1, time_embed_dim=4)
    params = net.init(key, jnp.zeros((1, 2)), jnp.zeros(1))["params"]
    tx = make_optimizer(TrainingConfig(num_steps=10), 10)
    st = TrainState.create(jax.random.key(5), params, tx)
    g = jax.tree.map(jnp.ones_like, params)
    _, opt_state = tx.update(g, st.opt_state, params)
    return st.replace(step=jnp.asarray(step, jnp.int32), opt_state=opt_state)


def _assert_state_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.issubdtype(u.dtype, jax.dtypes.prng_key):
            u, v = jax.random.key_data(u), jax.random.key_data(v)
        np.testing.assert_array_equal(u, v)


def test_save_restore_keep_n(tmp_path, key):
    with CheckpointManager(tmp_path, keep=2) as mgr:
        for s in range(1, 5):
            mgr.save(_state(key, s))
        mgr.wait_until_finished()
        assert mgr.all_steps() == [3, 4] and mgr.latest_step() == 4
        restored = mgr.restore(_state(key, 0))
    _assert_state_equal(restored, _state(key, 4))
    assert CheckpointManager(tmp_path / "empty").restore(_state(key)) is None


def test_corrupt_latest_falls_back_with_warning(tmp_path, key):
    with CheckpointManager(tmp_path, keep=3, async_save=False) as mgr:
        mgr.save(_state(key, 1))
        mgr.save(_state(key, 2))
    step2 = tmp_path / "checkpoints" / "2"
    for root, _, files in os.walk(step2):  # garble every data file of the newest step
        for f in files:
            if "commit_success" not in f and "CHECKPOINT_METADATA" not in f:
                with open(os.path.join(root, f), "r+b") as fh:
                    n = len(fh.read())
                    fh.seek(0)
                    fh.write(b"\x00garbage" * (n // 8 + 1))
    # an interrupted save leaves only a temporary directory, which is not a step
    (tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-1").mkdir()
    mgr = CheckpointManager(tmp_path, keep=3)
    assert mgr.all_steps() == [1, 2]
    with pytest.warns(RuntimeWarning, match="step 2"):
        restored = mgr.restore(_state(key, 0))
    mgr.close()
    _assert_state_equal(restored, _state(key, 1))


def test_fit_resume_skip_if_finished_and_metrics(tmp_path, key):
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    net = MLP(hidden_dim=8, depth=1, time_embed_dim=4)
    params = net.init(key, x[:1], jnp.zeros(1))["params"]

    def apply_fn(p, x, t, c):
        return net.apply({"params": p}, x, t, c)

    data, _ = array_batches({"x": x}, 16, seed=1)
    obj = FlowMatchingObjective.create()
    cfg = TrainingConfig(
        batch_size=16, num_steps=8, log_interval=2, checkpoint_interval=4, progress=False
    )
    k = jax.random.key(2)
    first = fit(k, params, apply_fn, obj, data, cfg, run_dir=tmp_path)
    assert first.start_step == 0 and [r["step"] for r in first.history] == [2, 4, 6, 8]
    again = fit(k, params, apply_fn, obj, data, cfg, run_dir=tmp_path)  # finished: no work
    assert again.start_step == 8 and again.history == []
    _assert_state_equal(again.state, first.state)
    # more steps and another learning rate: same run, resumed (training-only settings)
    more = dataclasses.replace(cfg, num_steps=12, learning_rate=1e-3)
    resumed = fit(k, params, apply_fn, obj, data, more, run_dir=tmp_path)
    assert resumed.start_step == 8 and int(resumed.state.step) == 12
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_metrics_writer_truncates_on_resume(tmp_path):
    path = tmp_path / "m.jsonl"
    with MetricsWriter(path) as w:
        for s in (1, 2, 3):
            w.write(s, {"loss": jnp.float32(s), "bad": float("nan")})
    with open(path, "a") as f:
        f.write('{"step": 4, "lo')  # a line cut by a kill
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    assert read_metrics(path)[0]["bad"] == "nan"
    with MetricsWriter(path, resume_step=2) as w:
        w.write(3, {"loss": 9.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 1.0), (2, 2.0), (3, 9.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_metrics(tmp_path / "missing.jsonl") == []
