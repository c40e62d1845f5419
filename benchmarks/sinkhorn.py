"""Large-scale Sinkhorn: jaxdiff's online geometry against ott-jax dense, flash-sinkhorn, geomloss.

Problem (the same for every row): x, y are n = m points in R^d, x_i, y_j ~ N(0, I_d / d)
(independent clouds drawn in float32 by NumPy from ``--seed``, so every framework sees the
same points; E|x - y|^2 = 2 for every d), uniform weights, cost ``|x - y|^2`` (NOT halved),
absolute ``--epsilon`` (default 0.2 = 0.1 x the mean cost 2), balanced, a fixed number of
iterations K = ``--iters`` (no early stop). One iteration = both half-updates (f and g).

Rows (``--methods``):

* ``jaxdiff:<backend>:<precision>``: ``jaxdiff.ot.sinkhorn(x, y, epsilon=eps,
  geometry="online", backend=..., precision=..., max_iterations=K, min_iterations=K,
  inner_iterations=K, threshold=1e-9)`` under ``jax.jit`` (``jaxdiff:dense:float32``
  calls ``geometry="dense"``);
* ``ott_dense``: ott-jax 0.6 ``PointCloud`` (cost matrix materialised) with
  ``Sinkhorn(max_iterations=K, min_iterations=K, inner_iterations=K)``; skipped
  ("n/a (memory)") when n * m * 4 bytes exceeds ``--ott-max-bytes`` (60 GB). It runs
  under JAX's default matmul precision, as users get it: on the H100 its float32 cost
  matmul is then reduced-precision (sinkhorn_small.py measured <P, C> off by about 1e-3
  relative; ``JAX_DEFAULT_MATMUL_PRECISION=highest`` removes it);
* ``flash_sinkhorn``: flash-sinkhorn 0.4.1 ``SamplesLoss("sinkhorn", backend="alternating",
  use_epsilon_scaling=False, eps=eps, n_iters=K, potentials=True, debias=False,
  normalize=False, allow_tf32=True, autotune=True)``. Its cost is ``cost_scale * |x - y|^2``
  with ``cost_scale = 1`` (``half_cost=False``, the default) and ``eps`` is absolute
  (``sinkhorn_flashstyle_alternating``), so the problem is the same as ott-jax's; its
  potentials are in GeomLoss' convention (P = a b^T exp((f + g - C) / eps)) and are
  converted (f + eps log a) for the consistency check;
* ``geomloss_tensorized``: geomloss 0.3.1's dense PyTorch loop
  (``geomloss._legacy.sinkhorn_divergence.sinkhorn_loop`` with ``softmin_tensorized``),
  given the full ``|x - y|^2`` cost matrix (geomloss' default cost is ``|x - y|^2 / 2`` and
  ``eps = blur^p``; both bypassed) and ``eps_list = [eps] * K``, ``debias=False``,
  ``last_extrapolation=False``: K symmetric (averaged) iterations of two softmins each, plus
  one initial pair. Skipped when 3 n m * 4 bytes (cost, its scaled copy, the exp) exceeds
  ``--geomloss-max-bytes`` (70 GB);
* ``floor``: the exp-unit floor, 2 n m exponentials per iteration at 3.9e12 exp/s (H100
  MUFU, shared/device/README.md).

Timing: each row runs in a fresh subprocess (killed after ``--row-timeout`` s; its error is
recorded and the table goes on). A solve of K iterations and one of 2K are each compiled /
autotuned and warmed up, then timed ``--repeats`` times (fewer when one solve takes more
than 30 s) with a device sync (``block_until_ready`` / ``torch.cuda.synchronize``); medians.
``--timing slope`` (default) reports ms/iter = (T(2K) - T(K)) / K, which cancels each
framework's fixed per-solve work (centering, cost matrix, final error or cost evaluation);
``--timing total`` reports T(K) / K. "solve ms" is always T(K).

Peak memory: JAX ``device.memory_stats()["peak_bytes_in_use"]`` at the end of the
row's process (it cannot be reset, hence one process per row; it includes the inputs and
anything compilation allocated); torch ``max_memory_allocated`` after
``reset_peak_memory_stats()`` following the warmup (so autotuning scratch is excluded;
the inputs are included). JAX and torch share the GPU (``XLA_PYTHON_CLIENT_PREALLOCATE=false``).

Extra tables: the accuracy of each jaxdiff precision (potentials after ``--accuracy-iters``
iterations at n = ``--accuracy-size``, max |f - f_ref| / eps against jaxdiff xla float32,
also after removing the constant shift f + c, g - c that leaves the plan unchanged), and a
same-problem check (``--check-size``): every peer's potentials, converted to ott-jax's
convention, give a plan whose <P, C> and marginal error are computed in float64 NumPy.

    python benchmarks/sinkhorn.py [--sizes 4096 16384] [--dims 2 64 256] [--iters 20]
    python benchmarks/sinkhorn.py --sizes 512 --dims 2 --iters 5   # CPU smoke
    python benchmarks/sinkhorn.py --methods ott_dense flash_sinkhorn floor --sizes 65536
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date

EXP_RATE = 3.9e12  # exp/s of the H100 MUFU units (shared/device/README.md)
DEFAULT_METHODS = (
    "jaxdiff:pallas:float32",
    "jaxdiff:pallas:tf32",
    "jaxdiff:pallas:bf16",
    "jaxdiff:triton:tf32",
    "jaxdiff:xla:float32",
    "ott_dense",
    "flash_sinkhorn",
    "geomloss_tensorized",
    "floor",
)
PEERS = ("ott_dense", "flash_sinkhorn", "geomloss_tensorized")
TIME_BUDGET_S = 30.0  # per timed solve length: fewer repeats beyond this
RESULT_TAG = "RESULT_JSON "


# ------------------------------------------------------------------ problem and timing


def points(n: int, d: int, seed: int):
    """``[n, d]`` float32 NumPy points ~ N(0, I_d / d) (E|x|^2 = 1 for every d)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d), dtype=np.float32) / np.float32(math.sqrt(d))


