"""Schrödinger-bridge samplers: jaxdiff's FastSB-OT presets vs DPM-Solver++ and the originals.

Issue 14 section 6. One run, one GPU, one random score network (a seeded diffusers
``UNet2DModel``, converted to jaxdiff's UNet with :func:`jaxdiff.interop.unet_from_diffusers`,
used as a noise predictor by every sampler). Three tables:

1. **speed** (ms per sample, median of ``--repeats`` after a compile/warm-up call,
   ``block_until_ready`` / ``torch.cuda.synchronize``) for each FastSB-OT preset at each
   shape (``64x64x3`` images, ``4x128x128`` latents): jaxdiff ``FastSBOTSolver`` (VP-linear
   schedule, continuous ``t`` times 1000 into the UNet) against DPM-Solver++ (2nd order,
   ``jaxdiff.samplers.DPMSolver`` on the matching discrete linear schedule) at the same
   number of model calls (NFE), their ratio (jaxdiff / DPM-Solver++), the compiled
   program's bytes and the device's peak; beside them the originals at the same NFE (one
   model call per step): FastSB-OT's ``FastSBOTSolver.sample`` and ATLAS's
   ``AdvancedHierarchicalDiffusionSampler.sample`` with their default configs where those
   run, else the first setting of ``schrodinger_peer.FASTSB_ATTEMPTS`` /
   ``ATLAS_ATTEMPTS`` that does (named in the cell; every failure is listed below the
   tables), and jaxdiff's ATLAS facade where ``jaxdiff.schrodinger`` has it (its default
   Richardson step doubling at ``NFE / 2`` steps, plus its final denoising call);
2. **ot**: the per-step OT correction's share of a step, ``(t_on - t_off) / t_on``, at
   ``n = 4096`` particles in ``d = 64`` with an exact Gaussian score (so the step without
   OT costs almost nothing: the share is an upper bound for any real model) and 4096
   reference samples, for the solver the memory budget picks (dense at 100 MiB, the
   online geometry, sliced at 16 MiB), with the program's bytes against
   ``memory_limit_ot_mb``;
3. **error**: the std of the samples for data ``N(0, c^2 I)`` with the exact score, where
   the specs measured the originals (FastSB-OT: c = 0.3, 8x8x3, cosine, 50 steps, spec
   1.215 unclamped; ATLAS: c = 0.5, d = 16, VP-linear, 200 steps, spec 0.027 without and
   0.020 with its OT), beside jaxdiff on the same problem.

The originals (TSOR666/OT-diffusion-toolkit, not part of jaxdiff) are read from ``--peer``
(default ``.orig``); rows that fail record the error. Memory: ``jax_peak_mib`` is the JAX
allocator's peak since the process started (rows run in the order ot, error, speed; None
on CPU), ``*program_mib*`` XLA's arguments + outputs + temporaries of that run's program,
and ``*_orig_peak_mib`` ``torch.cuda.max_memory_allocated`` over an original's timed calls.
``*_batch_spread`` (mean per-coordinate std over the batch) shows a batch collapsed onto
one sample (ATLAS's self-transport at large epsilon, spec M-A5). Run JAX and torch on
one GPU with ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (``benchmarks/run_gpu.sh``).

    python benchmarks/schrodinger.py [--quick] [--out benchmarks/results/schrodinger.json]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import statistics
import sys
import time
from datetime import date
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import schrodinger_peer as peer
from benchmarks.parts import run_parts
from jaxdiff.data.gaussian_mixture import GaussianMixture
from jaxdiff.interop import unet_from_diffusers
from jaxdiff.samplers import DPMSolver, sample
from jaxdiff.schedules import DiscreteSchedule
from jaxdiff.schrodinger import FastSBOTConfig, FastSBOTSolver, make_schedule
from jaxdiff.schrodinger.fastsb_config import QUALITY_PRESETS
from jaxdiff.schrodinger.ot_correction import choose_solver, transport_bytes

TIME_SCALE = 1000.0  # continuous t in [t_min, 1] -> the UNet's timestep input
MIB = 2**20
FULL = {
    "shapes": {"64x64x3": ((64, 64, 3), 16), "4x128x128": ((128, 128, 4), 8)},
    "channels": (64, 128, 128),
    "presets": list(QUALITY_PRESETS),
    "ot": (4096, 64),
    "fastsb_error": (256, 50),  # batch, steps
    "atlas_error": (256, 200),
    "repeats": (3, 2),  # jaxdiff, originals
}
QUICK = {
    "shapes": {"8x8x3": ((8, 8, 3), 2), "4x8x8": ((8, 8, 4), 2)},
    "channels": (32, 32, 32),
    "presets": ["draft"],
    "ot": (128, 64),
    "fastsb_error": (64, 10),
    "atlas_error": (64, 20),
    "repeats": (1, 1),
}


@dataclasses.dataclass(frozen=True, eq=False)
class JaxEps:
    """jaxdiff's UNet as a noise predictor ``eps(x [B, H, W, C], t [B])`` (hashed by id)."""

    module: Any
    params: Any
    time_scale: float
    predicts_noise = True

    def __call__(self, x, t, context=None):
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],)) * self.time_scale
        return self.module.apply({"params": self.params}, x, t)


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianEps:
    """Exact noise prediction for data ``N(0, std^2 I)`` on a continuous ``schedule``."""

    schedule: Any
    std: float
    predicts_noise = True

    def __call__(self, x, t, context=None):
        flat = x.reshape(x.shape[0], -1)
        data = GaussianMixture(
            weights=jnp.ones((1,)),
            means=jnp.zeros((1, flat.shape[1])),
            stds=jnp.full((1,), self.std),
        )
        alpha, sigma = self.schedule.alpha(t), self.schedule.sigma(t)
        x0 = data.posterior_mean(flat, alpha, sigma)
        return ((flat - alpha[:, None] * x0) / sigma[:, None]).reshape(x.shape)


