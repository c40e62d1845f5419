"""Drive the original PyTorch FastSB-OT and ATLAS solvers for ``benchmarks/schrodinger.py``.

The originals are TSOR666/OT-diffusion-toolkit (commit ``2536e5f``): the packages
``FastSB-OT/fastsb_ot`` and ``ATLAS/atlas``. Their code is NOT part of jaxdiff; export them
into an ignored folder (``.orig``, listed in ``.git/info/exclude``) and pass it as
``--peer``::

    git --git-dir=<mirror> archive HEAD FastSB-OT/fastsb_ot ATLAS/atlas | tar -x -C .orig

Nothing of theirs is modified. What this module adds around them, all outside their code:

* the model contracts they document (``../shared/specs/fastsb-ot.md`` section 2.5,
  ``atlas.md`` section 2.5): ``model(x [B, C, H, W], t [B]) -> eps`` (``predicts_noise =
  True`` for FastSB-OT), with ``t`` continuous in ``[0, 1]`` scaled by ``time_scale`` for a
  diffusers UNet;
* exact Gaussian scores for the error problems of the specs;
* entry points that finish: FastSB-OT's ``sample()`` crashes for ``W >= 64`` in its FFT
  kernel builder (spec M3) and its CUDA warm-up feeds a 3-channel input to any model
  (M17), so the timed runs pass ``use_fft_transport=False, warmup=False``
  (:data:`FASTSB_TIMED`); :func:`fastsb_default_error` records the default's error.
  Beyond that, :func:`first_that_runs` tries the settings of :data:`FASTSB_ATTEMPTS`
  (its ``torch.compile`` modes: on CUDA the default "reduce-overhead" step can fail in
  CUDA graphs) and :data:`ATLAS_ATTEMPTS` (its default kernel bandwidth underflows the
  kernel's diagonal for images, spec M-A10) in order and keeps the first that runs a
  short probe; every failure is returned with its error;
* their loggers are quietened (ATLAS logs several warnings per step; its errors still
  raise).
"""

from __future__ import annotations

import logging
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ORIGINAL_COMMIT = "2536e5f"
#: FastSB-OT config overrides of the timed runs (see the module docstring).
FASTSB_TIMED = {"quality": "balanced", "warmup": False, "use_fft_transport": False}
_PACKAGE_LOGGERS = ("fastsb_ot", "atlas")
# ATLAS's solver classes reset their loggers' levels in __init__, so these are switched off
_CLASS_LOGGERS = ("SchroedingerBridgeSolver", "AdvancedHierarchicalDiffusionSampler")


#: (label, overrides) tried in order for FastSB-OT; ``torch_compile=False`` switches
#: ``torch._dynamo`` off for the process (only FastSB-OT uses torch.compile here).
FASTSB_ATTEMPTS = (
    ("defaults", {}),
    ("compile_mode='default'", {"compile_mode": "default"}),
    ("torch.compile off", {"torch_compile": False}),
)
#: (label, KernelConfig overrides) tried in order for ATLAS. The fallback's wide kernel runs
#: but pulls every sample to the batch mean (spec M-A5): a speed figure, not a sampler.
ATLAS_ATTEMPTS = (
    ("defaults", {}),
    ("epsilon=100, adaptive_epsilon=False", {"epsilon": 100.0, "adaptive_epsilon": False}),
)


