"""fit on one process: epochs, data order as a pure function of the step, sharding API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.nets.mlp import MLP
from jaxdiff.schedules import VPLinearSchedule
from jaxdiff.train import (
    ScoreMatchingObjective,
    TrainingConfig,
    array_batches,
    data_mesh,
    fit,
    shard_batch,
)


def test_array_batches_is_a_pure_function_of_the_step():
    x = np.arange(20)[:, None].astype(np.float32)
    fn, spe = array_batches({"x": x, "c": -x}, 6, seed=4)
    assert spe == 3
    epoch0 = np.concatenate([fn(s)["x"][:, 0] for s in range(3)])
    assert len(set(epoch0.tolist())) == 18  # no repeats inside an epoch
    np.testing.assert_array_equal(fn(1)["c"], -fn(1)["x"])
    fresh, _ = array_batches({"x": x, "c": -x}, 6, seed=4)
    for s in (5, 0, 7, 2):  # any order, any instance: same batches
        np.testing.assert_array_equal(fresh(s)["x"], fn(s)["x"])
    assert not np.array_equal(fn(0)["x"], fn(3)["x"])  # a new permutation each epoch
    with pytest.raises(ValueError, match="leading size"):
        array_batches({"x": x, "c": x[:5]}, 4, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        array_batches({"x": x}, 21, seed=0)


def test_fit_with_epochs_reduces_the_loss(key):
    x = 0.3 * np.random.default_rng(0).normal(size=(128, 2)).astype(np.float32) + 2.0
    net = MLP(hidden_dim=32, depth=2, time_embed_dim=8, time_scale=100.0)
    params = net.init(key, x[:1], jnp.zeros(1))["params"]

    def apply_fn(p, x, t, c):
        return net.apply({"params": p}, x, t, c)

    data, spe = array_batches({"x": x}, 32, seed=0)
    cfg = TrainingConfig(
        batch_size=32,
        num_steps=None,
        epochs=30,
        learning_rate=3e-3,
        log_interval=20,
        progress=False,
        ema_decay=0.9,
    )
    obj = ScoreMatchingObjective.create(VPLinearSchedule.create())
    result = fit(jax.random.key(1), params, apply_fn, obj, data, cfg, steps_per_epoch=spe)
    assert result.num_steps == 120 and int(result.state.step) == 120 and result.run_dir is None
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="steps_per_epoch"):
        fit(jax.random.key(1), params, apply_fn, obj, data, cfg)
    with pytest.raises(TypeError, match="TrainingConfig"):
        fit(jax.random.key(1), params, apply_fn, obj, data, {"batch_size": 32})


def test_sharding_helpers():
    mesh = data_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    b = shard_batch({"x": np.ones((4, 2), np.float32)}, mesh)
    assert b["x"].sharding.spec == jax.sharding.PartitionSpec("data")
    with pytest.raises(ValueError, match="batch size"):
        shard_batch({"x": np.float32(1.0)}, mesh)
    with pytest.raises(ValueError, match="devices"):
        data_mesh([])


def test_fit_warns_on_non_finite_loss(key):
    x = np.ones((8, 2), np.float32)
    data, _ = array_batches({"x": x}, 8, seed=0)
    cfg = TrainingConfig(batch_size=8, num_steps=2, log_interval=1, progress=False)
    obj = ScoreMatchingObjective.create(VPLinearSchedule.create())
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        result = fit(
            key, {"w": jnp.ones(())}, lambda p, x, t, c: x * jnp.nan * p["w"], obj, data, cfg
        )
    assert result.history[0]["loss"] != result.history[0]["loss"]  # nan
