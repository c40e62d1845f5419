"""Schrödinger-bridge samplers at <= 10 model calls on the digits UNet (issue 14, section 4).

One trained model (``jaxdiff train``'s, ``configs/train``; trained here by
:func:`jaxdiff.train.fit` with ``jaxdiff train``'s keys and run directory, or restored from
``--run-dir``), one set of initial noises per seed, many samplers: DDIM 50 on the discrete
training schedule (the reference, as in ``experiments/digits_ddpm``) against FastSB-OT
and ATLAS at <= 10 model calls (OT correction, kinetic-Langevin corrector, Richardson
step doubling on and off) and plain DDIM / DPM-Solver++ at 10 calls, all scored by
:func:`jaxdiff.cli.train.digit_quality`. ``README.md`` (section "Digits") reports the results.

Time mapping (FastSB-OT calls ``score_model(x, t)``, continuous ``t`` in ``[t_min, 1]``,
1 = noise). The discrete cosine schedule has ``alphas_cumprod[i] = abar((i + 1) / T)``
with ``abar(u) = cos^2(((u + s) / (1 + s)) pi / 2) / cos^2((s / (1 + s)) pi / 2)``
(Nichol & Dhariwal 2021, eq. 17; its beta clip at 0.999 only touches ``i = T - 1``).
jaxdiff's continuous cosine schedule (:class:`jaxdiff.schedules.continuous.
VPCosineSchedule`) is the same ``abar`` at ``u = t u_max`` (``u_max ~ 0.998``). So the UNet
is fed the (fractional) training index ``i(t) = t u_max T - 1``, at which the two
schedules agree exactly; :func:`mapping_check` measures the agreement at every integer
index. ``t = 1`` is index ~997, ``t_min = 1e-3`` index ~-0.002 (~0).

``python experiments/schrodinger/digits.py [--quick] [--out DIR] [--run-dir DIR]`` writes
``digits_metrics.json`` and ``digits_samples.png`` (one row per sampler, the same latents
in each column) to ``--out`` and prints the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.cli.train import compose, digit_quality, prepare
from jaxdiff.data.digits import digits_to_pixels, load_digits
from jaxdiff.nets import UNet, bind
from jaxdiff.samplers.config import SamplingConfig
from jaxdiff.samplers.manager import AdvancedSamplingManager
from jaxdiff.schrodinger import (
    AdvancedHierarchicalDiffusionSampler,
    FastSBOTConfig,
    FastSBOTSolver,
    PersistentKernelCache,
    SamplerConfig,
    make_schedule,
)
from jaxdiff.train import CheckpointManager, array_batches, fit

REFERENCE = "ddim50"


@dataclasses.dataclass(frozen=True)
class Spec:
    """One sampler of the comparison.

    Attributes:
      name: its key in ``digits_metrics.json``; label: its row label.
      kind: ``"discrete"`` (:class:`~jaxdiff.samplers.manager.AdvancedSamplingManager` on
        the training schedule; ``fields`` are SamplingConfig fields plus
        ``timestep_spacing``), ``"fastsb"`` (FastSBOTConfig fields over the ``draft``
        preset) or ``"atlas"`` (ATLAS SamplerConfig fields; 5 uniform steps by default).
      indices: continuous samplers only: the step grid as training indices ``i`` (times
        ``(i + 1) / (u_max T)``, then a final 0 = ``t_min``); None: the default grid.
    """

    name: str
    label: str
    kind: str
    fields: dict
    indices: tuple[int, ...] | None = None


def _ddim(n, spacing="leading", method="ddim"):
    return {"method": method, "num_inference_steps": n, "timestep_spacing": spacing}


def _sb(n, base="heun", **fields):
    return {"num_timesteps": n, "base_step": base, **fields}


OT, OT_SHARP = {"use_ot_correction": True}, {"epsilon": 0.01, "ot_weight": 0.5}
LEADING_10, FROM_900 = tuple(range(900, -1, -100)), (900, 720, 540, 360, 180)
NO_HIERARCHY = {"hierarchical_sampling": False}
SPECS = tuple(
    Spec(*row)
    for row in (
        ("ddim50", "DDIM 50 (reference)", "discrete", _ddim(50)),
        ("ddim10", "DDIM 10 (leading)", "discrete", _ddim(10)),
        ("ddim10_trailing", "DDIM 10 (trailing)", "discrete", _ddim(10, "trailing")),
        ("dpmpp10", "DPM++(2M) 10 (trailing)", "discrete", _ddim(10, "trailing", "dpm_solver")),
        ("sb_ddim10_leading", "FastSB DDIM 10 (leading)", "fastsb", _sb(10, "ddim"), LEADING_10),
        ("sb_heun5", "FastSB Heun 5", "fastsb", _sb(5)),
        ("sb_heun5_from900", "FastSB Heun 5 (from i=900)", "fastsb", _sb(5), FROM_900),
        ("sb_heun5_ot", "FastSB Heun 5 + OT", "fastsb", _sb(5, **OT)),
        ("sb_heun5_ot_sharp", "FastSB Heun 5 + OT sharp", "fastsb", _sb(5, **OT, **OT_SHARP)),
        ("sb_heun3_lv1", "FastSB Heun 3 + LV 1", "fastsb", _sb(3, langevin_steps=1)),
        ("sb_euler10", "FastSB Euler 10", "fastsb", _sb(10, "euler")),
        ("sb_euler5_lv1", "FastSB Euler 5 + LV 1", "fastsb", _sb(5, "euler", langevin_steps=1)),
        ("atlas_rich5", "ATLAS Richardson 5 (hierarchical)", "atlas", {}),
        ("atlas_heun5", "ATLAS Heun 5 (hierarchical off)", "atlas", NO_HIERARCHY),
    )
)  # fmt: skip
#: (variant, its plain counterpart at >= its NFE): the paired comparisons of the reading.
PAIRS = (
    ("sb_heun5_ot", "sb_heun5"),
    ("sb_heun5_ot_sharp", "sb_heun5"),
    ("sb_heun3_lv1", "sb_heun5"),
    ("sb_euler5_lv1", "sb_euler10"),
    ("atlas_rich5", "sb_heun5"),
    ("sb_heun5", "ddim10_trailing"),
    ("sb_heun5_from900", "ddim10"),
)
#: the same DDIM grid run discretely and through the continuous-time mapping: their
#: samples must agree up to the last step's t_min (an end-to-end check of the mapping)
MAPPING_PAIR = ("sb_ddim10_leading", "ddim10")
METRICS = (
    ("classifier_confidence_generated", "classifier confidence"),
    ("class_entropy_generated", "class entropy (max 2.303)"),
    ("nn_distance_generated", "NN distance to train"),
    ("l2_to_reference", "L2 to DDIM 50"),
)


@dataclasses.dataclass(frozen=True, eq=False)
class ContinuousTimeUNet:
    """The digits UNet as FastSB-OT's noise predictor ``eps(x, t)`` on continuous time.

    ``x`` ``[B, 8, 8, 1]``, ``t`` ``[B]`` in ``[t_min, 1]``; the UNet gets the training
    index ``t * index_scale - 1`` with ``index_scale = u_max T`` (see the module).
    Hashed by identity, as FastSB-OT needs.
    """

    model: object
    index_scale: float
    predicts_noise: ClassVar[bool] = True

    def __call__(self, x, t):
        """``eps`` ``[B, 8, 8, 1]`` at the fractional training index of ``t``."""
        return self.model(x, t * self.index_scale - 1.0)


def mapping_check(alphas_cumprod, schedule, num_train_timesteps: int) -> dict:
    """Agreement of the continuous ``alpha(t)^2`` with ``alphas_cumprod[i]`` at ``i(t) = i``.

    For every integer index ``i`` with ``t_i = (i + 1) / (u_max T) <= 1``, the relative
    error ``|alpha(t_i)^2 / alphas_cumprod[i] - 1|`` (float32 schedule arithmetic).
    """
    ab = np.asarray(alphas_cumprod, np.float64)
    scale = float(schedule.u_max) * num_train_timesteps
    idx = np.arange(num_train_timesteps)
    t = (idx + 1) / scale
    idx, t = idx[t <= 1], t[t <= 1]
    a2 = np.asarray(schedule.alpha(jnp.asarray(t, jnp.float32)), np.float64) ** 2
    rel = np.abs(a2 / ab[idx] - 1)
    return {
        "index_scale_u_max_T": scale, "indices_checked": int(idx.size),
        "max_rel_error_alpha_sq": float(rel.max()),
        "median_rel_error_alpha_sq": float(np.median(rel)),
        "index_at_t_1": scale - 1.0, "index_at_t_min": 1e-3 * scale - 1.0,
    }  # fmt: skip


def parse_args(argv=None):
    """The command line (see the module)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short training run (CPU smoke run)")
    p.add_argument("--out", default="outputs/schrodinger_digits", help="output folder")
    p.add_argument("--run-dir", default=None, help="a finished `jaxdiff train` run directory")
    p.add_argument("--seeds", type=int, default=None, help="sampling seeds (3; quick 2)")
    p.add_argument("--num-samples", type=int, default=None, help="per sampler, seed (400/200)")
    return p.parse_args(argv)


