"""Honest evaluation of jaxdiff's Schrödinger-bridge samplers on problems with exact answers.

``python experiments/schrodinger/evaluate.py [--quick] [--out DIR]`` runs every comparison
of issue 14 §4 (see ``README.md`` beside this file), writes ``DIR/results.json`` (every
number, per seed) and ``DIR/tables.md``, and prints the markdown tables.

Samplers, all on the same problem and the same initial noise per seed:

* continuous (VP linear schedule, ``beta`` 0.1 -> 20, grid 1 -> ``T_MIN``): probability-flow
  Euler and Heun, FastSB-OT (``FastSBOTConfig(...).bridge_method``, run by the facade's own
  program :func:`jaxdiff.schrodinger.runner.run_program`) plain and with each correction,
  ATLAS's Richardson flow (always / selective); the model returns the exact score;
* discrete (DDIM, DPM-Solver++ 2M) on :func:`matching_discrete_schedule`: training step
  ``i`` is continuous time ``(i + 1) / 1000`` with ``alpha_bar_i = alpha((i + 1) / 1000)^2``
  exactly, and the model returns ``eps = -sigma_i score``.

NFE counts model calls: ``steps = round(NFE / calls per step)``, the NFE reported is
``steps x calls per step``. One compiled program per (sampler structure, steps, problem):
numbers (OT epsilon and weight, Langevin mass, Richardson tolerance, the exact or biased
law) are traced, so they share it. Runs are timed after compilation (``block_until_ready``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import problems as P  # noqa: E402

from jaxdiff.metrics import energy_distance  # noqa: E402
from jaxdiff.ot import sinkhorn, sliced_wasserstein  # noqa: E402
from jaxdiff.samplers import DDIM, DPMSolver  # noqa: E402
from jaxdiff.samplers.driver import sample as driver_sample  # noqa: E402
from jaxdiff.schedules.continuous import make_schedule  # noqa: E402
from jaxdiff.schedules.discrete import DiscreteSchedule  # noqa: E402
from jaxdiff.schrodinger import (  # noqa: E402
    BridgeMethod,
    FastSBOTConfig,
    FastSBOTSolver,
    RichardsonFlow,
    RichardsonState,
)
from jaxdiff.schrodinger.runner import run_program  # noqa: E402

SCHEDULE = make_schedule("linear")
T_MIN = 1e-3
NUM_TRAIN = 1000
PF_EULER, PF_HEUN = "PF Euler (= Richardson off)", "PF Heun (= FastSB-OT plain)"
DPM = "DPM-Solver++(2M, Karras)"
#: error metrics (lower is better) per problem kind; the first is the primary one
ERROR_METRICS = {"gaussian": ("w2", "map_rms"), "mixture": ("energy", "sw2", "mode_tv")}
PRESETS = {20: "draft", 50: "fast", 100: "balanced", 200: "ultra", 400: "extreme"}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Sizes of one run: particles per problem, NFE grids, seeds and correction settings."""

    n: dict
    nfe: tuple
    plain_nfe: tuple  # extra NFE for the plain solvers: their time-vs-NFE curve
    seeds: int
    ot: tuple  # (relative epsilon, weight) pairs of the OT pull
    rich_tol: tuple  # selective-update tolerances (RMS units of the state)
    plan_n: tuple
    sb_dims: tuple


QUICK = Sizes(
    {"gaussian": 512, "ring": 512, "mixture": 256},
    (10, 20),
    (50,),
    2,
    ((0.05, 1.0), (0.2, 1.0)),
    (0.02,),
    (256, 1024),
    (5,),
)
FULL = Sizes(
    {"gaussian": 4096, "ring": 4096, "mixture": 2048},
    (10, 20, 50, 100),
    (200,),
    3,
    ((0.01, 1.0), (0.05, 1.0), (0.05, 0.3)),
    (0.005, 0.02),
    (256, 1024, 4096),
    (5, 50),
)
PARTS = ("gaussian", "ring", "mixture", "plans")


