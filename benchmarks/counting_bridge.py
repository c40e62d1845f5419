"""Counting Flows on the GPU: jaxdiff vs the original CuPy/PyTorch code, same device, same run.

Peer: njwfish/counting_flows (its code is NOT part of jaxdiff; bring it into an ignored
folder, e.g. ``.peer/counting_flows``, and pass ``--peer .peer``). Three measurements,
each at batch ``B`` x ``d`` counts with ``x0, x1 ~ Poisson(20)`` already on the device:

1. **Forward bridge** ``(t, x_t, target) = bridge(x0, x1)`` (the training-time noising),
   for the constant, Bessel and (jaxdiff only) Poisson slack samplers. jaxdiff: the
   jitted ``SkellamBridge.__call__``; original: ``bridges.cupy.skellam.SkellamBridge``
   with CuPy arrays in and the ``backend`` it trains with (``torch``) or ``cupy`` out.
   Reported as pairs x dims per second and the ratio.
2. **Reverse sampling** ``bridge.sample`` of ``n_steps`` steps with the same small MLP
   (3 x 128 SELU) as the model on both sides: jaxdiff one ``lax.scan`` in one jit;
   original its Python loop ``sampler(x_1, z, model, n_steps=...)``.
3. **Training step**: bridge + energy-score loss (``m`` samples) + backward + clipping +
   Adam, with the original's ``EnergyScoreLoss(MLP)`` and ``Trainer.training_step``
   against jaxdiff's :func:`jaxdiff.train.make_train_step` with
   :class:`jaxdiff.counting.EnergyScoreObjective` (one jit per step; ``--scan`` also times
   ``K`` steps fused in one ``lax.scan``). Steps per second and the ratio.

Timing: warm-up calls first, then the median of ``--repeats`` windows of ``--iters``
calls, with a device synchronisation at the end of each window. Writes JSON.

    python benchmarks/counting_bridge.py --peer .peer [--batch 4096] [--dim 15] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date

import jax
import jax.numpy as jnp
import numpy as np

HIDDEN, LAYERS, NOISE_DIM = 128, 3, 16


def _median_seconds(call, sync, iters, repeats):
    call()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            out = call()
        sync(out)
        times.append((time.perf_counter() - start) / iters)
    return float(np.median(times))


def _jax_sync(out=None):
    if out is not None:
        jax.block_until_ready(out)


def _data(batch, dim, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(20.0, (batch, dim)).astype(np.int32), rng.poisson(20.0, (batch, dim)).astype(
        np.int32
    )


# ----------------------------------------------------------------------------- jaxdiff


def _jax_slack(name):
    from jaxdiff.counting import BesselM, ConstantM, PoissonM

    return {"constant": ConstantM(4), "bessel": BesselM(4.0, 4.0), "poisson": PoissonM(4.0, 4.0)}[
        name
    ]


def jax_forward(x0, x1, slack, iters, repeats):
    from jaxdiff.counting import SkellamBridge

    bridge = SkellamBridge(_jax_slack(slack))
    x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
    fn = jax.jit(lambda k: bridge(k, x0, x1))
    keys = iter(jax.random.split(jax.random.key(0), (iters + 1) * repeats + 2))
    return _median_seconds(lambda: fn(next(keys)), _jax_sync, iters, repeats)


def _jax_model(dim):
    from jaxdiff.counting.energy import EnergyScorePosterior, posterior_apply

    module = EnergyScorePosterior(hidden_dim=HIDDEN, depth=LAYERS, noise_dim=NOISE_DIM)
    ctx = {"noise": jnp.zeros((1, NOISE_DIM)), "condition": None}
    params = module.init(jax.random.key(1), jnp.zeros((1, dim), jnp.int32), jnp.zeros((1,)), ctx)
    return module, posterior_apply(module), params["params"]


def jax_sampling(x1, n_steps, iters, repeats):
    from jaxdiff.counting import SkellamBridge
    from jaxdiff.counting.energy import posterior_sampler

    bridge = SkellamBridge(_jax_slack("bessel"))
    _, apply_fn, params = _jax_model(x1.shape[1])
    x1 = jnp.asarray(x1)

    @jax.jit
    def fn(key, params):
        model = posterior_sampler(apply_fn, params, noise_dim=NOISE_DIM)
        return bridge.sample(key, x1, model, n_steps).samples

    keys = iter(jax.random.split(jax.random.key(0), (iters + 1) * repeats + 2))
    return _median_seconds(lambda: fn(next(keys), params), _jax_sync, iters, repeats)


def jax_training(x0, x1, m_samples, iters, repeats, scan_steps):
    from jaxdiff.counting import SkellamBridge
    from jaxdiff.counting.energy import EnergyScoreObjective
    from jaxdiff.train import TrainingConfig, TrainState, make_optimizer, make_train_step
    from jaxdiff.train.step import train_step

    bridge = SkellamBridge(_jax_slack("bessel"))
    _, apply_fn, params = _jax_model(x0.shape[1])
    objective = EnergyScoreObjective.create(bridge, noise_dim=NOISE_DIM, m_samples=m_samples)
    config = TrainingConfig(batch_size=x0.shape[0], learning_rate=1e-3, gradient_clip_norm=1.0)
    tx = make_optimizer(config, 100_000)
    batch = {"x": jnp.asarray(x0), "x1": jnp.asarray(x1)}
    step = make_train_step(apply_fn, objective, tx, config)
    holder = {"state": TrainState.create(jax.random.key(0), params, tx)}

    def one():
        holder["state"], metrics = step(holder["state"], batch)
        return metrics["loss"]

    per_step = _median_seconds(one, _jax_sync, iters, repeats)
    out = {"jaxdiff_step_s": per_step}
    if scan_steps:

        @jax.jit
        def many(state):
            def body(s, _):
                s, m = train_step(
                    s, batch, apply_fn=apply_fn, objective=objective, tx=tx, config=config
                )
                return s, m["loss"]

            return jax.lax.scan(body, state, None, length=scan_steps)

        holder["state"] = TrainState.create(jax.random.key(0), params, tx)

        def run_many():
            holder["state"], losses = many(holder["state"])
            return losses

        out["jaxdiff_scan_step_s"] = (
            _median_seconds(run_many, _jax_sync, max(1, iters // scan_steps), repeats) / scan_steps
        )
    return out


# ----------------------------------------------------------------------------- original


def _peer_modules(peer_root):
    sys.path.insert(0, peer_root)
    from counting_flows.bridges.cupy import skellam, slack_samplers

    return skellam, slack_samplers


def _cupy_sync(out=None):
    import cupy as cp

    cp.cuda.Device().synchronize()


def peer_forward(peer_root, x0, x1, slack, backend, iters, repeats):
    import cupy as cp

    skellam, slack_samplers = _peer_modules(peer_root)
    sampler = {"constant": slack_samplers.ConstantM(4), "bessel": slack_samplers.BesselM(4.0, 4.0)}
    bridge = skellam.SkellamBridge(sampler[slack], backend=backend)
    x0, x1 = cp.asarray(x0), cp.asarray(x1)
    return _median_seconds(lambda: bridge(x0, x1), _cupy_sync, iters, repeats)


def _peer_model(peer_root, dim, m_samples):
    import torch

    sys.path.insert(0, peer_root)
    from counting_flows.architecture.mlp import MLP
    from counting_flows.models.energy import EnergyScoreLoss

    arch = MLP(in_dims=[NOISE_DIM, 1, dim], hidden_dim=HIDDEN, out_dim=dim, layers=LAYERS)
    return EnergyScoreLoss(arch, noise_dim=NOISE_DIM, m_samples=m_samples).to("cuda"), torch


def peer_sampling(peer_root, x1, n_steps, iters, repeats):
    import cupy as cp

    skellam, slack_samplers = _peer_modules(peer_root)
    model, torch = _peer_model(peer_root, x1.shape[1], 2)

    class Sampler:  # the original's model.sample(x_t=..., t=...) interface
        @torch.no_grad()
        def sample(self, x_t, t):
            return model({"x_t": x_t, "t": t})

    bridge = skellam.SkellamBridge(slack_samplers.BesselM(4.0, 4.0), backend="torch")
    x1 = cp.asarray(x1)
    call = lambda: bridge.sampler(x1, {}, Sampler(), n_steps=n_steps)  # noqa: E731
    return _median_seconds(call, _cupy_sync, iters, repeats)


def peer_training(peer_root, x0, x1, m_samples, iters, repeats):
    skellam, slack_samplers = _peer_modules(peer_root)
    from counting_flows.training import Trainer

    model, torch = _peer_model(peer_root, x0.shape[1], m_samples)
    bridge = skellam.SkellamBridge(slack_samplers.BesselM(4.0, 4.0), backend="torch")
    trainer = Trainer(device="cuda", clip_grad_norm=1.0)
    trainer.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = {"x_0": torch.from_numpy(x0).cuda(), "x_1": torch.from_numpy(x1).cuda()}
    return _median_seconds(
        lambda: trainer.training_step(model, bridge, batch),
        lambda out=None: torch.cuda.synchronize(),
        iters,
        repeats,
    )


# ----------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", default=None, help="folder holding counting_flows/")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=15)
    parser.add_argument("--train-batch", type=int, default=256)
    parser.add_argument("--m-samples", type=int, default=16)
    parser.add_argument("--n-steps", type=int, default=30)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scan", type=int, default=100, help="steps fused per scan (0: off)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    x0, x1 = _data(args.batch, args.dim)
    n_entries = args.batch * args.dim
    res = {
        "date": date.today().isoformat(),
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "batch": args.batch,
        "dim": args.dim,
        "forward": {},
    }
    for slack in ("constant", "bessel", "poisson"):
        row = {"jaxdiff_s": jax_forward(x0, x1, slack, args.iters, args.repeats)}
        if args.peer and slack != "poisson":
            for backend in ("torch", "cupy"):
                row[f"original_{backend}_out_s"] = peer_forward(
                    args.peer, x0, x1, slack, backend, args.iters, args.repeats
                )
            row["speedup"] = row["original_torch_out_s"] / row["jaxdiff_s"]
        row["jaxdiff_entries_per_s"] = n_entries / row["jaxdiff_s"]
        res["forward"][slack] = row
        print(slack, row, flush=True)

    smp = {"jaxdiff_s": jax_sampling(x1, args.n_steps, max(1, args.iters // 10), args.repeats)}
    if args.peer:
        smp["original_s"] = peer_sampling(
            args.peer, x1, args.n_steps, max(1, args.iters // 10), args.repeats
        )
        smp["speedup"] = smp["original_s"] / smp["jaxdiff_s"]
    res["sampling"] = {"n_steps": args.n_steps, **smp}
    print("sampling", res["sampling"], flush=True)

    tb = args.train_batch
    tr = jax_training(x0[:tb], x1[:tb], args.m_samples, args.iters, args.repeats, args.scan)
    if args.peer:
        tr["original_step_s"] = peer_training(
            args.peer, x0[:tb], x1[:tb], args.m_samples, args.iters, args.repeats
        )
        tr["speedup"] = tr["original_step_s"] / tr["jaxdiff_step_s"]
        if "jaxdiff_scan_step_s" in tr:
            tr["speedup_scan"] = tr["original_step_s"] / tr["jaxdiff_scan_step_s"]
    res["training"] = {"batch": tb, "m_samples": args.m_samples, **tr}
    print("training", res["training"], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