def _peak_mib():
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / MIB


def time_jax(run, repeats: int) -> dict:
    """``run(key)`` once (compile), then the median of ``repeats`` calls (None if 0), in s."""
    start = time.perf_counter()
    out = jax.block_until_ready(run(jax.random.key(0)))
    first = time.perf_counter() - start
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(run(jax.random.key(i + 1)))
        times.append(time.perf_counter() - start)
    median = statistics.median(times) if times else None
    return {"median_s": median, "first_call_s": first, "out": out}


def fastsb_jax(model, schedule, shape, repeats, **config) -> dict:
    """Time jaxdiff's ``FastSBOTSolver.sample``; ``config`` overrides ``FastSBOTConfig``."""
    reference = config.pop("reference", None)
    solver = FastSBOTSolver(model, schedule, FastSBOTConfig(profile=True, **config))
    last = {}

    def run(key):
        last["result"] = solver.sample(shape, key=key, reference=reference)
        return last["result"].samples

    timing = time_jax(run, repeats)
    result = last["result"]
    return {**timing, "result": result, "nfe": result.nfe, "program_mib": _mib(result.profile)}


def _mib(profile):
    b = None if profile is None else profile.program_bytes
    return None if b is None else b / MIB


def dpm_jax(model, shape, nfe, repeats) -> dict:
    """Time DPM-Solver++ (order 2) with ``nfe`` model calls on the linear discrete schedule."""
    method, schedule = DPMSolver(num_inference_steps=nfe), DiscreteSchedule.create("linear")

    def program(key):
        return sample(key, method, schedule, model, jax.random.normal(key, shape))

    nfe_run = jax.eval_shape(program, jax.random.key(0)).nfe
    compiled = jax.jit(lambda key: program(key).samples).lower(jax.random.key(0)).compile()
    memory = compiled.memory_analysis()
    program_mib = None
    if memory is not None:
        used = memory.argument_size_in_bytes + memory.output_size_in_bytes
        program_mib = (used + memory.temp_size_in_bytes - memory.alias_size_in_bytes) / MIB
    return {**time_jax(compiled, repeats), "nfe": nfe_run, "program_mib": program_mib}


def build_unets(channels, in_channels, seed):
    """A seeded random diffusers ``UNet2DModel`` and its jaxdiff conversion."""
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=32,
        norm_num_groups=32,
    ).eval()
    module, params = unet_from_diffusers(unet)
    return unet, module, params