def train_or_restore(args, say):
    """Train (or restore) the EMA UNet; returns ``(model, job, cfg, steps)``."""
    # quick: 400 steps of batch 64 with a short EMA (0.999 would keep ~2/3 of the init)
    quick = ["training.num_steps=400", "training.batch_size=64", "training.ema_decay=0.99"]
    overrides = quick + ["training.warmup_steps=50"] if args.quick else []
    root = Path(args.out) / ("run_quick" if args.quick else "run_full")
    if args.run_dir is not None:
        root = Path(args.run_dir).parent
        if not (Path(args.run_dir) / "checkpoints").is_dir():
            raise ValueError(f"--run-dir={args.run_dir} has no checkpoints/ folder")
        with CheckpointManager(args.run_dir) as checkpoints:
            latest = checkpoints.latest_step()
        if latest is None:
            raise ValueError(f"--run-dir={args.run_dir} holds no committed checkpoint")
        overrides = [f"training.num_steps={latest}"]  # restore only: fit finds it finished
    cfg = compose([f"output_dir={root}", f"sampler.num_samples={args.num_samples}", *overrides])
    job = prepare(cfg)
    run_dir = job["run_dir"]  # <output_dir>/<hash of model, data, objective>
    if args.run_dir is not None and run_dir.resolve() != Path(args.run_dir).resolve():
        raise ValueError(
            f"--run-dir={args.run_dir} is not this configuration's run (expected {run_dir}): "
            "its model, data or objective differ from configs/train"
        )
    training = job["training"]
    train_x, _ = _split(cfg, "train")
    module = UNet(job["model_cfg"])
    # the keys and calls of jaxdiff.cli.train.train_and_sample, so the runs are interchangeable
    k_init, k_train, _, _ = jax.random.split(jax.random.key(training.seed), 4)
    params = jax.jit(module.init)(k_init, jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32))
    batches, per_epoch = array_batches({"x": train_x}, training.batch_size, seed=training.seed)
    start = time.perf_counter()
    fitted = fit(
        k_train, params["params"], bind(module).apply_fn, job["objective"], batches, training,
        run_dir=run_dir, steps_per_epoch=per_epoch, log=say,
    )  # fmt: skip
    say(f"model at step {int(fitted.state.step)} ({time.perf_counter() - start:.1f} s)")
    return bind(module, fitted.state.ema_params), job, cfg, int(fitted.state.step)