def _median_s(fn, repeats: int) -> tuple[float, float]:
    """(first-call seconds, median seconds of the timed calls) of a synchronous ``fn``."""
    start = time.perf_counter()
    fn()  # compile / autotune
    first = time.perf_counter() - start
    start = time.perf_counter()
    fn()  # warm
    warm = time.perf_counter() - start
    repeats = max(1, min(repeats, int(TIME_BUDGET_S / max(warm, 1e-9))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


# ------------------------------------------------------------------ solvers
# Each factory takes float32 NumPy x, y and returns (run(K) -> synced outputs,
# potentials(outputs) -> (f, g) NumPy in ott-jax's convention P = exp((f + g - C) / eps)).


def _jax_jaxdiff(x, y, eps, backend, precision):
    import jax
    import numpy as np

    import jaxdiff.ot

    geometry = "dense" if backend == "dense" else "online"
    xd, yd = jax.device_put(x), jax.device_put(y)
    cache = {}

    def run(k):
        if k not in cache:

            def solve(x, y):
                kwargs = {} if geometry == "dense" else {"backend": backend, "precision": precision}
                r = jaxdiff.ot.sinkhorn(
                    x,
                    y,
                    epsilon=eps,
                    geometry=geometry,
                    max_iterations=k,
                    min_iterations=k,
                    inner_iterations=k,
                    threshold=1e-9,
                    **kwargs,
                )
                return r.f, r.g, r.n_iters

            cache[k] = jax.jit(solve)
        return jax.block_until_ready(cache[k](xd, yd))

    def potentials(out):
        return np.asarray(out[0], np.float64), np.asarray(out[1], np.float64)

    return run, potentials


def _jax_ott_dense(x, y, eps):
    import jax
    import numpy as np
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    xd, yd = jax.device_put(x), jax.device_put(y)
    cache = {}

    def run(k):
        if k not in cache:

            def solve(x, y):
                geom = pointcloud.PointCloud(x, y, epsilon=eps)  # cost |x - y|^2
                solver = sinkhorn.Sinkhorn(
                    threshold=1e-9, max_iterations=k, min_iterations=k, inner_iterations=k
                )
                out = solver(linear_problem.LinearProblem(geom))
                return out.f, out.g

            cache[k] = jax.jit(solve)
        return jax.block_until_ready(cache[k](xd, yd))

    def potentials(out):
        return np.asarray(out[0], np.float64), np.asarray(out[1], np.float64)

    return run, potentials


def _torch_inputs(x, y):
    import torch

    dev = "cuda"
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    a = torch.full((x.shape[0],), 1.0 / x.shape[0], device=dev)
    b = torch.full((y.shape[0],), 1.0 / y.shape[0], device=dev)
    return xt, yt, a, b


def _geomloss_to_ott(f, g, n, m, eps):
    """GeomLoss convention (P = a b^T exp((f + g - C)/eps)) to ott-jax's: f + eps log a."""
    import numpy as np

    f = f.detach().double().cpu().numpy().reshape(-1) + eps * np.log(1.0 / n)
    g = g.detach().double().cpu().numpy().reshape(-1) + eps * np.log(1.0 / m)
    return f, g


def _torch_flash(x, y, eps):
    import torch
    from flash_sinkhorn import SamplesLoss

    xt, yt, a, b = _torch_inputs(x, y)
    losses = {}

    def run(k):
        if k not in losses:
            losses[k] = SamplesLoss(
                "sinkhorn",
                backend="alternating",  # Gauss-Seidel, like ott-jax
                use_epsilon_scaling=False,
                eps=eps,  # absolute; cost |x - y|^2 (half_cost=False)
                n_iters=k,
                potentials=True,
                debias=False,
                normalize=False,
                allow_tf32=True,
                autotune=True,
            )
        with torch.no_grad():
            out = losses[k](a, xt, b, yt)
        torch.cuda.synchronize()
        return out

    def potentials(out):
        return _geomloss_to_ott(out[0], out[1], x.shape[0], y.shape[0], eps)

    return run, potentials


def _torch_geomloss(x, y, eps):
    import torch
    from geomloss._legacy.sinkhorn_divergence import log_weights, sinkhorn_loop
    from geomloss._legacy.sinkhorn_samples import softmin_tensorized

    xt, yt, a, b = _torch_inputs(x, y)

    def run(k):
        with torch.no_grad():
            x2 = (xt * xt).sum(-1)
            y2 = (yt * yt).sum(-1)
            c_xy = (x2[:, None] + y2[None, :] - 2.0 * xt @ yt.T)[None]  # |x - y|^2, not halved
            _, _, g_ab, f_ba = sinkhorn_loop(
                softmin_tensorized,
                log_weights(a)[None],
                log_weights(b)[None],
                None,
                None,
                c_xy,
                c_xy.transpose(1, 2),
                [eps] * k,
                rho=None,
                debias=False,
                last_extrapolation=False,
            )
        torch.cuda.synchronize()
        return f_ba, g_ab

    def potentials(out):
        return _geomloss_to_ott(out[0], out[1], x.shape[0], y.shape[0], eps)

    return run, potentials


def make_solver(method: str, x, y, eps: float):
    """(run, potentials, framework) for a method name (see the module docstring)."""
    if method.startswith("jaxdiff:"):
        _, backend, precision = method.split(":")
        return (*_jax_jaxdiff(x, y, eps, backend, precision), "jax")
    if method == "ott_dense":
        return (*_jax_ott_dense(x, y, eps), "jax")
    if method == "flash_sinkhorn":
        return (*_torch_flash(x, y, eps), "torch")
    if method == "geomloss_tensorized":
        return (*_torch_geomloss(x, y, eps), "torch")
    raise ValueError(f"unknown method {method!r}; allowed: {DEFAULT_METHODS} or jaxdiff:<b>:<p>")


# ------------------------------------------------------------------ workers (subprocesses)


def _peak_jax():
    import jax

    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def worker_time(spec: dict) -> dict:
    """One table row: times K and 2K iterations of ``spec['method']`` at (n, d)."""
    n, d, k, eps = spec["n"], spec["d"], spec["iters"], spec["epsilon"]
    x, y = points(n, d, spec["seed"]), points(n, d, spec["seed"] + 1)
    run, _, framework = make_solver(spec["method"], x, y, eps)
    if framework == "torch":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("needs a CUDA device (torch.cuda.is_available() is False)")
    compile_s, t_k = _median_s(lambda: run(k), spec["repeats"])
    if framework == "torch":
        torch.cuda.reset_peak_memory_stats()
        _median_s(lambda: run(k), 1)  # the peak of a warm solve
    row = {"compile_s": compile_s, "solve_ms": 1e3 * t_k}
    if spec["timing"] == "slope":
        _, t_2k = _median_s(lambda: run(2 * k), spec["repeats"])
        row["ms_per_iter"] = 1e3 * (t_2k - t_k) / k
        row["solve_2k_ms"] = 1e3 * t_2k
    else:
        row["ms_per_iter"] = 1e3 * t_k / k
    if spec["method"].startswith("jaxdiff:"):
        row["n_iters"] = int(run(k)[2])
    if framework == "torch":
        row["peak_bytes"] = int(torch.cuda.max_memory_allocated())
    else:
        row["peak_bytes"] = _peak_jax()
    return row


def _plan_stats(x, y, f, g, eps):
    """<P, C> and the marginal error |P 1 - a|_1 + |P^T 1 - b|_1, float64 NumPy."""
    import numpy as np

    x, y = x.astype(np.float64), y.astype(np.float64)
    c = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    p = np.exp((f[:, None] + g[None, :] - c) / eps)
    err = np.abs(p.sum(1) - 1.0 / len(x)).sum() + np.abs(p.sum(0) - 1.0 / len(y)).sum()
    return float((p * c).sum()), float(err)


def worker_check(spec: dict) -> dict:
    """Same-problem check: every method's plan cost and marginal error at a small size."""
    n, d, k, eps = spec["n"], spec["d"], spec["iters"], spec["epsilon"]
    x, y = points(n, d, spec["seed"]), points(n, d, spec["seed"] + 1)
    out = {}
    for method in spec["methods"]:
        try:
            run, potentials, _ = make_solver(method, x, y, eps)
            cost, err = _plan_stats(x, y, *potentials(run(k)), eps)
            out[method] = {"transport_cost": cost, "marginal_error": err}
        except Exception as e:  # one broken peer must not hide the others
            out[method] = {"error": _short(e)}
    return out


def worker_accuracy(spec: dict) -> dict:
    """Each jaxdiff backend/precision's potentials against jaxdiff xla float32."""
    import numpy as np

    n, d, k, eps = spec["n"], spec["d"], spec["iters"], spec["epsilon"]
    x, y = points(n, d, spec["seed"]), points(n, d, spec["seed"] + 1)
    run, potentials, _ = make_solver("jaxdiff:xla:float32", x, y, eps)
    f_ref, g_ref = potentials(run(k))
    cost_ref, _ = _plan_stats(x, y, f_ref, g_ref, eps)
    out = {}
    for method in spec["methods"]:
        try:
            run, potentials, _ = make_solver(method, x, y, eps)
            f, g = potentials(run(k))
            shift = np.mean(f - f_ref)  # (f + c, g - c) is the same plan
            cost, err = _plan_stats(x, y, f, g, eps)
            out[method] = {
                "f_err_over_eps": float(np.max(np.abs(f - f_ref)) / eps),
                "g_err_over_eps": float(np.max(np.abs(g - g_ref)) / eps),
                "f_err_shifted_over_eps": float(np.max(np.abs(f - shift - f_ref)) / eps),
                "g_err_shifted_over_eps": float(np.max(np.abs(g + shift - g_ref)) / eps),
                "cost_rel_err": abs(cost - cost_ref) / abs(cost_ref),
                "marginal_error": err,
            }
        except Exception as e:
            out[method] = {"error": _short(e)}
    return out


WORKERS = {"time": worker_time, "check": worker_check, "accuracy": worker_accuracy}


def _short(err: BaseException, limit: int = 300) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        result = WORKERS[spec["job"]](spec)
    except Exception as e:  # reported to the parent as the row's error
        result = {"error": _short(e)}
    print(RESULT_TAG + json.dumps(result), flush=True)


def spawn(spec: dict, timeout_s: float) -> dict:
    """Runs one worker job in a fresh Python process; its result, or {"error": ...}."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), root) if p)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout_s:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"worker exit {proc.returncode}: {tail[0][:300]}"}


# ------------------------------------------------------------------ driver and tables


def skip_reason(method: str, n: int, args) -> str | None:
    if method == "ott_dense" and n * n * 4 > args.ott_max_bytes:
        return "n/a (memory)"
    if method == "geomloss_tensorized" and 3 * n * n * 4 > args.geomloss_max_bytes:
        return "n/a (memory)"
    return None


def add_ratios(rows):
    """Speedups vs ott dense and flash-sinkhorn (> 1: faster) and multiples of the floor."""
    ref = {}
    for r in rows:
        if r.get("ms_per_iter") and r["method"] in ("ott_dense", "flash_sinkhorn", "floor"):
            ref[(r["n"], r["d"], r["method"])] = r["ms_per_iter"]
    for r in rows:
        ms = r.get("ms_per_iter") if r["method"] != "floor" else None
        for peer, key in (("ott_dense", "vs_ott_dense"), ("flash_sinkhorn", "vs_flash")):
            peer_ms = ref.get((r["n"], r["d"], peer))
            r[key] = peer_ms / ms if ms and ms > 0 and peer_ms else None
        floor = ref.get((r["n"], r["d"], "floor"))
        r["x_floor"] = ms / floor if ms and floor else None
        if r["method"] == "floor":
            r["x_floor"] = 1.0


def _fmt(value, spec, suffix=""):
    """``value`` formatted, or a dash padded to the spec's width."""
    if value is None:
        width = spec.split(".")[0]
        return f"{'—':>{width}}" if width else "—"
    return f"{value:{spec}}{suffix}"


def markdown(rows, meta, args, accuracy, checks) -> str:
    lines = [
        f"### sinkhorn — {meta['date']} — {meta['jax_device']}",
        "",
        f"`python {' '.join(meta['argv'])}` (eps = {args.epsilon}, K = {args.iters}, "
        f"timing: {args.timing})",
        "",
        "| n = m | d | method | ms/iter | solve ms (K it) | peak GiB | vs ott dense "
        "| vs flash | x floor | note |",
        "|---" * 10 + "|",
    ]
    for r in rows:
        peak = r.get("peak_bytes")
        lines.append(
            f"| {r['n']} | {r['d']} | {r['method']} | {_fmt(r.get('ms_per_iter'), '.3f')} | "
            f"{_fmt(r.get('solve_ms'), '.1f')} | "
            f"{_fmt(None if peak is None else peak / 2**30, '.2f')} | "
            f"{_fmt(r.get('vs_ott_dense'), '.2f', 'x')} | {_fmt(r.get('vs_flash'), '.2f', 'x')} | "
            f"{_fmt(r.get('x_floor'), '.1f')} | {r.get('error') or r.get('note') or ''} |"
        )
    if accuracy:
        lines += [
            "",
            f"Accuracy at n = m = {args.accuracy_size}, {args.accuracy_iters} iterations, "
            "against jaxdiff xla float32 (errors / eps; 'shifted': after removing the "
            "constant f + c, g - c):",
            "",
            "| d | method | max abs df | max abs dg | df shifted | dg shifted | rel. cost err "
            "| marginal err |",
            "|---" * 8 + "|",
        ]
        for d, res in accuracy.items():
            for method, a in res.items():
                if "error" in a:
                    lines.append(f"| {d} | {method} | {a['error']} | | | | | |")
                    continue
                lines.append(
                    f"| {d} | {method} | {a['f_err_over_eps']:.2e} | {a['g_err_over_eps']:.2e} | "
                    f"{a['f_err_shifted_over_eps']:.2e} | {a['g_err_shifted_over_eps']:.2e} | "
                    f"{a['cost_rel_err']:.2e} | {a['marginal_error']:.2e} |"
                )
    if checks:
        lines += [
            "",
            f"Same problem: plan cost <P, C> and marginal error (float64) from each method's "
            f"potentials at n = m = {args.check_size}, {args.check_iters} iterations:",
            "",
            "| d | method | <P, C> | marginal err |",
            "|---" * 4 + "|",
        ]
        for d, res in checks.items():
            for method, c in res.items():
                if "error" in c:
                    lines.append(f"| {d} | {method} | {c['error']} | |")
                else:
                    lines.append(
                        f"| {d} | {method} | {c['transport_cost']:.6f} | "
                        f"{c['marginal_error']:.2e} |"
                    )
    return "\n".join(lines) + "\n"


def _meta(argv):
    meta = {"date": date.today().isoformat(), "host": platform.node(), "argv": argv}
    try:
        import jax

        meta["jax"] = jax.__version__
        meta["jax_device"] = jax.devices()[0].device_kind
    except Exception as e:
        meta["jax_device"] = f"unknown ({_short(e)})"
    return meta


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--sizes", nargs="+", type=int, default=[4096, 16384, 65536, 262144, 1048576]
    )
    parser.add_argument("--dims", nargs="+", type=int, default=[2, 64, 256])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--iters", type=int, default=20, help="K, Sinkhorn iterations per solve")
    parser.add_argument("--epsilon", type=float, default=0.2, help="absolute, cost |x-y|^2")
    parser.add_argument("--timing", choices=("slope", "total"), default="slope")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--row-timeout", type=float, default=300.0, help="seconds per row")
    parser.add_argument("--ott-max-bytes", type=float, default=60e9)
    parser.add_argument("--geomloss-max-bytes", type=float, default=70e9)
    parser.add_argument("--accuracy-size", type=int, default=4096, help="0 disables")
    parser.add_argument("--accuracy-iters", type=int, default=100)
    parser.add_argument("--check-size", type=int, default=2048, help="0 disables")
    parser.add_argument("--check-iters", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/sinkhorn.json")
    args = parser.parse_args()
    if args.worker:
        _worker_main(args.worker)
        return
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    common = {"epsilon": args.epsilon, "seed": args.seed}
    rows = []
    print(
        f"{'n':>8}{'d':>5}  {'method':<24}{'ms/iter':>10}{'solve ms':>11}{'peak GiB':>10}  note",
        flush=True,
    )
    for n in args.sizes:
        for d in args.dims:
            for method in args.methods:
                row = {"n": n, "d": d, "method": method, "iters": args.iters}
                if method == "floor":
                    row["ms_per_iter"] = 1e3 * 2 * n * n / EXP_RATE
                    row["note"] = "2nm exp / 3.9e12 per s"
                elif reason := skip_reason(method, n, args):
                    row["note"] = reason
                else:
                    spec = {
                        **common,
                        "job": "time",
                        "method": method,
                        "n": n,
                        "d": d,
                        "iters": args.iters,
                        "repeats": args.repeats,
                        "timing": args.timing,
                    }
                    row.update(spawn(spec, args.row_timeout))
                rows.append(row)
                peak = row.get("peak_bytes")
                print(
                    f"{n:>8}{d:>5}  {method:<24}{_fmt(row.get('ms_per_iter'), '10.3f')}"
                    f"{_fmt(row.get('solve_ms'), '11.1f')}"
                    f"{_fmt(None if peak is None else peak / 2**30, '10.2f')}  "
                    f"{row.get('error') or row.get('note') or ''}",
                    flush=True,
                )
    add_ratios(rows)
    jaxdiff_methods = [m for m in args.methods if m.startswith("jaxdiff:")]
    accuracy, checks = {}, {}
    if args.accuracy_size and jaxdiff_methods:
        for d in args.dims:
            spec = {
                **common,
                "job": "accuracy",
                "n": args.accuracy_size,
                "d": d,
                "iters": args.accuracy_iters,
                "methods": jaxdiff_methods,
            }
            accuracy[d] = spawn(spec, args.row_timeout)
            if "error" in accuracy[d]:  # the reference itself failed
                accuracy[d] = {"jaxdiff:xla:float32 (reference)": accuracy[d]}
    check_methods = [m for m in args.methods if m in PEERS] + jaxdiff_methods[:1]
    if args.check_size and check_methods:
        for d in args.dims:
            spec = {
                **common,
                "job": "check",
                "n": args.check_size,
                "d": d,
                "iters": args.check_iters,
                "methods": check_methods,
            }
            checks[d] = spawn(spec, args.row_timeout)
            if "error" in checks[d]:
                checks[d] = {"all": checks[d]}
    meta = _meta(sys.argv)
    meta.update(vars(args) | {"exp_rate": EXP_RATE, "worker": None})
    table = markdown(rows, meta, args, accuracy, checks)
    print()
    print(table)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows, "accuracy": accuracy, "checks": checks}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