def speed_rows(args, cfg, originals, torch, device):
    """Table 1: per shape and preset, jaxdiff / DPM-Solver++ / originals in ms per sample."""
    rows = []
    EpsNet, _ = peer.make_models(torch)
    linear = make_schedule("linear")
    for si, (name, ((h, w, c), default_batch)) in enumerate(cfg["shapes"].items()):
        batch = args.batch[si] if args.batch else default_batch
        unet, module, params = build_unets(cfg["channels"], c, seed=si)
        eps_cont, eps_disc = JaxEps(module, params, TIME_SCALE), JaxEps(module, params, 1.0)
        orig = _original_speed_setup(originals, EpsNet, unet, device, (batch, c, h, w), torch)
        for preset in args.presets:
            row = {"shape": name, "batch": batch, "preset": preset}
            fast = fastsb_jax(eps_cont, linear, (batch, h, w, c), args.repeats, quality=preset)
            row.update(nfe=fast["nfe"], jaxdiff_ms=1e3 * fast["median_s"] / batch)
            row.update(
                jaxdiff_first_call_s=fast["first_call_s"], jaxdiff_program_mib=fast["program_mib"]
            )
            row["jaxdiff_all_finite"] = bool(fast["result"].all_finite)
            dpm = dpm_jax(eps_disc, (batch, h, w, c), row["nfe"], args.repeats)
            row.update(dpm_nfe=dpm["nfe"], dpm_ms=1e3 * dpm["median_s"] / batch)
            row.update(dpm_first_call_s=dpm["first_call_s"], dpm_program_mib=dpm["program_mib"])
            row["ratio_vs_dpm"] = row["jaxdiff_ms"] / row["dpm_ms"]
            row["jax_peak_mib"] = _peak_mib()
            row.update(
                _jax_atlas_speed(eps_cont, linear, (batch, h, w, c), row["nfe"], args.repeats)
            )
            if preset in args.orig_presets:
                row.update(_original_speed(orig, row["nfe"], batch, args.orig_repeats, torch))
            rows.append(row)
            print(json.dumps({k: _short(v) for k, v in row.items()}), flush=True)
    return rows


def _short(v):
    return round(v, 4) if isinstance(v, float) else v


def build_original(originals, name, where, build, probe, *, sticky):
    """The first of the original's attempts (``schrodinger_peer``) that runs ``probe``.

    Failures go to ``originals["failures"]``; with ``sticky`` the next call starts at the
    attempt that ran (a torch.compile mode that broke stays broken in this process).

    Returns:
      ``(solver, label)``, or ``(None, None)`` when no attempt ran.
    """
    attempts = peer.FASTSB_ATTEMPTS if name == "fastsb" else peer.ATLAS_ATTEMPTS
    start = originals["start"].get(name, 0) if sticky else 0
    index, obj, failures = peer.first_that_runs(attempts, build, probe, start)
    if sticky:
        originals["start"][name] = index
    for label, error in failures.items():
        originals["failures"].append(
            {"original": name, "where": where, "config": label, "error": error}
        )
    return (obj, attempts[index][0]) if obj is not None else (None, None)


def _original_speed_setup(originals, EpsNet, unet, device, shape, torch):
    """Solvers of the originals for one ``shape`` (each on its own copy of the UNet)."""
    mods, setup, where = originals["modules"], {"shape": shape}, f"speed {shape}"

    def model():
        return EpsNet(copy.deepcopy(unet), TIME_SCALE)

    if "fastsb" in mods:
        fastsb = mods["fastsb"]
        schedule = fastsb.make_schedule("linear")
        error = peer.fastsb_default_error(fastsb, model(), schedule, device, shape, [1.0, 1e-3])
        if error is not None:
            originals["failures"].append(
                {"original": "fastsb", "where": where, "config": "FastSBOTConfig()", "error": error}
            )
        setup["fastsb"] = build_original(
            originals,
            "fastsb",
            where,
            lambda o: peer.fastsb_solver(fastsb, torch, model(), schedule, device, **o),
            peer.fastsb_probe(shape),
            sticky=True,
        )
    if "atlas" in mods:
        setup["atlas"] = build_original(
            originals,
            "atlas",
            where,
            lambda o: peer.atlas_sampler(mods["atlas"], model(), device, kernel=o),
            peer.atlas_probe("hierarchical", shape),
            sticky=False,
        )
    return setup


