"""``jaxdiff demo``: several samplers on a 2-D Gaussian mixture with an exact model.

The denoiser is the exact posterior mean of the mixture (no training), so differences
between methods are the samplers' own discretisation error. For each method the demo
prints the number of model calls, the run time (compilation excluded) and the energy
distance to exact samples, and writes a scatter plot per method.

The energy distance (:func:`jaxdiff.metrics.energy_distance`) is 0 for identical laws;
between two independent exact sample sets of the same size it is not 0 but a small
"noise floor", printed first: a sampler whose distance is near the floor cannot be told
apart from exact sampling at this sample size.

``--out`` (a ``.png`` in an existing folder) and ``--num-samples`` are checked before
anything runs.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from jaxdiff._validation import check_int_range
from jaxdiff.data.gaussian_mixture import GaussianMixture
from jaxdiff.metrics import energy_distance
from jaxdiff.samplers.config import SamplingConfig
from jaxdiff.samplers.manager import AdvancedSamplingManager
from jaxdiff.schedules.config import NoiseSchedulerConfig

__all__ = ["DEMO_METHODS", "MAX_DEMO_SAMPLES", "run_demo"]

MAX_DEMO_SAMPLES = 100_000  # the energy distance is O(n^2) in memory

# (label, sampling config fields)
DEMO_METHODS = [
    ("DDPM, 1000 steps", {"method": "ddpm", "num_inference_steps": 1000}),
    ("DDIM, 50 steps", {"method": "ddim", "num_inference_steps": 50}),
    ("DPM-Solver++(2M), 20 steps", {"method": "dpm_solver", "num_inference_steps": 20}),
    ("Euler, 50 steps", {"method": "euler", "num_inference_steps": 50}),
    ("Euler ancestral, 50 steps", {"method": "euler_ancestral", "num_inference_steps": 50}),
    ("Heun, 25 steps", {"method": "heun", "num_inference_steps": 25}),
]


def run_demo(out: str = "jaxdiff_demo.png", num_samples: int = 2000, seed: int = 0) -> dict:
    """Run the demo; write ``out`` (PNG) and return ``{label: metrics}``.

    Raises:
      ValueError: ``out`` is not a ``.png`` path in an existing folder, or
        ``num_samples`` / ``seed`` is out of range (checked before any work).
      TypeError: ``num_samples`` or ``seed`` is not an int.
    """
    _check_out(out)
    check_int_range("--num-samples", num_samples, 2, MAX_DEMO_SAMPLES)
    check_int_range("--seed", seed, 0)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = jax.random.key(seed)
    k_data, k_noise, k_sample = jax.random.split(key, 3)
    mixture = GaussianMixture.ring()
    data = mixture.sample(k_data, num_samples)
    sched_cfg = NoiseSchedulerConfig(
        schedule_type="scaled_linear", beta_start=1e-4, beta_end=0.02, timestep_spacing="trailing"
    )
    latents = jax.random.normal(k_noise, (num_samples, 2))
    baseline = float(energy_distance(data, mixture.sample(jax.random.key(seed + 1), num_samples)))

    print(f"jaxdiff demo: 8-component ring, {num_samples} samples, exact denoiser", flush=True)
    print(
        "energy distance to exact samples (0 = same law); two independent exact sets of "
        f"this size are {baseline:.4f} apart (the noise floor)",
        flush=True,
    )
    print(f"{'method':<30}{'NFE':>6}{'time [ms]':>12}{'compile [s]':>13}{'energy dist':>13}")
    results = {}
    fig, axes = plt.subplots(1, len(DEMO_METHODS) + 1, figsize=(3 * (len(DEMO_METHODS) + 1), 3))
    _scatter(axes[0], data, f"exact samples\nnoise floor {baseline:.4f}")
    for ax, (label, fields) in zip(axes[1:], DEMO_METHODS, strict=True):
        manager = AdvancedSamplingManager(sched_cfg, SamplingConfig(**fields))
        model = mixture.epsilon_model(manager.scheduler.alphas_cumprod)
        res = manager.sample(model, latents, key=k_sample)
        dist = float(energy_distance(res.samples, data))
        results[label] = {
            "nfe": res.num_function_evals,
            "time_s": res.processing_time,
            "compile_s": res.compile_time,
            "energy_distance": dist,
        }
        print(
            f"{label:<30}{res.num_function_evals:>6}{1e3 * res.processing_time:>12.2f}"
            f"{res.compile_time:>13.2f}{dist:>13.4f}",
            flush=True,
        )
        _scatter(ax, res.samples, f"{label}\nenergy dist {dist:.4f}")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"wrote {out}")
    return results


def _check_out(out) -> None:
    if not isinstance(out, str | Path) or not str(out):
        raise TypeError(f"--out must be a file path, got {out!r}")
    path = Path(out)
    if path.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: the picture is a PNG; give a path ending in .png")
    if not path.parent.absolute().is_dir():
        raise ValueError(f"--out {out}: folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"--out {out} is a folder; give a .png file path")


def _scatter(ax, points, title):
    points = np.asarray(points)
    ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.5)
    ax.set_title(title, fontsize=8)
    ax.set_xlim(-6, 6)
    ax.set_ylim(-6, 6)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