def matching_discrete_schedule(num_train: int = NUM_TRAIN) -> DiscreteSchedule:
    """The discrete schedule of :data:`SCHEDULE`: ``alpha_bar_i = alpha((i + 1) / T)^2``."""
    t = jnp.arange(1, num_train + 1, dtype=jnp.float32) / num_train
    return DiscreteSchedule.create(alphas_cumprod=SCHEDULE.alpha(t) ** 2)


DISCRETE = matching_discrete_schedule()


@dataclasses.dataclass(frozen=True)
class Variant:
    """One sampler: ``build(steps)`` gives its method (numbers traced), or ``facade`` a run.

    ``facade(problem, params, steps, shape)`` returns ``run(key, reference) -> {"noise",
    "samples", "finite"}`` for samplers that go through a seed facade (their own program).
    """

    name: str
    group: str
    calls_per_step: int
    build: Callable[[int], Any] | None = None
    plain: str | None = None
    discrete: bool = False
    reference: bool = False
    curve: bool = False  # a plain solver: also run at Sizes.plain_nfe
    facade: Callable | None = None


def _fastsb(steps, **fields):
    preset = PRESETS.get(2 * steps, "draft")  # the preset whose NFE this is (fields override)
    config = FastSBOTConfig(
        quality=preset, num_timesteps=steps, t_min=T_MIN, memory_limit_ot_mb=4096.0, **fields
    )
    return config.bridge_method("score")


def variants(sizes: Sizes) -> list[Variant]:
    """The samplers compared, baselines first; corrected ones name their plain solver."""
    out = [
        Variant(
            "DDIM",
            "baseline",
            1,
            lambda n: DDIM(num_inference_steps=n, timestep_spacing="leading"),
            discrete=True,
        ),
        Variant(
            DPM,
            "baseline",
            1,
            lambda n: DPMSolver(num_inference_steps=n, use_karras_sigmas=True),
            discrete=True,
        ),
        Variant(
            PF_EULER,
            "baseline",
            1,
            lambda n: BridgeMethod(num_steps=n, base="euler", prediction_type="score", t_min=T_MIN),
            curve=True,
        ),
        Variant(PF_HEUN, "baseline", 2, _fastsb, curve=True),
    ]
    for eps, w in sizes.ot:
        build = functools.partial(_fastsb, use_ot_correction=True, epsilon=eps, ot_weight=w)
        out.append(
            Variant(
                f"FastSB-OT + OT pull (eps {eps}, w {w})",
                "fastsb",
                2,
                build,
                plain=PF_HEUN,
                reference=True,
            )
        )
    for lam, label in ((0.0, "Fisher"), (1.0, "isotropic")):
        build = functools.partial(_fastsb, langevin_steps=1, fisher_shrinkage=lam)
        out.append(
            Variant(f"FastSB-OT + Langevin ({label} mass)", "fastsb", 3, build, plain=PF_HEUN)
        )
    rich = functools.partial(RichardsonFlow, prediction_type="score", t_min=T_MIN)
    out.append(
        Variant(
            "ATLAS Richardson (always)", "atlas", 2, lambda n: rich(num_steps=n), plain=PF_EULER
        )
    )
    for tol in sizes.rich_tol:
        out.append(
            Variant(
                f"ATLAS Richardson (selective, tol {tol})",
                "atlas",
                2,
                lambda n, tol=tol: rich(num_steps=n, tol=tol),
                plain=PF_EULER,
            )
        )
    return out


def fastsb_facade(**fields):
    """A ``Variant.facade`` running :class:`FastSBOTSolver` itself (the ATLAS one is alike)."""

    def make(problem, params, steps, shape):
        def score_model(x, t):
            return problem.score_fn(params, x, SCHEDULE.alpha(t), SCHEDULE.sigma(t))

        config = FastSBOTConfig(num_timesteps=steps, t_min=T_MIN, **fields)
        solver = FastSBOTSolver(score_model, SCHEDULE, config=config)

        def run(key, reference):
            res = solver.sample(
                shape, key=key, reference=reference if solver.config.use_ot_correction else None
            )
            return {"noise": res.noise, "samples": res.samples, "finite": res.all_finite}

        return run

    return make


