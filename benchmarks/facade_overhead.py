"""Where the time of one sampling call goes: model alone, pure sampler, facade.

For the tiny conv denoiser of ``sampler_overhead.py`` and three methods, times (best of
``--repeats``): the model alone for the same number of calls in a compiled
``lax.scan`` (the peer), ``jax.jit`` of :func:`jaxdiff.samplers.sample` called
directly (method and schedule as compile-time constants, and as device arguments),
and ``AdvancedSamplingManager.sample`` (the facade). Prints a table and writes JSON.

    python benchmarks/facade_overhead.py [--repeats 30] [--out facade_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date

import jax
import jax.numpy as jnp

import jaxdiff
from benchmarks.sampler_overhead import SIZES, _weights, jax_model
from jaxdiff.samplers import sample

METHODS = {"ddim": 50, "dpm_solver": 20, "euler": 30}


def _best(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/facade_overhead.json")
    args = parser.parse_args()
    b, hh, ww, c, h = SIZES[args.size]
    model = jax_model(_weights(0, c, h))
    latents = jax.random.normal(jax.random.key(0), (b, c, hh, ww))
    key = jax.random.key(1)
    rows = []
    print(f"device: {jax.devices()[0].device_kind}; size {args.size}")
    print(
        f"{'method':<12}{'NFE':>5}{'model ms':>10}{'sample ms':>11}{'as args ms':>12}"
        f"{'facade ms':>11}"
    )
    for method, steps in METHODS.items():
        manager = jaxdiff.create_sampler(
            "scaled_linear", method, num_inference_steps=steps, timestep_spacing="trailing"
        )
        direct = jax.jit(lambda k, x, m=manager: sample(k, m.method, m.scheduler, model, x).samples)
        as_args = jax.jit(lambda k, m, s, x: sample(k, m, s, model, x).samples)
        dev = (jax.device_put(manager.method), jax.device_put(manager.scheduler))

        @jax.jit
        def model_only(x, steps=steps):
            def body(x, t):
                return model(x, jnp.full((b,), t)), None

            return jax.lax.scan(body, x, jnp.linspace(999.0, 0.0, steps))[0]

        row = {
            "method": method,
            "nfe": steps,
            "model_ms": _best(lambda: jax.block_until_ready(model_only(latents)), args.repeats),
            "sample_ms": _best(
                lambda f=direct: jax.block_until_ready(f(key, latents)), args.repeats
            ),
            "sample_args_ms": _best(
                lambda f=as_args, d=dev: jax.block_until_ready(f(key, *d, latents)), args.repeats
            ),
            "facade_ms": _best(lambda m=manager: m.sample(model, latents, key=key), args.repeats),
        }
        rows.append(row)
        print(
            f"{method:<12}{steps:>5}{row['model_ms']:>10.3f}{row['sample_ms']:>11.3f}"
            f"{row['sample_args_ms']:>12.3f}"
            f"{row['facade_ms']:>11.3f}"
        )
    meta = {
        "date": date.today().isoformat(),
        "device": jax.devices()[0].device_kind,
        "size": args.size,
        "jax": jax.__version__,
    }
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