def _split(cfg, split):
    data = cfg["data"]
    return load_digits(split, test_fraction=data["test_fraction"], seed=data["split_seed"])


def make_runner(spec: Spec, model, job, schedule, reference, shape):
    """``run(key, latents) -> (samples, seconds, nfe)`` for one sampler (compiles lazily)."""
    if spec.kind == "discrete":
        fields = dict(spec.fields)
        sched_cfg = dataclasses.replace(
            job["sched_cfg"], timestep_spacing=fields.pop("timestep_spacing")
        )
        pred = job["objective"].prediction_type
        manager = AdvancedSamplingManager(sched_cfg, SamplingConfig(prediction_type=pred, **fields))

        def run(key, latents):
            res = manager.sample(model, latents, key=jax.random.fold_in(key, 1))
            return res.samples, res.processing_time, res.num_function_evals

        return run
    scale = float(schedule.u_max) * job["sched_cfg"].num_train_timesteps
    unet = ContinuousTimeUNet(model, scale)
    grid = None if spec.indices is None else [(i + 1) / scale for i in spec.indices] + [0.0]
    if spec.kind == "fastsb":
        config = FastSBOTConfig(quality="draft", profile=True, **spec.fields)
        solver = FastSBOTSolver(unet, schedule, config)
        ref = reference if config.use_ot_correction else None
        sample = functools.partial(solver.sample, shape, timesteps=grid, reference=ref)
    else:  # atlas, without reference samples (no OT), no extra denoising call
        config = SamplerConfig(profile=True, denoise_final=False, **spec.fields)
        sampler = AdvancedHierarchicalDiffusionSampler(unet, schedule, sampler_config=config)
        sample = functools.partial(sampler.sample, shape, grid or np.linspace(1, 0, 6).tolist())

    def run(key, latents):
        res = sample(key=key)
        if not np.array_equal(np.asarray(res.noise), np.asarray(latents)):
            raise RuntimeError(f"{spec.name} did not start from the shared latents")
        if not bool(res.all_finite):
            raise RuntimeError(f"{spec.name} produced non-finite samples")
        return res.samples, res.profile.run_seconds, res.nfe

    return run


