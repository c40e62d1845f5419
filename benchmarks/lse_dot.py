"""Microbenchmark of the online log-sum-exp-of-a-dot kernel (``jaxdiff.kernels``).

For n = m in ``--sizes`` and d in ``--dims``: ms per call (median of ``--repeats``
after warmup, ``block_until_ready``) of ``lse_dot_pallas`` at each precision, of
``lse_dot_triton`` (when jax-triton runs) and of XLA (``jax.jit`` of the dense reference,
only while n * m <= ``--xla-max``); the exp-unit floor n * m / 3.9e12 s (H100 MUFU rate,
shared/device/README.md) and each time's ratio to it; and each precision's max abs error
against a float64 NumPy oracle on a 2048 x 2048 sub-problem with x, y ~ scale * N(0, I_d)
/ d^(1/4) (so <x_i, y_j> has standard deviation scale^2) and h ~ N(0, 1), scale 1 and 10.

``--sweep {tiles,splits,fp32}`` instead times tilings (blocks, warps, stages, column
splits) of ``lse_dot_pallas``: how the defaults in ``jaxdiff/kernels/lse_dot.py`` were chosen.

    python benchmarks/lse_dot.py [--out benchmarks/results/lse_dot.json]
    python benchmarks/lse_dot.py --sweep tiles --sizes 65536 --dims 64 --precisions bf16
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import statistics
import time
from datetime import date

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.kernels.lse_dot import lse_dot_numpy, lse_dot_pallas, lse_dot_reference

EXP_RATE = 3.9e12  # exp/s of the H100 MUFU units


def _time(fn, repeats):
    jax.block_until_ready(fn())  # compile + warmup
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _problem(n, d, scale, seed=0):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((n, d)) / d**0.25).astype(np.float32)
    y = (scale * rng.standard_normal((n, d)) / d**0.25).astype(np.float32)
    h = rng.standard_normal(n).astype(np.float32)
    return x, y, h


def _triton_fn():
    try:
        from jaxdiff.kernels.lse_dot_triton import _load, lse_dot_triton

        _load()
        return lse_dot_triton, None
    except Exception as err:  # report why, keep benchmarking Pallas
        return None, repr(err)


def accuracy(dims, precisions, triton, n=2048):
    rows = []
    for d, scale in itertools.product(dims, (1.0, 10.0)):
        x, y, h = _problem(n, d, scale, seed=1)
        ref = lse_dot_numpy(x, y, h)
        row = {"d": d, "scale": scale}
        for p in precisions:
            out = np.asarray(lse_dot_pallas(x, y, h, precision=p), np.float64)
            row[f"pallas_{p}"] = float(np.max(np.abs(out - ref)))
            if triton is not None:
                out = np.asarray(triton(x, y, h, precision=p), np.float64)
                row[f"triton_{p}"] = float(np.max(np.abs(out - ref)))
        h_masked = h.copy()
        h_masked[::3] = -np.inf  # masked columns; and all masked: every row is -inf
        for p in precisions:
            out = np.asarray(lse_dot_pallas(x, y, h_masked, precision=p), np.float64)
            row[f"pallas_{p}_masked"] = float(np.max(np.abs(out - lse_dot_numpy(x, y, h_masked))))
            out = np.asarray(lse_dot_pallas(x, y, np.full_like(h, -np.inf), precision=p))
            row[f"pallas_{p}_all_masked_ok"] = bool(np.all(np.isneginf(out)))
        rows.append(row)
        print(
            f"accuracy d={d:<4} scale={scale:<5}"
            + "".join(
                f" {k}={v:.2e}" for k, v in row.items() if isinstance(v, float) and k != "scale"
            )
            + f" all_masked_ok={all(v for k, v in row.items() if k.endswith('_ok'))}"
        )
    return rows


def timings(sizes, dims, precisions, triton, repeats, xla_max):
    rows = []
    head = f"{'n=m':>7}{'d':>5}{'floor ms':>10}  " + "".join(
        f"{name:>16}" for name in [f"pallas_{p}" for p in precisions] + ["triton_bf16", "xla"]
    )
    print(head + "   (ms, x floor)")
    for n, d in itertools.product(sizes, dims):
        x, y, h = (jnp.asarray(a) for a in _problem(n, d, 1.0))
        floor = 1e3 * n * n / EXP_RATE
        row = {"n": n, "m": n, "d": d, "floor_ms": floor}
        for p in precisions:
            call = functools.partial(lse_dot_pallas, x, y, h, precision=p)
            row[f"pallas_{p}_ms"] = _time(call, repeats)
        if triton is not None:
            for p in precisions:
                row[f"triton_{p}_ms"] = _time(
                    functools.partial(triton, x, y, h, precision=p), repeats
                )
        if n * n <= xla_max:
            row["xla_ms"] = _time(functools.partial(jax.jit(lse_dot_reference), x, y, h), repeats)
        cells = [row.get(f"pallas_{p}_ms") for p in precisions]
        cells += [row.get("triton_bf16_ms"), row.get("xla_ms")]
        print(
            f"{n:>7}{d:>5}{floor:>10.3f}  "
            + "".join(f"{'-':>16}" if t is None else f"{t:>9.3f} ({t / floor:4.1f})" for t in cells)
        )
        rows.append(row)
    return rows


SWEEPS = {
    # (block_n, block_m, num_warps, num_stages, num_splits)
    "tiles": [
        (bn, bm, w, s, 1)
        for bn, bm in [(64, 64), (64, 128), (128, 64), (128, 128), (256, 64), (128, 32)]
        for w in (4, 8)
        for s in (1, 2, 3)
    ],
    "splits": [(bn, bm, 4, 2, k) for bn in (16, 32, 64) for bm in (64, 128) for k in (1, 2, 4, 8)],
    "fp32": [
        (bn, bm, w, s, 1)
        for bn, bm in [(16, 64), (32, 32), (32, 64), (64, 32), (64, 64)]
        for w in (4, 8)
        for s in (1, 2)
    ],
}


def sweep(kind, sizes, dims, precisions, repeats, budget_s):
    start, rows = time.perf_counter(), []
    for n, d, p in itertools.product(sizes, dims, precisions):
        x, y, h = (jnp.asarray(a) for a in _problem(n, d, 1.0))
        for bn, bm, w, s, k in SWEEPS[kind]:
            if time.perf_counter() - start > budget_s:
                print("sweep: time budget spent")
                return rows
            kw = dict(precision=p, block_n=bn, block_m=bm, num_warps=w, num_stages=s)
            kw["num_splits"] = k
            try:
                ms = _time(functools.partial(lse_dot_pallas, x, y, h, **kw), repeats)
            except Exception as err:  # a config Triton cannot compile (shared memory)
                ms, kw["error"] = None, repr(err)[:200]
            rows.append({"n": n, "d": d, **kw, "ms": ms})
            print(f"sweep n={n} d={d} {p} bn={bn} bm={bm} w={w} s={s} splits={k}: {ms}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 64, 256])
    parser.add_argument("--precisions", nargs="+", default=["float32", "tf32", "bf16"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--xla-max", type=int, default=16384 * 16384)
    parser.add_argument("--sweep", choices=sorted(SWEEPS), default=None)
    parser.add_argument("--budget-s", type=float, default=150.0)
    parser.add_argument("--out", default="benchmarks/results/lse_dot.json")
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}; jax {jax.__version__}")
    result = {"date": str(date.today()), "device": jax.devices()[0].device_kind}
    result["jax"] = jax.__version__
    if args.sweep:
        result["sweep"] = sweep(
            args.sweep, args.sizes, args.dims, args.precisions, args.repeats, args.budget_s
        )
    else:
        triton, why = _triton_fn()
        result["triton_error"] = why
        if why:
            print(f"triton: not run: {why}")
        result["accuracy"] = accuracy(args.dims, args.precisions, triton)
        result["timings"] = timings(
            args.sizes, args.dims, args.precisions, triton, args.repeats, args.xla_max
        )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
