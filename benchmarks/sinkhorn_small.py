"""Many small Sinkhorn problems: jaxdiff (jit of vmap) against POT in a loop and ott-jax vmapped.

B = ``--problems`` independent problems of n = m = ``--points`` points in R^d (float32
NumPy, x, y ~ N(0, I_d / d), so E|x - y|^2 = 2), uniform weights, cost ``|x - y|^2`` (not
halved), absolute ``--epsilon`` (POT's ``reg``; ott-jax's and jaxdiff's ``epsilon``). Every
solver runs exactly ``--iters`` full iterations (both scalings / potentials updated), no
early stop: a fixed count is the fairest comparison, because the three test convergence
differently (POT: marginal error every 10 iterations; ott-jax: every ``inner_iterations``).

* jaxdiff: ``jax.jit(jax.vmap(lambda x, y: jaxdiff.ot.sinkhorn(x, y, epsilon=eps,
  max_iterations=K, min_iterations=K, inner_iterations=K, threshold=1e-9).primal_cost))``
  (``geometry="auto"``: dense at this size);
* ott-jax: the same ``jit(vmap(...))`` over ``PointCloud`` + ``Sinkhorn`` directly;
* POT: ``ot.sinkhorn(a, b, M, reg=eps, numItermax=K, stopThr=0)`` (Knopp scaling in
  float64 NumPy on the CPU) in a Python loop, M computed per problem inside the loop.

Times: compiled calls (first call excluded) with ``block_until_ready``, median of
``--repeats``; POT's loop timed once per repeat, median. Transport cost <P, C> from each is
compared: the max absolute difference over problems is printed (POT is float64, the JAX
solvers float32; at a fixed K the iteration orders differ slightly, so agreement is to the
solvers' convergence at K). A float64 NumPy log-domain Sinkhorn with ott-jax's update
order (untimed) is a fourth column of that comparison, also where POT is missing.

    python benchmarks/sinkhorn_small.py [--problems 1024] [--points 64] [--dim 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from datetime import date

import jax
import jax.numpy as jnp
import numpy as np

import jaxdiff.ot


def problems(key_seed: int, batch: int, n: int, d: int):
    """``[batch, n, d]`` float32 NumPy clouds x, y ~ N(0, I_d / d)."""
    rng = np.random.default_rng(key_seed)
    x = rng.standard_normal((batch, n, d), dtype=np.float32) / np.float32(np.sqrt(d))
    y = rng.standard_normal((batch, n, d), dtype=np.float32) / np.float32(np.sqrt(d))
    return x, y


def median_ms(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn()`` in ms (``fn`` synchronises)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def jaxdiff_costs(eps: float, iters: int):
    """jit(vmap) of the front door: ``[B, n, d] x 2 -> [B]`` transport costs <P, C>."""

    def one(x, y):
        return jaxdiff.ot.sinkhorn(
            x,
            y,
            epsilon=eps,
            max_iterations=iters,
            min_iterations=iters,
            inner_iterations=iters,
            threshold=1e-9,
        ).primal_cost

    return jax.jit(jax.vmap(one))


def ott_costs(eps: float, iters: int):
    """jit(vmap) of ott-jax's dense Sinkhorn: ``[B]`` transport costs <P, C>."""
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    solver = sinkhorn.Sinkhorn(
        threshold=1e-9, max_iterations=iters, min_iterations=iters, inner_iterations=iters
    )

    def one(x, y):
        geom = pointcloud.PointCloud(x, y, epsilon=eps)  # cost |x - y|^2
        out = solver(linear_problem.LinearProblem(geom))
        return jnp.sum(out.matrix * geom.cost_matrix)

    return jax.jit(jax.vmap(one))


def pot_costs(x, y, eps: float, iters: int) -> np.ndarray:
    """POT ``ot.sinkhorn`` per problem in a Python loop (float64): ``[B]`` costs <P, C>."""
    import ot

    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        xi, yi = x[i].astype(np.float64), y[i].astype(np.float64)
        a = np.full(xi.shape[0], 1.0 / xi.shape[0])
        b = np.full(yi.shape[0], 1.0 / yi.shape[0])
        m = ot.dist(xi, yi)  # squared Euclidean, not halved
        plan = ot.sinkhorn(a, b, m, reg=eps, numItermax=iters, stopThr=0.0)
        out[i] = np.sum(plan * m)
    return out