def _original_speed(setup, nfe, batch, repeats, torch):
    """Time the originals at ``nfe`` model calls (``nfe + 1`` times from 1 to 1e-3)."""
    row = {}
    ts = [float(t) for t in np.linspace(1.0, 1e-3, nfe + 1)]
    runs = {
        "fastsb": lambda solver: peer.fastsb_run(solver, setup["shape"], ts),
        "atlas": lambda solver: peer.atlas_run(solver, "hierarchical", setup["shape"], ts),
    }
    for key, run in runs.items():
        name = f"{key}_orig"
        solver, label = setup.get(key, (None, None))
        if solver is None:
            row[f"{name}_error"] = "no attempt ran (see failures)" if key in setup else "not loaded"
            continue
        row[f"{name}_config"] = label
        try:
            t = peer.time_torch(torch, lambda run=run, solver=solver: run(solver), repeats)
        except Exception as exc:
            row[f"{name}_error"] = peer.describe(exc)
            continue
        x = t["out"].reshape(t["out"].shape[0], -1)
        row[f"{name}_ms"] = 1e3 * t["median_s"] / batch
        row[f"{name}_warmup_s"] = t["warmup_s"]
        row[f"{name}_peak_mib"] = None if t["peak_bytes"] is None else t["peak_bytes"] / MIB
        row[f"{name}_out_std"] = float(np.std(x))
        row[f"{name}_batch_spread"] = float(np.mean(np.std(x, axis=0)))
        row[f"{name}_finite"] = bool(np.all(np.isfinite(x)))
    return row


def _jax_atlas():
    """jaxdiff's ATLAS facade ``(sampler class, KernelConfig, SamplerConfig)`` or the reason."""
    try:
        from jaxdiff.ot import KernelConfig
        from jaxdiff.schrodinger import AdvancedHierarchicalDiffusionSampler, SamplerConfig
    except ImportError as exc:
        return None, peer.describe(exc)
    return (AdvancedHierarchicalDiffusionSampler, KernelConfig, SamplerConfig), None


def _jax_atlas_runner(model, schedule, shape, nfe, t_min=1e-3):
    """``run(key) -> ATLASResult``: jaxdiff's ATLAS facade (default config) at ~``nfe`` calls."""
    classes, why = _jax_atlas()
    if classes is None:
        raise RuntimeError(why)
    cls, kernel, sampler = classes
    config = sampler()
    steps = nfe // 2 if config.hierarchical_sampling else nfe  # step doubling: 2 calls a step
    timesteps = tuple(float(t) for t in np.linspace(1.0, t_min, steps + 1))
    atlas = cls(model, schedule, kernel_config=kernel(), sampler_config=config)
    return lambda key: atlas.sample(shape, timesteps, key=key)


def _jax_atlas_speed(model, schedule, shape, nfe, repeats):
    last = {}
    try:
        runner = _jax_atlas_runner(model, schedule, shape, nfe)

        def run(key):
            last["result"] = runner(key)
            return last["result"].samples

        t = time_jax(run, repeats)
    except Exception as exc:
        return {"jaxdiff_atlas_error": peer.describe(exc)}
    return {
        "jaxdiff_atlas_ms": 1e3 * t["median_s"] / shape[0],
        "jaxdiff_atlas_nfe": last["result"].nfe,
    }