# -- one compiled program per structure --------------------------------------------------
def _health(state) -> dict:
    if isinstance(state, RichardsonState):
        return {"extrapolated": state.num_extrapolated, "estimate": state.error}
    if isinstance(state, dict) and "ot_converged" in state:
        return {k: state[k] for k in ("ot_converged", "ot_epsilon", "ot_error")}
    return {}


def _program(key, method, params, reference, *, score_fn, shape, discrete):
    """Noise from ``key`` (as the facades draw it), one driver run, its health."""
    if discrete:
        noise_key, run_key = jax.random.split(key)
        noise = jax.random.normal(noise_key, shape, jnp.float32)
        ab = DISCRETE.alphas_cumprod

        def model(x, t, context=None):  # t: integer training timesteps (as floats)
            i = jnp.clip(jnp.round(t).astype(jnp.int32), 0, ab.shape[0] - 1)
            alpha, sigma = jnp.sqrt(ab[i]), jnp.sqrt(1.0 - ab[i])
            return -sigma[:, None] * score_fn(params, x, alpha, sigma)

        out = driver_sample(run_key, method, DISCRETE, model, noise)
        samples, finite = out.samples, out.all_finite & jnp.all(jnp.isfinite(out.samples))
    else:

        def model(x, t, context=None):
            return score_fn(params, x, SCHEDULE.alpha(t), SCHEDULE.sigma(t))

        out, noise, samples, finite = run_program(
            key,
            method,
            SCHEDULE,
            reference,
            shape=shape,
            dtype=jnp.float32,
            model_fn=model,
            progress=False,
            clip=False,
        )
    return {"noise": noise, "samples": samples, "finite": finite, **_health(out.state)}


_PROGRAMS: dict = {}


def _compiled(args: tuple, **statics):
    """The AOT-compiled :func:`_program` for this structure (cached) and its compile time."""
    leaves, treedef = jax.tree.flatten(args)
    sig = (tuple(sorted(statics.items())), treedef)
    sig += (tuple((np.shape(x), jnp.result_type(x)) for x in leaves),)
    if sig not in _PROGRAMS:
        start = time.perf_counter()
        program = jax.jit(functools.partial(_program, **statics)).lower(*args).compile()
        _PROGRAMS[sig] = (program, time.perf_counter() - start)
        return _PROGRAMS[sig]
    return _PROGRAMS[sig][0], 0.0


def prepare(variant: Variant, problem, params, reference, steps: int, shape):
    """``(run(key, reference) -> dict, compile seconds)`` for one sampler configuration.

    ``reference`` (``[R, d]`` exact data samples) is used only by the OT-pull samplers.
    """
    if variant.facade is not None:
        run = variant.facade(problem, params, steps, shape)
        start = time.perf_counter()
        jax.block_until_ready(run(jax.random.key(0), reference))  # compiles (and runs once)
        return run, time.perf_counter() - start
    method = variant.build(steps)
    args = (jax.random.key(0), method, params, reference if variant.reference else None)
    program, seconds = _compiled(
        args, score_fn=problem.score_fn, shape=shape, discrete=variant.discrete
    )

    def run(key, reference):
        return program(key, method, params, reference if variant.reference else None)

    return run, seconds