def reference_costs(x, y, eps: float, iters: int) -> np.ndarray:
    """Float64 NumPy log-domain Sinkhorn over the whole batch: ``[B]`` costs <P, C>.

    ott-jax's update order (g, then f, from f = g = 0) in the convention
    P = exp((f + g - C) / eps) (Peyre & Cuturi 2019, Remark 4.23); a precision oracle
    that runs wherever NumPy does (POT is missing on the GPU machine).
    """
    from scipy.special import logsumexp

    x, y = x.astype(np.float64), y.astype(np.float64)
    c = ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)  # [B, n, m]
    log_a, log_b = -np.log(x.shape[1]), -np.log(y.shape[1])
    f = np.zeros(x.shape[:2])
    g = np.zeros(y.shape[:2])
    for _ in range(iters):
        g = eps * log_b - eps * logsumexp((f[:, :, None] - c) / eps, axis=1)
        f = eps * log_a - eps * logsumexp((g[:, None, :] - c) / eps, axis=2)
    plan = np.exp((f[:, :, None] + g[:, None, :] - c) / eps)
    return (plan * c).sum((1, 2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=1024)
    parser.add_argument("--points", type=int, default=64)
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--epsilon", type=float, default=0.1, help="absolute, cost |x-y|^2")
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/sinkhorn_small.json")
    args = parser.parse_args()
    x_np, y_np = problems(args.seed, args.problems, args.points, args.dim)
    x, y = jax.device_put(x_np), jax.device_put(y_np)
    rows, costs = {}, {}

    for name, make in (("jaxdiff", jaxdiff_costs), ("ott-jax", ott_costs)):
        try:
            fn = make(args.epsilon, args.iters)
            start = time.perf_counter()
            costs[name] = np.asarray(jax.block_until_ready(fn(x, y)), np.float64)
            compile_s = time.perf_counter() - start
            ms = median_ms(lambda fn=fn: jax.block_until_ready(fn(x, y)), args.repeats)
            rows[name] = {"total_ms": ms, "compile_s": compile_s}
        except Exception as e:  # keep the other rows
            rows[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "did not converge": stopThr=0 by design
            costs["POT"] = pot_costs(x_np, y_np, args.epsilon, args.iters)
            ms = median_ms(
                lambda: pot_costs(x_np, y_np, args.epsilon, args.iters), max(1, args.repeats // 2)
            )
        rows["POT"] = {"total_ms": ms}
    except Exception as e:
        rows["POT"] = {"error": f"{type(e).__name__}: {e}"[:300]}

    costs["float64 reference"] = reference_costs(x_np, y_np, args.epsilon, args.iters)
    ref = rows.get("jaxdiff", {}).get("total_ms")
    for row in rows.values():
        if "total_ms" in row:
            row["per_problem_us"] = 1e3 * row["total_ms"] / args.problems
            row["jaxdiff_speedup"] = row["total_ms"] / ref if ref else None
    agree = {}
    names = list(costs)
    for i, p in enumerate(names):
        for q in names[i + 1 :]:
            agree[f"{p} vs {q}"] = float(np.max(np.abs(costs[p] - costs[q])))

    dev = jax.devices()[0].device_kind
    print(
        f"jax device: {dev}; {args.problems} problems x {args.points} points, d = {args.dim}, "
        f"eps = {args.epsilon}, {args.iters} iterations"
    )
    lines = [
        f"### sinkhorn_small — {date.today().isoformat()} — {dev}",
        "",
        f"`python {' '.join(sys.argv)}`",
        "",
        "| solver | total ms | per problem us | time / jaxdiff | note |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        if "error" in row:
            lines.append(f"| {name} | — | — | — | {row['error']} |")
        else:
            note = "jit(vmap), compile excluded" if name != "POT" else "Python loop, NumPy f64"
            speed = row.get("jaxdiff_speedup")
            lines.append(
                f"| {name} | {row['total_ms']:.2f} | {row['per_problem_us']:.2f} | "
                f"{'—' if speed is None else f'{speed:.2f}x'} | {note} |"
            )
    lines.append("")
    mean_cost = float(np.mean(costs["jaxdiff"])) if "jaxdiff" in costs else None
    lines.append(
        "Max |<P, C> difference| over problems: "
        + (", ".join(f"{k}: {v:.2e}" for k, v in agree.items()) or "n/a")
        + ("" if mean_cost is None else f" (mean cost {mean_cost:.4f})")
    )
    print("\n".join(lines))
    meta = {
        "date": date.today().isoformat(),
        "jax_device": dev,
        "host": platform.node(),
        "jax": jax.__version__,
        "argv": sys.argv,
        **vars(args),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows, "max_cost_difference": agree}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
