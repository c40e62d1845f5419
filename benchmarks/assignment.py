"""Exact minibatch assignment: jaxdiff's two on-device solvers against scipy, same run.

OT-CFM's exact pairing step (:func:`jaxdiff.ot.pairs.assignment`) on the cost
``|x_i - y_j|^2`` of two 2-D Gaussian clouds (``y`` shifted by 1, as
``tests/ot/test_pairs.py``), ``n`` points each: ``solver="shortest_path"`` and
``solver="auction"`` (jitted, on the default device, synchronised) against scipy's
``linear_sum_assignment`` (the CPU, float64: the oracle). Each row: median ms over
``repeats`` calls after a compile, and the relative excess of each solver's total cost
over scipy's (0 when optimal).

    python benchmarks/assignment.py [--sizes 64 128 256 512] [--repeats 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from benchmarks.sinkhorn_small import median_ms
from jaxdiff.ot.pairs import assignment


def _cost(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1.0
    return ((x[:, None] - y[None]) ** 2).sum(-1)


def row(n: int, repeats: int, seed: int = 0) -> dict:
    """One size: ms per call and cost excess of every solver, and scipy's ms."""
    cost = _cost(n, seed)
    rows, cols = linear_sum_assignment(cost)
    best = cost[rows, cols].sum()
    out = {"n": n, "scipy_ms": median_ms(lambda: linear_sum_assignment(cost), repeats)}
    device_cost = jnp.asarray(cost, jnp.float32)
    for solver in ("shortest_path", "auction"):
        fn = jax.jit(lambda c, solver=solver: assignment(c, solver=solver))
        perm = np.asarray(fn(device_cost))  # compile
        out[f"{solver}_ms"] = median_ms(lambda fn=fn: fn(device_cost).block_until_ready(), repeats)
        out[f"{solver}_cost_excess"] = float(cost[np.arange(n), perm].sum() / best - 1.0)
        out[f"{solver}_over_scipy"] = out[f"{solver}_ms"] / out["scipy_ms"]
    return out


def main(argv=None) -> int:
    """Print one JSON row per size; ``--out`` writes them with the run's metadata."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = []
    for n in args.sizes:
        rows.append(row(n, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        meta = {"date": str(date.today()), "device": str(jax.devices()[0]),
                "platform": platform.platform(), "jax": jax.__version__}  # fmt: skip
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