# -- metrics -----------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames="kind")
def metrics(samples, exact_set, truth, noise, ends, *, kind):
    """Metrics of ``samples`` ``[n, d]`` against an independent exact set ``[n, d]``.

    Gaussian: ``w2`` = W2 between the two sets' diagonal Gaussian fits, ``spread`` = mean
    per-dimension std, ``map_rms`` = RMS error to the exact PF-ODE image of ``noise`` at the
    sampler's end ``ends = (alpha_1, sigma_1, alpha_end, sigma_end)`` (omitted when
    ``noise`` is None). Mixture: energy distance, sliced W2 (128 fixed directions) and the
    total variation between nearest-mode frequencies and the true weights (``mode_tv``).
    """
    if kind == "gaussian":
        m_s, s_s, m_e, s_e = samples.mean(0), samples.std(0), exact_set.mean(0), exact_set.std(0)
        out = {
            "w2": jnp.sqrt(jnp.sum((m_s - m_e) ** 2) + jnp.sum((s_s - s_e) ** 2)),
            "spread": jnp.mean(s_s),
        }
        if noise is not None:
            want = P.gaussian_pf_map(truth, noise, *ends)
            out["map_rms"] = jnp.sqrt(jnp.mean((samples - want) ** 2))
        return out
    k = truth.weights.shape[0]
    freq = jnp.bincount(P.nearest_mode(samples, truth.means), length=k) / samples.shape[0]
    return {
        "energy": energy_distance(samples, exact_set),
        "sw2": sliced_wasserstein(jax.random.key(7), samples, exact_set, num_projections=128),
        "mode_tv": 0.5 * jnp.sum(jnp.abs(freq - truth.weights)),
    }


def seed_data(problem, n: int, seeds: int) -> list[dict]:
    """Per seed: the sampler key, the exact comparison set, the floor's set, references."""
    keys = jax.vmap(lambda s: jax.random.split(jax.random.fold_in(jax.random.key(2024), s), 4))(
        jnp.arange(seeds)
    )
    draw = jax.jit(jax.vmap(jax.vmap(lambda k: problem.sample(k, n))))(keys[:, 1:])
    return [
        {"key": keys[s, 0], "exact": draw[s, 0], "floor": draw[s, 1], "reference": draw[s, 2]}
        for s in range(seeds)
    ]


def _stats(per_seed: list[dict]) -> tuple[dict, dict]:
    keys = per_seed[0].keys()
    mean = {m: float(np.mean([p[m] for p in per_seed])) for m in keys}
    return mean, {m: float(np.std([p[m] for p in per_seed])) for m in keys}


def sampler_ends(variant: Variant, steps: int) -> tuple:
    """``(alpha, sigma)`` where a sampler starts from the noise and where it ends (float32).

    Continuous: ``t = 1`` to ``T_MIN``. DDIM (leading spacing) starts at training step
    ``T - T / N``, DPM-Solver++ (Karras sigmas) at ``T - 1``; both end at ``alpha_bar = 1``.
    """
    if not variant.discrete:
        ts = (1.0, T_MIN)
        return tuple(np.float32(f(t)) for t in ts for f in (SCHEDULE.alpha, SCHEDULE.sigma))
    method = variant.build(steps)
    first = int(method.spaced(DISCRETE)[0]) if isinstance(method, DDIM) else NUM_TRAIN - 1
    ab = float(DISCRETE.alphas_cumprod[first])
    return tuple(np.float32(v) for v in (np.sqrt(ab), np.sqrt(1.0 - ab), 1.0, 0.0))


def run_variant(problem, variant: Variant, nfe: int, score: str, data: list[dict]) -> dict:
    """Run one sampler at ``nfe`` on every seed; its metrics, times and health."""
    params = problem.exact if score == "exact" else problem.biased
    steps = max(1, round(nfe / variant.calls_per_step))
    n = data[0]["exact"].shape[0]
    run, compile_s = prepare(
        variant, problem, params, data[0]["reference"], steps, (n, problem.dim)
    )
    ends = sampler_ends(variant, steps)
    per_seed, times, health, finite = [], [], [], True
    for i, d in enumerate(data):
        for _ in range(1 if i or variant.reference else 3):  # cheap runs: best of 3 on seed 0
            start = time.perf_counter()
            out = jax.block_until_ready(run(d["key"], d["reference"]))
            times.append(time.perf_counter() - start)
        finite &= bool(out["finite"])
        m = metrics(
            out["samples"], d["exact"], problem.exact, out["noise"], ends, kind=problem.kind
        )
        per_seed.append({k: float(v) for k, v in m.items()})
        health.append(_summarise_health(out, steps, n))
    mean, std = _stats(per_seed)
    return {
        "problem": problem.name,
        "score": score,
        "variant": variant.name,
        "group": variant.group,
        "plain": variant.plain,
        "nfe_target": nfe,
        "nfe": steps * variant.calls_per_step,
        "steps": steps,
        "per_seed": per_seed,
        "mean": mean,
        "std": std,
        "times_s": times,
        "time_s": float(np.min(times)),
        "compile_s": compile_s,
        "finite": finite,
        "health": _stats(health)[0] if health[0] else {},
    }


