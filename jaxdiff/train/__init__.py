"""Training: config, pure train step, objectives, optax, sharding, Orbax checkpoints, loop.

Typical use::

    cfg = TrainingConfig(batch_size=256, num_steps=10_000, learning_rate=1e-3)
    model = ResidualMLP(hidden_dim=128)
    params = model.init(key_init, x[:1], jnp.zeros(1))["params"]
    apply_fn = bind(model).apply_fn          # jaxdiff.nets.bind
    objective = FlowMatchingObjective.create()
    data, spe = array_batches({"x": x}, cfg.batch_size, seed=cfg.seed)
    run = run_directory("runs", model_cfg, data_cfg, objective_cfg)
    result = fit(jax.random.key(cfg.seed), params, apply_fn, objective, data, cfg, run_dir=run)
"""

from jaxdiff.train.checkpoint import (
    CheckpointManager,
    CheckpointMismatchError,
    canonical_config,
    config_hash,
    run_directory,
)
from jaxdiff.train.config import MAX_SEED, MIXED_PRECISION, TrainingConfig
from jaxdiff.train.loop import FitResult, array_batches, fit
from jaxdiff.train.metrics import MetricsWriter, read_metrics
from jaxdiff.train.objectives import (
    DenoisingObjective,
    FlowMatchingObjective,
    ScoreMatchingObjective,
    as_batch,
    example_keys,
)
from jaxdiff.train.optim import make_lr_schedule, make_optimizer
from jaxdiff.train.sharding import (
    DATA_AXIS,
    batch_sharding,
    data_mesh,
    replicate,
    replicated,
    shard_batch,
)
from jaxdiff.train.state import TrainState, ema_update, step_key
from jaxdiff.train.step import compute_gradients, make_train_step, train_step

__all__ = [
    "DATA_AXIS",
    "MAX_SEED",
    "MIXED_PRECISION",
    "CheckpointManager",
    "CheckpointMismatchError",
    "DenoisingObjective",
    "FitResult",
    "FlowMatchingObjective",
    "MetricsWriter",
    "ScoreMatchingObjective",
    "TrainState",
    "TrainingConfig",
    "array_batches",
    "as_batch",
    "batch_sharding",
    "canonical_config",
    "compute_gradients",
    "config_hash",
    "data_mesh",
    "ema_update",
    "example_keys",
    "fit",
    "make_lr_schedule",
    "make_optimizer",
    "make_train_step",
    "read_metrics",
    "replicate",
    "replicated",
    "run_directory",
    "shard_batch",
    "step_key",
    "train_step",
]
