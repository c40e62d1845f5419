"""Subprocess worker for the multi-device, resume and kill tests.

Usage: python -m tests.train._worker --devices N --out OUT.npz [--run-dir D]
       [--steps S] [--stop-at K] [--sleep SEC] [--full-too]
XLA_FLAGS is set from --devices before JAX is imported.
"""

import argparse
import json
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--devices", type=int, default=1)
parser.add_argument("--out", required=True)
parser.add_argument("--run-dir", default=None)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--stop-at", type=int, default=None)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--ckpt-every", type=int, default=5)
parser.add_argument("--micro", type=int, default=None)
parser.add_argument("--full-too", action="store_true", help="first run all steps without run dir")
args = parser.parse_args()
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxdiff.nets.mlp import MLP  # noqa: E402
from jaxdiff.schedules import DiscreteSchedule  # noqa: E402
from jaxdiff.train import DenoisingObjective, TrainingConfig, array_batches, fit  # noqa: E402

assert jax.device_count() == args.devices, jax.devices()


class Stop(Exception):
    pass


def make_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3)).astype(np.float32) * 0.5 + 1.0
    ctx = rng.normal(size=(256, 2)).astype(np.float32)
    data, _ = array_batches({"x": x, "context": ctx}, 16, seed=3)

    def batch(step):
        if args.stop_at is not None and step == args.stop_at:
            raise Stop
        if args.sleep:
            time.sleep(args.sleep)
        return data(step)

    return batch


model = MLP(hidden_dim=16, depth=2, time_embed_dim=8)
params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((2, 3)), jnp.zeros(2), jnp.zeros((2, 2)))
params = params["params"]


def apply_fn(p, x, t, c):
    return model.apply({"params": p}, x, t, c)


objective = DenoisingObjective.create(DiscreteSchedule.create("linear", 100))
cfg = TrainingConfig(
    batch_size=16,
    micro_batch_size=args.micro,
    num_steps=args.steps,
    learning_rate=3e-3,
    warmup_steps=3,
    weight_decay=0.01,
    ema_decay=0.9,
    log_interval=5,
    checkpoint_interval=args.ckpt_every,
    keep_checkpoints=2,
    progress=False,
)
out = {}
info = {}
if args.full_too:
    stop, args.stop_at = args.stop_at, None
    res = fit(jax.random.key(7), params, apply_fn, objective, make_data(), cfg)
    out.update(
        {
            f"full/{jax.tree_util.keystr(k)}": np.asarray(v)
            for k, v in jax.tree_util.tree_leaves_with_path(res.state.params)
        }
    )
    args.stop_at = stop
if args.run_dir is not None or not args.full_too:
    try:
        res = fit(
            jax.random.key(7), params, apply_fn, objective, make_data(), cfg, run_dir=args.run_dir
        )
        info["start_step"] = res.start_step
        info["final_step"] = int(res.state.step)
        for name, tree in (("params", res.state.params), ("ema", res.state.ema_params)):
            out.update(
                {
                    f"{name}/{jax.tree_util.keystr(k)}": np.asarray(v)
                    for k, v in jax.tree_util.tree_leaves_with_path(tree)
                }
            )
    except Stop:
        info["stopped"] = True
np.savez(args.out, **out)
with open(args.out + ".json", "w") as f:
    json.dump(info, f)
print("worker done", info, file=sys.stderr)
