"""UNet training throughput: jaxdiff (Flax, bf16, one jitted step) vs diffusers (PyTorch).

The same architecture on both sides: a diffusers ``UNet2DModel`` (64 x 64, RGB,
``block_out_channels`` (128, 256, 256, 256) = base 128 x mult (1, 2, 2, 2), two residual
blocks per level, self-attention at 16 x 16), and jaxdiff's UNet built from its config
with :func:`jaxdiff.interop.config_from_diffusers`. One training step = epsilon-prediction
DDPM loss, backward, global-norm clipping, AdamW (jaxdiff: plus the parameter EMA):

- jaxdiff: :func:`jaxdiff.train.make_train_step` with ``mixed_precision="bf16"`` (bf16
  compute, fp32 master parameters), the model's compute dtype bf16;
- PyTorch: bf16 autocast, ``channels_last``, fused AdamW, eager and ``torch.compile``.

Reports images/s (median over timed windows after warm-up), peak device memory, and the
model-FLOPs utilisation of the jaxdiff step (matrix FLOPs counted on the step's jaxpr by
:mod:`benchmarks.flops` / time, against the dense bf16 peak of the H100 and H200, both
989 TFLOP/s). Writes JSON. Run from the repository root (``benchmarks`` importable).

    python benchmarks/unet_train.py [--batch 64] [--steps 30] [--out unet_train.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from datetime import date

import jax
import jax.numpy as jnp
import numpy as np

HOPPER_BF16_PEAK = 989e12  # H100 SXM and H200: same tensor cores and clock

DIFFUSERS_CONFIG = dict(
    sample_size=64,
    in_channels=3,
    out_channels=3,
    layers_per_block=2,
    block_out_channels=(128, 256, 256, 256),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
)


def _median_rate(step, batch, steps, windows=3):
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        step(steps)
        rates.append(batch * steps / (time.perf_counter() - start))
    return float(np.median(rates))


def bench_jaxdiff(batch, steps):
    from diffusers import UNet2DModel

    from benchmarks.flops import count_flops
    from jaxdiff.interop import config_from_diffusers
    from jaxdiff.nets import UNet, bind
    from jaxdiff.schedules.config import NoiseSchedulerConfig, build_schedule
    from jaxdiff.train import (
        DenoisingObjective,
        TrainingConfig,
        TrainState,
        make_optimizer,
        make_train_step,
    )

    cfg = config_from_diffusers(dict(UNet2DModel(**DIFFUSERS_CONFIG).config))
    cfg = dataclasses.replace(cfg, dtype="bfloat16")
    module = UNet(cfg)
    train_cfg = TrainingConfig(batch_size=batch, mixed_precision="bf16", learning_rate=1e-4)
    tx = make_optimizer(train_cfg, 10_000)
    objective = DenoisingObjective.create(build_schedule(NoiseSchedulerConfig()))

    key = jax.random.key(0)
    x = jax.random.normal(key, (batch, 64, 64, 3))
    params = jax.jit(module.init)(key, x[:1], jnp.zeros((1,), jnp.int32))["params"]
    n_params = sum(p.size for p in jax.tree.leaves(params))
    state = TrainState.create(key, params, tx)
    step = make_train_step(bind(module).apply_fn, objective, tx, train_cfg)
    lowered = step.lower(state, {"x": x})
    compiled = lowered.compile()
    # XLA's cost analysis is None on the H200 machine's JAX (0.11.2) GPU build and does
    # not count cuDNN / cuBLAS custom calls after compilation: count on the jaxpr
    flops = count_flops(step, state, {"x": x})
    holder = {"state": state}

    def run(k):
        s = holder["state"]
        for _ in range(k):
            s, metrics = compiled(s, {"x": x})
        jax.block_until_ready(metrics["loss"])
        holder["state"] = s

    run(3)
    rate = _median_rate(run, batch, steps)
    stats = jax.devices()[0].memory_stats() or {}
    return {
        "images_per_s": rate,
        "params_M": n_params / 1e6,
        "step_tflop": flops / 1e12,
        "mfu": flops * rate / batch / HOPPER_BF16_PEAK if flops else None,
        "peak_GiB": stats.get("peak_bytes_in_use", 0) / 2**30,
    }


def bench_torch(batch, steps, compiled):
    import torch
    from diffusers import UNet2DModel

    dev = "cuda"
    model = UNet2DModel(**DIFFUSERS_CONFIG).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    fwd = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, 64, 64, device=dev).to(memory_format=torch.channels_last)
    abar = torch.linspace(0.999, 0.01, 1000, device=dev)

    def one():
        t = torch.randint(0, 1000, (batch,), device=dev)
        eps = torch.randn_like(x)
        a = abar[t].view(-1, 1, 1, 1)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred = fwd(a.sqrt() * x + (1 - a).sqrt() * eps, t).sample
            loss = torch.nn.functional.mse_loss(pred.float(), eps)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def run(k):
        for _ in range(k):
            one()
        torch.cuda.synchronize()

    run(5)
    torch.cuda.reset_peak_memory_stats()
    rate = _median_rate(run, batch, steps)
    return {"images_per_s": rate, "peak_GiB": torch.cuda.max_memory_allocated() / 2**30}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/unet_train.json")
    args = parser.parse_args()
    rows = {"jaxdiff (bf16, jit)": bench_jaxdiff(args.batch, args.steps)}
    if not args.skip_torch:
        rows["diffusers eager (bf16 autocast)"] = bench_torch(args.batch, args.steps, False)
        rows["diffusers torch.compile (bf16 autocast)"] = bench_torch(args.batch, args.steps, True)
    ref = rows.get("diffusers torch.compile (bf16 autocast)", {}).get("images_per_s")
    print("| method | images/s | peak GiB | vs torch.compile | MFU |\n|---|---|---|---|---|")
    for name, r in rows.items():
        ratio = f"{r['images_per_s'] / ref:.2f}x" if ref else "—"
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "—"
        print(f"| {name} | {r['images_per_s']:.0f} | {r['peak_GiB']:.2f} | {ratio} | {mfu} |")
    meta = {
        "date": str(date.today()),
        "device": jax.devices()[0].device_kind,
        "batch": args.batch,
        "steps": args.steps,
        "config": DIFFUSERS_CONFIG,
    }
    with open(args.out, "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=2, default=str)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