def _summarise_health(out: dict, steps: int, n: int) -> dict:
    if "ot_converged" in out:
        return {
            "ot_converged_frac": float(np.mean(out["ot_converged"])),
            "ot_epsilon_mean": float(np.mean(out["ot_epsilon"])),
        }
    if "extrapolated" in out:
        return {"extrapolated_frac": float(np.sum(out["extrapolated"])) / (steps * n)}
    return {}


def compare_samplers(problem, sampler_list, sizes: Sizes, n: int, *, log=print):
    """Every sampler at every NFE with the exact and the biased score: ``(records, floors)``.

    The floors are each metric between two independent exact sets of ``n`` points.
    """
    data = seed_data(problem, n, sizes.seeds)
    floors = [
        metrics(d["floor"], d["exact"], problem.exact, None, None, kind=problem.kind) for d in data
    ]
    floor_mean, floor_std = _stats([{k: float(v) for k, v in f.items()} for f in floors])
    records = []
    for score in ("exact", "biased"):
        for v in sampler_list:
            for nfe in sizes.nfe + (sizes.plain_nfe if v.curve else ()):
                rec = run_variant(problem, v, nfe, score, data)
                records.append(rec)
                log(
                    f"  {problem.name} {score:6s} {v.name:45s} NFE {rec['nfe']:3d} "
                    f"{rec['time_s'] * 1e3:8.1f} ms (compile {rec['compile_s']:.1f} s) "
                    + " ".join(f"{k} {x:.3g}" for k, x in rec["mean"].items())
                )
    return records, {"mean": floor_mean, "std": floor_std, "n": n}


# -- verdicts ----------------------------------------------------------------------------
def _verdict(plain, plain_std, corr, corr_std, floor, seeds):
    """``better`` / ``worse`` when the gap exceeds the MC floor plus 2 standard errors."""
    if not np.isfinite(corr):
        return "fails"
    margin = floor + 2.0 * np.sqrt((plain_std**2 + corr_std**2) / seeds)
    return "better" if plain - corr > margin else "worse" if corr - plain > margin else "same"


def equal_time(curve: list[dict], seconds: float, metric: str):
    """The plain solver's NFE costing ``seconds`` (log-log interpolation) and its metric there."""
    nfes = np.log([c["nfe"] for c in curve])
    times = np.log(np.maximum.accumulate([c["time_s"] for c in curve]))
    values = np.array([c["mean"][metric] for c in curve])
    at = float(np.interp(np.log(seconds), times, nfes))  # clamps to the measured range
    value = np.exp(np.interp(at, nfes, np.log(np.maximum(values, 1e-12))))
    return float(np.exp(at)), float(value), bool(np.log(seconds) > times[-1])


def judge(records: list[dict], floors: dict, seeds: int) -> list[dict]:
    """Each corrected run against its plain solver, at equal NFE and at equal wall-clock."""
    out = []
    for r in (r for r in records if r["plain"]):
        same = [q for q in records if (q["problem"], q["score"]) == (r["problem"], r["score"])]
        curve = sorted((q for q in same if q["variant"] == r["plain"]), key=lambda q: q["nfe"])
        plain = next(q for q in curve if q["nfe_target"] == r["nfe_target"])
        kind = "gaussian" if "w2" in r["mean"] else "mixture"
        row = {k: r[k] for k in ("problem", "score", "variant", "plain", "nfe_target", "nfe")}
        for m in ERROR_METRICS[kind]:
            floor = floors[r["problem"]]["mean"].get(m, 0.0)
            eq_nfe, eq_value, beyond = equal_time(curve, r["time_s"], m)
            row[m] = {
                "equal_nfe": _verdict(
                    plain["mean"][m], plain["std"][m], r["mean"][m], r["std"][m], floor, seeds
                ),
                "equal_time": _verdict(
                    eq_value, plain["std"][m], r["mean"][m], r["std"][m], floor, seeds
                ),
                "plain_nfe_same_time": eq_nfe,
                "beyond_curve": beyond,
                "plain_at_same_time": eq_value,
                "plain": plain["mean"][m],
                "corrected": r["mean"][m],
            }
        out.append(row)
    return out