def describe(exc) -> str:
    """``"Type: message (at file:line)"``, the message cut to 240 characters."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = " ".join(str(exc).split())[:240]
    return f"{type(exc).__name__}: {message}{where}"


def first_that_runs(attempts, build, probe, start: int = 0):
    """The first of ``attempts[start:]`` whose ``build(overrides)`` passes ``probe``.

    Returns:
      ``(index, obj, failures)``: the attempt's index (``len(attempts)`` when none ran),
      the built object (or None), and ``{label: describe(error)}`` for those that failed.
    """
    failures = {}
    for index in range(start, len(attempts)):
        label, overrides = attempts[index]
        try:
            obj = build(overrides)
            probe(obj)
            return index, obj, failures
        except Exception as exc:  # an original that fails is a result
            failures[label] = describe(exc)
    return len(attempts), None, failures


def load(peer_dir):
    """Import ``fastsb_ot`` and ``atlas`` from ``peer_dir`` (``FastSB-OT/``, ``ATLAS/`` in it).

    Returns:
      ``(modules, errors)``: ``{"fastsb": module, "atlas": module}`` for those that
      import, and ``{name: "ExceptionType: message"}`` for those that do not.
    """
    root = Path(peer_dir)
    modules, errors = {}, {}
    for name, sub, package in (("fastsb", "FastSB-OT", "fastsb_ot"), ("atlas", "ATLAS", "atlas")):
        folder = root / sub / package
        if not folder.is_dir():
            errors[name] = f"FileNotFoundError: {folder} (export the original there)"
            continue
        sys.path.insert(0, str(root / sub))
        try:
            modules[name] = __import__(package)
        except Exception as exc:  # an optional dependency missing there is a result
            errors[name] = describe(exc)
    for name in _PACKAGE_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in _CLASS_LOGGERS:
        logging.getLogger(name).disabled = True
    return modules, errors


def vp_linear_alpha_bar(t) -> float:
    """``ab(t) = exp(-(0.1 t + 19.9 t^2 / 2))`` (Song et al. 2021, eq. 33) for a float ``t``.

    The same ``ab`` as FastSB-OT's ``make_schedule("linear")`` and jaxdiff's
    ``make_schedule("linear")``; ATLAS takes it as its ``noise_schedule``.
    """
    t = float(t)
    return math.exp(-(0.1 * t + 0.5 * 19.9 * t * t))


def make_models(torch):
    """The torch model classes (built here so that importing this module needs no torch)."""

    class EpsNet(torch.nn.Module):
        """A diffusers UNet as the originals' noise predictor ``eps(x [B, C, H, W], t [B])``."""

        predicts_noise = True

        def __init__(self, unet, time_scale: float):
            super().__init__()
            self.unet, self.time_scale = unet, float(time_scale)

        def forward(self, x, t):
            t = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1)
            return self.unet(x, self.time_scale * t.expand(x.shape[0])).sample

    class GaussianNet(torch.nn.Module):
        """Exact prediction for data ``N(0, c^2 I)`` under ``alpha_bar(t)`` (a float function).

        ``x_t ~ N(0, v I)``, ``v = ab c^2 + 1 - ab``: score ``-x / v``, noise
        ``sqrt(1 - ab) x / v``. ``t`` ``[B]`` holds one time (both samplers call the
        model with a constant ``t``); ``ab`` is the solver's own schedule at ``t[0]``.
        """

        def __init__(self, alpha_bar, std: float, predicts_noise: bool):
            super().__init__()
            self.alpha_bar, self.std = alpha_bar, float(std)
            self.predicts_noise = predicts_noise
            self.predicts_score = not predicts_noise

        def forward(self, x, t):
            t0 = float(torch.as_tensor(t).reshape(-1)[0])
            ab = float(self.alpha_bar(t0))
            v = ab * self.std**2 + 1.0 - ab
            x = x.float()
            return math.sqrt(max(1.0 - ab, 0.0)) * x / v if self.predicts_noise else -x / v

    return EpsNet, GaussianNet


def fastsb_solver(fastsb, torch, model, schedule, device, **overrides):
    """``fastsb_ot.FastSBOTSolver(model, schedule, FastSBOTConfig(...), device)``.

    ``overrides`` go onto :data:`FASTSB_TIMED`; ``torch_compile=False`` switches
    ``torch._dynamo`` off. Compiled state of earlier solvers is dropped first (the
    original's global compile cache is keyed by function and argument shapes, not by
    ``compile_mode``).
    """
    if overrides.pop("torch_compile", True) is False:
        torch._dynamo.config.disable = True
    torch._dynamo.reset()
    fastsb.clear_global_compile_cache()
    config = fastsb.FastSBOTConfig(**{**FASTSB_TIMED, **overrides})
    return fastsb.FastSBOTSolver(model, schedule, config, device)