def ot_rows(args, cfg):
    """Table 2: the OT correction's share of a step and its memory against the budget."""
    n, d = cfg["ot"]
    schedule, std = make_schedule("linear"), 0.5
    model = GaussianEps(schedule, std)
    reference = std * jax.random.normal(jax.random.key(7), (n, d))
    base = {"quality": args.ot_preset}
    off = fastsb_jax(model, schedule, (n, d), args.repeats, **base)
    steps = FastSBOTConfig(**base).num_timesteps
    rows = []
    for label, extra in (
        ("auto, 100 MiB", {"memory_limit_ot_mb": 100.0}),
        ("online, 100 MiB", {"memory_limit_ot_mb": 100.0, "use_triton_kernels": True}),
        ("auto, 16 MiB", {"memory_limit_ot_mb": 16.0}),
    ):
        config = FastSBOTConfig(use_ot_correction=True, **base, **extra)
        row = {"n": n, "d": d, "preset": args.ot_preset, "steps": steps, "config": label}
        row["memory_limit_ot_mb"] = config.memory_limit_ot_mb
        try:
            ot = config.ot_correction()
            row["solver"] = choose_solver(n, n, d, ot)
            row["transport_mib_estimate"] = (
                transport_bytes(row["solver"], n, n, d, ot.num_projections) / MIB
            )
            on = fastsb_jax(
                model, schedule, (n, d), args.repeats, use_ot_correction=True, reference=reference,
                **base, **extra,
            )  # fmt: skip
        except Exception as exc:
            row["error"] = peer.describe(exc)
            rows.append(row)
            continue
        res = on["result"]
        row.update(t_off_ms=1e3 * off["median_s"], t_on_ms=1e3 * on["median_s"])
        row["share"] = (on["median_s"] - off["median_s"]) / on["median_s"]
        row["ot_ms_per_step"] = 1e3 * (on["median_s"] - off["median_s"]) / steps
        row["program_mib_on"], row["program_mib_off"] = on["program_mib"], off["program_mib"]
        row["jax_peak_mib"] = _peak_mib()
        row["ot_converged_steps"] = int(np.sum(res.ot_converged))
        row["ot_error_max"] = float(np.max(res.ot_error))
        row["sample_std"] = float(np.std(np.asarray(res.samples)))
        rows.append(row)
        print(json.dumps({k: _short(v) for k, v in row.items()}), flush=True)
    return rows


def error_rows(args, cfg, originals, torch, device):
    """Table 3: sample std for Gaussian data with the exact score (target ``c``)."""
    rows = []
    _, GaussianNet = peer.make_models(torch)
    mods = originals["modules"]
    # FastSB-OT's problem: c = 0.3, [B, 8, 8, 3], cosine, 50 uniform steps
    batch, steps = cfg["fastsb_error"]
    cosine = make_schedule("cosine")
    for preset in args.presets:
        fast = fastsb_jax(GaussianEps(cosine, 0.3), cosine, (batch, 8, 8, 3), 0, quality=preset)
        rows.append(
            _err("fastsb", f"jaxdiff FastSBOTSolver [{preset}]", fast["nfe"], 0.3, fast["out"])
        )
    if "fastsb" in mods:
        fastsb = mods["fastsb"]
        schedule = fastsb.make_schedule("cosine", num_timesteps=100)
        model = GaussianNet(schedule, 0.3, predicts_noise=False)
        ts = [float(t) for t in np.linspace(1.0, 0.0, steps + 1)]
        shape = (batch, 3, 8, 8)
        solver, config = build_original(
            originals,
            "fastsb",
            "error fastsb",
            lambda o: peer.fastsb_solver(fastsb, torch, model, schedule, device, **o),
            peer.fastsb_probe(shape),
            sticky=True,
        )
        for label, unclamped in (("unclamped", True), ("clamped", False)):
            name = f"original FastSBOTSolver.sample ({label})"
            try:
                if solver is None:
                    raise RuntimeError("no attempt ran (see failures)")
                torch.manual_seed(0)
                out = peer.fastsb_run(solver, shape, ts, unclamped=unclamped)
                row = _err("fastsb", name, steps, 0.3, out.float().cpu().numpy())
                rows.append({**row, "config": config})
            except Exception as exc:
                rows.append({"problem": "fastsb", "sampler": name, "error": peer.describe(exc)})
    # ATLAS's problem: c = 0.5, d = 16, VP-linear, 200 steps from 1 to 1e-3
    batch, steps = cfg["atlas_error"]
    linear = make_schedule("linear")
    model = GaussianEps(linear, 0.5)
    euler = fastsb_jax(model, linear, (batch, 16), 0, base_step="euler", num_timesteps=steps)
    rows.append(_err("atlas", "jaxdiff FastSBOTSolver [euler]", euler["nfe"], 0.5, euler["out"]))
    try:
        res = _jax_atlas_runner(model, linear, (batch, 16), steps)(jax.random.key(0))
        name = "jaxdiff AdvancedHierarchicalDiffusionSampler"
        rows.append(_err("atlas", name, res.nfe, 0.5, res.samples))
    except Exception as exc:
        rows.append(
            {"problem": "atlas", "sampler": "jaxdiff ATLAS facade", "error": peer.describe(exc)}
        )
    ts = [float(t) for t in np.linspace(1.0, 1e-3, steps + 1)]
    if "atlas" in mods:
        model = GaussianNet(peer.vp_linear_alpha_bar, 0.5, predicts_noise=True)
        for entry in ("hierarchical", "solver"):
            name = f"original ATLAS {entry}.sample"
            sampler, config = build_original(
                originals,
                "atlas",
                f"error atlas {entry}",
                lambda o, e=entry: peer.atlas_sampler(
                    mods["atlas"], model, device, entry=e, kernel=o
                ),
                peer.atlas_probe(entry, (batch, 16)),
                sticky=False,
            )
            try:
                if sampler is None:
                    raise RuntimeError("no attempt ran (see failures)")
                torch.manual_seed(0)
                out = peer.atlas_run(sampler, entry, (batch, 16), ts)
                row = _err("atlas", name, steps, 0.5, out.float().cpu().numpy())
                rows.append({**row, "config": config})
            except Exception as exc:
                rows.append({"problem": "atlas", "sampler": name, "error": peer.describe(exc)})
    for row in rows:
        print(json.dumps({k: _short(v) for k, v in row.items()}), flush=True)
    return rows