# -- entropic plans ----------------------------------------------------------------------
@jax.jit
def _plan_cross_covariance(x, y, epsilon):
    """Cross-covariance ``[d, d]`` of jaxdiff's Sinkhorn plan, ``sum_ij P_ij x_i y_j^T`` centred."""
    res = sinkhorn(x, y, epsilon=epsilon, threshold=1e-5, max_iterations=20000)
    mapped = res.barycentric_map()  # T(x_i) = sum_j P_ij y_j / a_i
    xc = x - jnp.mean(x, 0)
    return xc.T @ mapped / x.shape[0], res.converged, res.n_iters


def _pot_cross_covariance(x, y, epsilon):
    import ot

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    a = np.full(len(x), 1.0 / len(x))
    plan = ot.sinkhorn(a, a, ot.dist(x, y), epsilon, stopThr=1e-9, numItermax=100000)
    return (x - x.mean(0)).T @ plan @ y


def entropic_plans(sizes: Sizes, *, log=print) -> list[dict]:
    """Sinkhorn's plan between Gaussian samples against the closed form, beside the MC floor."""
    cov0 = np.array([[1.0, 0.6], [0.6, 1.5]])
    cov1 = np.array([[2.0, -0.5], [-0.5, 0.8]])
    cases = [
        ("entropic-2d", np.zeros(2), cov0, np.array([1.0, -1.0]), cov1, eps) for eps in (0.5, 2.0)
    ]
    for d in sizes.sb_dims:
        m0, s0, m1, s1, eps, _ = P.dsbm_bridge(d)
        cases.append((f"dsbm-sb-{d}d", m0, s0, m1, s1, eps))
    out = []
    for name, m0, s0, m1, s1, eps in cases:
        cross = P.entropic_cross_covariance(s0, s1, eps)
        for n in sizes.plan_n:
            rows = []
            for s in range(sizes.seeds):
                k = jax.random.split(jax.random.fold_in(jax.random.key(99), s), 3)
                x = jax.random.multivariate_normal(k[0], jnp.asarray(m0), jnp.asarray(s0), (n,))
                y = jax.random.multivariate_normal(k[1], jnp.asarray(m1), jnp.asarray(s1), (n,))
                c_hat, ok, iters = _plan_cross_covariance(x, y, jnp.float32(eps))
                c_hat = np.asarray(c_hat, np.float64)
                px, py = P.gaussian_coupling_sample(k[2], m0, s0, m1, s1, cross, n)
                px, py = np.asarray(px, np.float64), np.asarray(py, np.float64)
                c_mc = (px - px.mean(0)).T @ (py - py.mean(0)) / n
                row = {
                    "error": np.linalg.norm(c_hat - cross),
                    "floor": np.linalg.norm(c_mc - cross),
                    "diag_mean": np.mean(np.diag(c_hat)),
                    "converged": bool(ok),
                    "iters": int(iters),
                    "diag_error": abs(np.mean(np.diag(c_hat) - np.diag(cross))),
                    "diag_floor": abs(np.mean(np.diag(c_mc) - np.diag(cross))),
                }
                if n <= 1024:
                    row["vs_pot"] = np.linalg.norm(c_hat - _pot_cross_covariance(x, y, eps))
                rows.append(row)
            rec = {
                "case": name,
                "epsilon": eps,
                "n": n,
                "closed_form": cross.tolist(),
                "per_seed": rows,
                "mean": {k: float(np.mean([r[k] for r in rows])) for k in rows[0]},
            }
            log(
                f"  {name} eps {eps} n {n}: "
                + " ".join(f"{k} {v:.3g}" for k, v in rec["mean"].items())
            )
            out.append(rec)
    return out