def fastsb_probe(shape):
    """A probe for :func:`first_that_runs`: two 3-step ``sample()`` calls at ``shape``."""
    timesteps = [1.0, 0.5, 0.25, 1e-3]
    return lambda solver: [fastsb_run(solver, shape, timesteps) for _ in range(2)]


def fastsb_run(solver, shape, timesteps, *, unclamped: bool = False):
    """One ``solver.sample(shape, timesteps)`` with fresh caches; ``[B, C, H, W]`` out.

    ``unclamped``: the state before ``sample()``'s final ``clip(x, -1, 1)`` (the last but
    one entry of its trajectory), where the spec measured its error.
    """
    solver.reset_caches()  # its content-keyed score cache would skip model calls
    if unclamped:
        _, trajectory = solver.sample(shape, timesteps, verbose=False, return_trajectory=True)
        return trajectory[-2]
    return solver.sample(shape, timesteps, verbose=False)


def fastsb_default_error(fastsb, model, schedule, device, shape, timesteps) -> str | None:
    """The error of ``sample()`` with the default config (FFT transport, warm-up on CUDA)."""
    try:
        solver = fastsb.FastSBOTSolver(model, schedule, fastsb.FastSBOTConfig(), device)
        solver.sample(shape, timesteps, verbose=False)
    except Exception as exc:
        return describe(exc)
    return None


def atlas_sampler(atlas, model, device, *, entry: str = "hierarchical", kernel=None, sampler=None):
    """ATLAS's ``AdvancedHierarchicalDiffusionSampler`` (``entry="hierarchical"``) or
    ``SchroedingerBridgeSolver`` (``"solver"``) on the VP-linear schedule, with
    ``KernelConfig(**kernel)`` and ``SamplerConfig(**sampler)`` (their defaults when None)."""
    cls = {
        "hierarchical": atlas.AdvancedHierarchicalDiffusionSampler,
        "solver": atlas.SchroedingerBridgeSolver,
    }[entry]
    return cls(
        model,
        vp_linear_alpha_bar,
        device=device,
        kernel_config=atlas.KernelConfig(**(kernel or {})),
        sampler_config=atlas.SamplerConfig(**(sampler or {})),
    )


def atlas_probe(entry: str, shape):
    """A probe for :func:`first_that_runs`: one 3-step ATLAS ``sample()`` at ``shape``."""
    return lambda sampler: atlas_run(sampler, entry, shape, [1.0, 0.5, 0.25, 1e-3])


def atlas_run(sampler, entry: str, shape, timesteps):
    """One ATLAS ``sample(shape, timesteps)`` of :func:`atlas_sampler`'s ``entry``, no
    progress output, after clearing its kernel cache; ``[B, ...]`` out."""
    sampler.clear_kernel_cache()
    if entry == "hierarchical":
        return sampler.sample(shape, timesteps, show_progress=False)
    return sampler.sample(shape, timesteps, verbose=False)


def time_torch(torch, run, repeats: int, seed: int = 0) -> dict:
    """Warm up once, then time ``repeats`` calls of ``run()`` (device-synchronised).

    Returns ``{"median_s", "times_s", "warmup_s", "peak_bytes", "out"}``: ``peak_bytes`` is
    ``torch.cuda.max_memory_allocated`` over the timed calls (None on CPU), ``out`` the
    last output (a float32 numpy array).
    """
    cuda = torch.cuda.is_available()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    torch.manual_seed(seed)
    start = time.perf_counter()
    out = run()
    sync()
    warmup = time.perf_counter() - start
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(repeats):
        torch.manual_seed(seed + 1 + i)
        start = time.perf_counter()
        out = run()
        sync()
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "times_s": times,
        "warmup_s": warmup,
        "peak_bytes": int(torch.cuda.max_memory_allocated()) if cuda else None,
        "out": np.asarray(out.detach().float().cpu().numpy()),
    }