def _err(problem, sampler_name, nfe, target, out):
    x = np.asarray(out, np.float32)
    per_dim = x.reshape(x.shape[0], -1).std(axis=0)
    return {
        "problem": problem,
        "sampler": sampler_name,
        "nfe": int(nfe),
        "target_std": target,
        "std": float(x.std()),
        "std_error": float(x.std() - target),
        "batch_spread": float(np.mean(per_dim)),
        "finite": bool(np.all(np.isfinite(x))),
    }


def _cell(v, fmt="{:.3g}"):
    if v is None:
        return "-"
    return fmt.format(v) if isinstance(v, float) else str(v)


def _orig_cell(row, name):
    if f"{name}_ms" in row:
        config = row.get(f"{name}_config")
        note = "" if config in (None, "defaults") else f" ({config})"
        return _cell(row[f"{name}_ms"]) + note
    err = row.get(f"{name}_error")
    return "-" if err is None else f"fails: {err.split(':')[0]}"


def markdown(speed, ot, err, failures) -> str:
    """The three tables and the originals' failures as markdown (a part that failed as a
    whole is left out)."""
    speed, ot, err = ([r for r in rows if "part_error" not in r] for rows in (speed, ot, err))
    lines = [
        "| shape | batch | preset | NFE | jaxdiff ms/sample | DPM-Solver++ ms/sample | ratio "
        "| jaxdiff program MiB | FastSB-OT orig ms/sample | ATLAS orig ms/sample "
        "| jaxdiff ATLAS ms/sample |",
        "|---" * 11 + "|",
    ]
    for r in speed:
        lines.append(
            f"| {r['shape']} | {r['batch']} | {r['preset']} | {r['nfe']} "
            f"| {_cell(r['jaxdiff_ms'])} | {_cell(r['dpm_ms'])} "
            f"| {_cell(r['ratio_vs_dpm'], '{:.2f}')} "
            f"| {_cell(r['jaxdiff_program_mib'], '{:.0f}')} | {_orig_cell(r, 'fastsb_orig')} "
            f"| {_orig_cell(r, 'atlas_orig')} | {_orig_cell(r, 'jaxdiff_atlas')} |"
        )
    lines += [
        "",
        "| n x d | preset | config | solver | budget MiB | transport MiB (est.) | program MiB "
        "| t_off ms | t_on ms | OT share | OT ms/step | converged |",
        "|---" * 12 + "|",
    ]
    for r in ot:
        if "error" in r:
            lines.append(
                f"| {r['n']} x {r['d']} | {r['preset']} | {r['config']} | fails: "
                f"{r['error']} |" + " |" * 8
            )
            continue
        lines.append(
            f"| {r['n']} x {r['d']} | {r['preset']} | {r['config']} | {r['solver']} "
            f"| {r['memory_limit_ot_mb']:.0f} | {r['transport_mib_estimate']:.1f} "
            f"| {_cell(r['program_mib_on'], '{:.0f}')} | {r['t_off_ms']:.2f} | {r['t_on_ms']:.2f} "
            f"| {100 * r['share']:.1f} % | {r['ot_ms_per_step']:.2f} "
            f"| {r['ot_converged_steps']}/{r['steps']} |"
        )
    lines += ["", "| problem | sampler | NFE | target std | std | finite |", "|---" * 6 + "|"]
    for r in err:
        if "error" in r:
            lines.append(f"| {r['problem']} | {r['sampler']} | - | - | fails: {r['error']} | - |")
            continue
        config = r.get("config")
        note = "" if config in (None, "defaults") else f" ({config})"
        lines.append(
            f"| {r['problem']} | {r['sampler']}{note} | {r['nfe']} | {r['target_std']} "
            f"| {r['std']:.4g} | {r['finite']} |"
        )
    lines += ["", "Originals' settings that failed (the next one in order was used):", ""]
    lines += [f"- {f['original']}, {f['where']}, {f['config']}: {f['error']}" for f in failures]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU, ~3 min)")
    parser.add_argument("--peer", default=".orig", help="folder holding FastSB-OT/ and ATLAS/")
    parser.add_argument("--presets", nargs="+", default=None, help="default: all (quick: draft)")
    parser.add_argument("--orig-presets", nargs="+", default=None, help="default: --presets")
    parser.add_argument("--batch", nargs="+", type=int, default=None, help="one per shape")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--orig-repeats", type=int, default=None, help="default 2 (quick: 1)")
    parser.add_argument("--ot-preset", default="draft")
    parser.add_argument("--parts", nargs="+", default=["ot", "error", "speed"])
    parser.add_argument("--out", default="benchmarks/results/schrodinger.json")
    parser.add_argument("--results-md", default=None, help="append the tables to this file")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    args.presets = args.presets or cfg["presets"]
    args.repeats = cfg["repeats"][0] if args.repeats is None else args.repeats
    args.orig_repeats = cfg["repeats"][1] if args.orig_repeats is None else args.orig_repeats
    args.orig_presets = args.presets if args.orig_presets is None else args.orig_presets
    if args.batch and len(args.batch) != len(cfg["shapes"]):
        parser.error(f"--batch needs one size per shape {list(cfg['shapes'])}")
    jax_dev = jax.devices()[0].device_kind  # JAX takes the GPU before torch does
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modules, load_errors = peer.load(args.peer)
    originals = {"modules": modules, "start": {}, "failures": []}
    print(
        f"jax {jax.__version__} on {jax_dev}; torch {torch.__version__} on {device}; "
        f"originals loaded: {sorted(modules)} {load_errors or ''}",
        flush=True,
    )
    parts = (
        ("ot", lambda: ot_rows(args, cfg)),
        ("error", lambda: error_rows(args, cfg, originals, torch, device)),
        ("speed", lambda: speed_rows(args, cfg, originals, torch, device)),
    )
    tables = run_parts(parts, args.parts)
    meta = {
        "date": date.today().isoformat(),
        "command": "python " + " ".join(sys.argv),
        "jax": jax.__version__,
        "jax_device": jax_dev,
        "torch": torch.__version__,
        "torch_device": str(device),
        "host": platform.node(),
        "quick": args.quick,
        "original_commit": peer.ORIGINAL_COMMIT,
        "originals_loaded": sorted(modules),
        "original_load_errors": load_errors,
        "original_failures": originals["failures"],
        "unet_block_out_channels": list(cfg["channels"]),
    }
    table = markdown(tables["speed"], tables["ot"], tables["error"], originals["failures"])
    print(table)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, **tables}, f, indent=2, default=str)
    if args.results_md:
        with open(args.results_md, "a") as f:
            f.write(f"\n### schrodinger — {meta['date']} — {jax_dev} / torch {device}\n\n")
            f.write(f"`{meta['command']}`\n\n{table}\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