def equivalence_checks(*, log=print) -> dict:
    """The facade runs what the driver runs; Richardson off is Euler with twice the steps."""
    prob, n = P.ring_problem(), QUICK.n["ring"]  # the quick run's programs are reused
    d = seed_data(prob, n, 1)[0]
    heun = next(v for v in variants(QUICK) if v.name == PF_HEUN)
    facade = Variant("FastSB-OT facade", "fastsb", 2, facade=fastsb_facade(quality="draft"))
    rich_off = Variant(
        "Richardson off",
        "atlas",
        2,
        lambda k: RichardsonFlow(
            num_steps=k, extrapolate=False, prediction_type="score", t_min=T_MIN
        ),
    )
    euler = next(v for v in variants(QUICK) if v.name == PF_EULER)
    out = {}
    for label, (a, ka), (b, kb) in (
        ("facade_vs_driver", (facade, 10), (heun, 10)),
        ("richardson_off_vs_euler_2n", (rich_off, 10), (euler, 20)),
    ):
        xa = prepare(a, prob, prob.exact, None, ka, (n, 2))[0](d["key"], None)["samples"]
        xb = prepare(b, prob, prob.exact, None, kb, (n, 2))[0](d["key"], None)["samples"]
        out[label + "_max_abs"] = float(jnp.max(jnp.abs(xa - xb)))
    log("  " + ", ".join(f"{k} {v:.2g}" for k, v in out.items()))
    return out