def mean_l2(a, b) -> float:
    """Mean per-image L2 distance of ``[N, 8, 8, 1]`` images, in pixel units (0..16)."""
    return float(np.linalg.norm(digits_to_pixels(a) - digits_to_pixels(b), axis=1).mean())


def _stats(values) -> dict:
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1))}


def summarise(runs: dict) -> dict:
    """Per sampler: NFE, and mean and std over seeds of each metric and of the seconds."""
    keys = [m for m, _ in METRICS] + ["sampling_seconds"]
    return {
        name: {"nfe": rs[0]["nfe"], **{k: _stats([r[k] for r in rs]) for k in keys}}
        for name, rs in runs.items()
    }


def paired(runs: dict) -> dict:
    """For each pair of :data:`PAIRS`: per-seed differences (same latents), mean and std."""
    return {
        f"{a} - {b}": {
            k: _stats([ra[k] - rb[k] for ra, rb in zip(runs[a], runs[b], strict=True)])
            for k, _ in METRICS[:3]
        }
        for a, b in PAIRS
    }


def markdown(head: list, rows: list) -> str:
    """A markdown table of string cells."""
    lines = [head, ["---"] * len(head), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def tables(summary: dict, pairs: dict, floor: dict, labels: dict) -> str:
    """The results (mean +- std over seeds) and the paired differences, as markdown."""
    conf, nn = floor["classifier_confidence_heldout_real"], floor["nn_distance_heldout_real"]
    rows = [
        ["held-out real digits", "—", "—", f"{conf:.3f}", "—", f"{nn:.2f}", "—"],
        ["uniform noise", "—", "—", "—", "—", f"{floor['nn_distance_noise']:.2f}", "—"],
    ]
    for name, row in summary.items():
        cells = [labels[name], str(row["nfe"]), f"{row['sampling_seconds']['mean']:.3f}"]
        for (key, _), nd in zip(METRICS, (3, 3, 2, 2), strict=True):
            cells.append(f"{row[key]['mean']:.{nd}f} ± {row[key]['std']:.{nd}f}")
        rows.append(cells)
    diffs = [
        [name] + [f"{d[k]['mean']:+.3f} ± {d[k]['std']:.3f}" for k, _ in METRICS[:3]]
        for name, d in pairs.items()
    ]
    labels3 = [label for _, label in METRICS]
    return (
        markdown(["sampler", "NFE", "sampling s", *labels3], rows)
        + "\n\n"
        + markdown(["difference (same latents)", *labels3[:3]], diffs)
    )


def save_grid(path: Path, samples: dict, labels: dict, columns: int = 16) -> None:
    """``digits_samples.png``: one row per sampler, the same latents in each column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(samples), 1, figsize=(columns * 0.42 + 2.4, len(samples) * 0.45))
    for ax, (name, x) in zip(axes, samples.items(), strict=True):
        cells = np.pad(
            np.clip(x[:columns, :, :, 0], -1, 1), ((0, 0), (1, 1), (1, 1)), constant_values=-1
        )
        ax.imshow(cells.transpose(1, 0, 2).reshape(10, -1), cmap="gray_r", vmin=-1, vmax=1)
        ax.set(xticks=[], yticks=[])
        ax.set_ylabel(labels[name], rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(left=0.26, right=0.99, top=0.99, bottom=0.01, hspace=0.08)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> dict:
    """Train or restore, sample with every :data:`SPECS` entry per seed, score, write."""
    args = parse_args(argv)
    args.num_samples = args.num_samples or (200 if args.quick else 400)
    args.seeds = args.seeds or (2 if args.quick else 3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # identical programs (same HLO: e.g. the two OT settings, or a rerun) compile once
    PersistentKernelCache().enable(out / "jax_cache")
    say = lambda message: print(message, flush=True)  # noqa: E731
    model, job, cfg, steps = train_or_restore(args, say)
    train_x, train_y = _split(cfg, "train")
    test_x, test_y = _split(cfg, "test")
    schedule = make_schedule("cosine")
    T = job["sched_cfg"].num_train_timesteps
    check = mapping_check(job["manager"].scheduler.alphas_cumprod, schedule, T)
    say(f"time mapping: {json.dumps(check)}")
    shape = (args.num_samples, 8, 8, 1)
    reference = jnp.asarray(train_x)  # the training digits in the model's [-1, 1] scaling
    runners = {s.name: make_runner(s, model, job, schedule, reference, shape) for s in SPECS}
    labels = {s.name: s.label for s in SPECS}
    runs = {name: [] for name in runners}
    grid, floor, mapping_l2 = {}, None, []
    for seed in range(args.seeds):
        key = jax.random.key(1000 + seed)
        latents = jax.random.normal(jax.random.split(key)[0], shape, jnp.float32)
        outputs = {}
        for name, run in runners.items():
            start = time.perf_counter()
            samples, seconds, nfe = run(key, latents)
            outputs[name] = np.clip(np.asarray(samples, np.float32), -1, 1)
            wall = time.perf_counter() - start
            say(f"seed {seed} {name}: {nfe} calls, {seconds:.3f} s ({wall:.1f} s with compiling)")
            metrics = digit_quality(outputs[name], train_x, train_y, test_x, test_y)
            metrics.update(nfe=int(nfe), sampling_seconds=float(seconds))
            runs[name].append(metrics)
        for name in runners:
            runs[name][-1]["l2_to_reference"] = mean_l2(outputs[name], outputs[REFERENCE])
        mapping_l2.append(mean_l2(*(outputs[name] for name in MAPPING_PAIR)))
        if seed == 0:
            grid = outputs
            floor = {k: v for k, v in runs[REFERENCE][0].items() if "heldout" in k or "noise" in k}
    check[f"l2_{MAPPING_PAIR[0]}_vs_{MAPPING_PAIR[1]}_per_seed"] = mapping_l2
    say(f"mapping end to end: mean L2 {MAPPING_PAIR[0]} vs {MAPPING_PAIR[1]} {mapping_l2}")
    summary, pairs = summarise(runs), paired(runs)
    report = dict(
        quick=args.quick, training_steps=steps, num_samples=args.num_samples, seeds=args.seeds,
        device=jax.devices()[0].device_kind, time_mapping=check, floor=floor, summary=summary,
        paired_differences=pairs, labels=labels, runs=runs,
    )  # fmt: skip
    (out / "digits_metrics.json").write_text(json.dumps(report, indent=2))
    save_grid(out / "digits_samples.png", grid, labels)
    print(tables(summary, pairs, floor, labels))
    return report


if __name__ == "__main__":
    main()
