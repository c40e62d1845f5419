"""Sampler overhead: jaxdiff (one compiled program) against diffusers' Python loop.

The same small convolutional denoiser is written in JAX and in PyTorch (same layers,
same FLOPs, random weights). For each method and model size we time

* jaxdiff: the whole compiled run (``AdvancedSamplingManager.sample``), and a compiled
  ``lax.scan`` of the model alone with the same number of calls;
* diffusers: its scheduler loop with the torch model, and the torch model alone in a
  Python loop with the same number of calls.

Sampler overhead per step = (run time - model-only time) / steps. The table reports
both overheads, their share of model time, and the end-to-end ratio diffusers / jaxdiff.

    python benchmarks/sampler_overhead.py [--sizes tiny unet] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date

import jax
import jax.numpy as jnp
import numpy as np

import jaxdiff

SIZES = {
    # name: (batch, height, width, channels, hidden)
    "tiny": (4, 16, 16, 4, 32),
    "small": (16, 64, 64, 4, 256),
    # per-call cost of the order of a 35.8M-parameter diffusers UNet2DModel at 64x64,
    # batch 64 (tens of ms in eager PyTorch)
    "unet": (64, 64, 64, 4, 512),
}
METHODS = {
    "ddim": ("DDIMScheduler", 50),
    "dpm_solver": ("DPMSolverMultistepScheduler", 20),
    "euler": ("EulerDiscreteScheduler", 30),
}


def _weights(seed, c, h):
    rng = np.random.default_rng(seed)
    shapes = {"w1": (h, c, 3, 3), "w2": (h, h, 3, 3), "w3": (c, h, 3, 3), "temb": (h,)}
    return {
        k: (rng.standard_normal(s) / np.sqrt(np.prod(s[1:]) or 1)).astype(np.float32)
        for k, s in shapes.items()
    }


def jax_model(weights):
    """NCHW conv denoiser in JAX."""
    w = {k: jnp.asarray(v) for k, v in weights.items()}
    dn = ("NCHW", "OIHW", "NCHW")

    def conv(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn)

    def model(x, t, context=None):
        h = jax.nn.silu(conv(x, w["w1"]) + (t[:, None] / 1000.0 * w["temb"])[..., None, None])
        h = jax.nn.silu(conv(h, w["w2"]))
        return conv(h, w["w3"])

    return model


def torch_model(weights, device):
    import torch

    w = {k: torch.from_numpy(v).to(device) for k, v in weights.items()}
    f = torch.nn.functional

    @torch.no_grad()
    def model(x, t):
        t = torch.as_tensor(t, device=device, dtype=torch.float32).reshape(-1)
        h = f.silu(
            f.conv2d(x, w["w1"], padding=1) + (t[:, None] / 1000.0 * w["temb"])[..., None, None]
        )
        h = f.silu(f.conv2d(h, w["w2"], padding=1))
        return f.conv2d(h, w["w3"], padding=1)

    return model


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_jax(size, method, steps, repeats, unroll):
    b, hh, ww, c, h = SIZES[size]
    model = jax_model(_weights(0, c, h))
    latents = jax.random.normal(jax.random.key(0), (b, c, hh, ww))
    manager = jaxdiff.create_sampler(
        "scaled_linear", method, num_inference_steps=steps, timestep_spacing="trailing"
    )
    res = manager.sample(model, latents, key=jax.random.key(1), unroll=unroll)  # compiles
    run = _best(
        lambda: manager.sample(model, latents, key=jax.random.key(1), unroll=unroll), repeats
    )
    nfe = res.num_function_evals

    @jax.jit
    def model_only(x):
        def body(x, t):
            return model(x, jnp.full((b,), t)), None

        return jax.lax.scan(body, x, jnp.linspace(999.0, 0.0, nfe), unroll=unroll)[0]

    jax.block_until_ready(model_only(latents))
    model_t = _best(lambda: jax.block_until_ready(model_only(latents)), repeats)
    return {"run_s": run, "model_s": model_t, "nfe": nfe, "compile_s": res.compile_time}


def bench_torch(size, method, steps, repeats, device):
    import diffusers
    import torch

    b, hh, ww, c, h = SIZES[size]
    model = torch_model(_weights(0, c, h), device)
    latents = torch.randn(b, c, hh, ww, device=device)
    sched = getattr(diffusers, METHODS[method][0])(
        beta_schedule="scaled_linear", timestep_spacing="trailing"
    )

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def run():
        sched.set_timesteps(steps, device=device)
        x = latents * sched.init_noise_sigma
        for t in sched.timesteps:
            out = model(sched.scale_model_input(x, t), t.expand(b))
            x = sched.step(out, t, x).prev_sample
        sync()

    ts = torch.linspace(999, 0, steps, device=device)

    def model_only():
        x = latents
        for t in ts:
            x = model(x, t.expand(b))
        sync()

    run(), model_only()
    return {"run_s": _best(run, repeats), "model_s": _best(model_only, repeats), "nfe": steps}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--unroll", nargs="+", default=["1"], help="scan unroll variants: ints or 'full'"
    )
    parser.add_argument("--out", default="benchmarks/sampler_overhead.json")
    parser.add_argument("--results-md", default="benchmarks/RESULTS.md")
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    jax_dev = jax.devices()[0].device_kind
    rows = []
    hdr = (
        f"{'size':<6}{'method':<12}{'unroll':>6}{'NFE':>5}{'jax run ms':>12}{'jax ovh/step us':>17}"
        f"{'ovh % model':>13}{'torch run ms':>14}{'torch ovh/step us':>19}{'speedup':>9}"
    )
    print(f"jax device: {jax_dev}; torch device: {device}")
    print(hdr)
    for size in args.sizes:
        for method in args.methods:
            steps = METHODS[method][1]
            t = bench_torch(size, method, steps, args.repeats, device)
            for unroll_name in args.unroll:
                unroll = True if unroll_name == "full" else int(unroll_name)
                j = bench_jax(size, method, steps, args.repeats, unroll)
                row = {
                    "size": size,
                    "method": method,
                    "unroll": unroll_name,
                    "nfe": j["nfe"],
                    "jax_run_ms": 1e3 * j["run_s"],
                    "jax_model_ms": 1e3 * j["model_s"],
                    "jax_compile_s": j["compile_s"],
                    "jax_overhead_us_per_step": 1e6 * (j["run_s"] - j["model_s"]) / j["nfe"],
                    "jax_overhead_pct_of_model": 100 * (j["run_s"] - j["model_s"]) / j["model_s"],
                    "torch_run_ms": 1e3 * t["run_s"],
                    "torch_model_ms": 1e3 * t["model_s"],
                    "torch_overhead_us_per_step": 1e6 * (t["run_s"] - t["model_s"]) / t["nfe"],
                    "speedup_vs_diffusers": t["run_s"] / j["run_s"],
                }
                rows.append(row)
                print(
                    f"{size:<6}{method:<12}{unroll_name:>6}{row['nfe']:>5}{row['jax_run_ms']:>12.2f}"
                    f"{row['jax_overhead_us_per_step']:>17.1f}"
                    f"{row['jax_overhead_pct_of_model']:>12.1f}%"
                    f"{row['torch_run_ms']:>14.2f}{row['torch_overhead_us_per_step']:>19.1f}"
                    f"{row['speedup_vs_diffusers']:>8.1f}x"
                )
    meta = {
        "date": date.today().isoformat(),
        "jax_device": jax_dev,
        "torch_device": device,
        "host": platform.node(),
        "jax": jax.__version__,
        "torch": torch.__version__,
    }
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    if args.results_md:
        with open(args.results_md, "a") as f:
            f.write(f"\n### sampler_overhead — {meta['date']} — {jax_dev} / torch {device}\n\n")
            f.write(f"`python {' '.join(sys.argv)}`\n\n")
            f.write(
                "| size | method | unroll | NFE | jaxdiff run ms | jaxdiff overhead us/step "
                "| overhead % of model | diffusers run ms | diffusers overhead us/step "
                "| speedup |\n" + "|---" * 10 + "|\n"
            )
            for r in rows:
                f.write(
                    f"| {r['size']} | {r['method']} | {r['unroll']} | {r['nfe']} | "
                    f"{r['jax_run_ms']:.2f} | "
                    f"{r['jax_overhead_us_per_step']:.1f} | {r['jax_overhead_pct_of_model']:.1f} | "
                    f"{r['torch_run_ms']:.2f} | {r['torch_overhead_us_per_step']:.1f} | "
                    f"{r['speedup_vs_diffusers']:.1f}x |\n"
                )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