# -- tables ------------------------------------------------------------------------------
def _fmt(x) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def sampler_tables(records: list, floors: dict, verdicts: list) -> str:
    """Per problem and score: one table per metric (samplers x NFE), then the times."""
    parts = []
    eq = {(v["problem"], v["score"], v["variant"], v["nfe_target"]): v for v in verdicts}
    for prob in dict.fromkeys(r["problem"] for r in records):
        for score in ("exact", "biased"):
            recs = [r for r in records if (r["problem"], r["score"]) == (prob, score)]
            nfes = sorted({r["nfe_target"] for r in recs})
            names = list(dict.fromkeys(r["variant"] for r in recs))
            by = {(r["variant"], r["nfe_target"]): r for r in recs}
            kind = "gaussian" if "w2" in recs[0]["mean"] else "mixture"
            head = ["sampler", "calls/step"] + [f"NFE {k}" for k in nfes]
            for m in ERROR_METRICS[kind] + (("spread",) if kind == "gaussian" else ()):
                rows = [
                    [name, by[(name, nfes[0])]["nfe"] // by[(name, nfes[0])]["steps"]]
                    + [_fmt(by[(name, k)]["mean"][m]) if (name, k) in by else "" for k in nfes]
                    for name in names
                ]
                floor = floors[prob]["mean"].get(m)
                label = "exact set's spread" if m == "spread" else "MC floor (exact vs exact)"
                rows.append([label, ""] + [_fmt(floor) if floor is not None else "0"] * len(nfes))
                parts.append(f"#### {prob}, {score} score: {m}\n\n" + _table(head, rows))
            rows = []
            for name in names:
                cells = []
                for k in nfes:
                    r, v = by.get((name, k)), eq.get((prob, score, name, k))
                    same = (
                        ""
                        if v is None
                        else (
                            f" (= {v[ERROR_METRICS[kind][0]]['plain_nfe_same_time']:.0f}"
                            f"{'+' if v[ERROR_METRICS[kind][0]]['beyond_curve'] else ''})"
                        )
                    )
                    cells.append("" if r is None else f"{r['time_s'] * 1e3:.1f}{same}")
                rows.append([name, ""] + cells)
            parts.append(
                f"#### {prob}, {score} score: time per run in ms (= the plain "
                "solver's NFE of equal time)\n\n" + _table(head, rows)
            )
    return "\n\n".join(parts)


def verdict_table(verdicts: list) -> str:
    """Per corrected sampler and problem/score: better / same / worse counts over the NFEs."""
    cols = list(dict.fromkeys((v["problem"], v["score"]) for v in verdicts))
    rows = []
    for name in dict.fromkeys(v["variant"] for v in verdicts):
        cells = []
        for prob, score in cols:
            vs = [
                v
                for v in verdicts
                if (v["variant"], v["problem"], v["score"]) == (name, prob, score)
            ]
            metric = next(m for m in ("w2", "energy") if m in vs[0])
            count = {
                mode: [sum(v[metric][mode] == w for v in vs) for w in ("better", "same", "worse")]
                for mode in ("equal_nfe", "equal_time")
            }
            cells.append(" / ".join("{}+ {}= {}-".format(*count[m]) for m in count))
        rows.append([name, next(v["plain"] for v in verdicts if v["variant"] == name)] + cells)
    head = ["corrected sampler", "plain"] + [f"{p} ({s})" for p, s in cols]
    return _table(head, rows)


def plan_table(plans: list) -> str:
    """Sinkhorn's cross-covariance error against the closed form and the MC floor."""
    rows = [
        [
            p["case"],
            p["epsilon"],
            p["n"],
            _fmt(p["mean"]["error"]),
            _fmt(p["mean"]["floor"]),
            _fmt(p["mean"]["diag_mean"]),
            _fmt(float(np.mean(np.diag(p["closed_form"])))),
            _fmt(p["mean"]["diag_error"]),
            _fmt(p["mean"]["diag_floor"]),
            _fmt(p["mean"].get("vs_pot")),
            f"{p['mean']['converged']:.0%}",
        ]
        for p in plans
    ]
    head = [
        "case",
        "epsilon",
        "n",
        "‖Ĉ − C‖_F",
        "MC floor",
        "mean diag Ĉ",
        "closed form",
        "|diag err|",
        "diag floor",
        "‖Ĉ − Ĉ_POT‖_F",
        "converged",
    ]
    return _table(head, rows)


def main(argv=None) -> dict:
    """Run everything, write ``results.json`` and ``tables.md``, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU, ~3 minutes)")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=PARTS, help="problems (and plans) to run"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    out_dir = args.out or Path("outputs") / ("schrodinger_quick" if args.quick else "schrodinger")
    start = time.perf_counter()
    problems = {
        "gaussian": lambda: P.gaussian_problem(16),
        "ring": P.ring_problem,
        "mixture": lambda: P.random_mixture_problem(jax.random.key(64)),
    }
    roles = {role: make() for role, make in problems.items() if role in args.parts}
    sampler_list = variants(sizes)
    records, floors = [], {}
    for role, prob in roles.items():
        recs, floors[prob.name] = compare_samplers(prob, sampler_list, sizes, sizes.n[role])
        records += recs
    verdicts = judge(records, floors, sizes.seeds)
    plans = entropic_plans(sizes) if "plans" in args.parts else []
    checks = equivalence_checks() if "ring" in args.parts else {}
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]) if argv is None else f"main({argv})",
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "sizes": dataclasses.asdict(sizes),
        "problems": {p.name: p.bias for p in roles.values()},
        "seconds": time.perf_counter() - start,
    }
    results = {
        "meta": meta,
        "floors": floors,
        "records": records,
        "verdicts": verdicts,
        "plans": plans,
        "checks": checks,
    }
    tables = "\n\n".join(
        [
            f"Run: {meta['date']}, {meta['device']} ({meta['backend']}), jax {meta['jax']}, "
            f"`{meta['command']}`, {meta['seconds']:.0f} s.",
            "### Corrected samplers against their plain solver (primary metric: W2 for the "
            "Gaussian, energy distance for the mixtures; counts over the NFEs: better+ same= "
            "worse-, at equal NFE / at equal wall-clock)\n\n" + verdict_table(verdicts),
            sampler_tables(records, floors, verdicts),
            "### Entropic plans: cross-covariance of jaxdiff's Sinkhorn plan\n\n"
            + plan_table(plans),
            "Equivalence checks: " + ", ".join(f"{k} = {v:.2g}" for k, v in checks.items()),
        ]
    )
    meta["seconds"] = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    (out_dir / "tables.md").write_text(tables + "\n")
    print(tables)
    return results


if __name__ == "__main__":
    main()
