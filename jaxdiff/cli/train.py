"""``jaxdiff train``: a small DDPM on scikit-learn's digits, trained and sampled on device.

Configuration is Hydra YAML (``configs/train``; groups ``model`` and ``training``),
overridden on the command line (``jaxdiff train training=quick sampler.method=dpm_solver``).
Each configuration trains in ``<output_dir>/<hash>/``, the hash covering the model, data
and objective but not training-only settings (:func:`jaxdiff.train.run_directory`), with
Orbax checkpoints: a killed run resumes, a finished run only re-samples. The run writes
``loss.png``, ``samples.png`` and ``metrics.json`` there and prints the quality figures:

- a logistic-regression digit classifier trained on the real training images: its
  accuracy on held-out real digits, and on generated ones its mean confidence and the
  entropy of the predicted-class histogram (log 10 = all classes equally often);
- nearest-neighbour distance (pixels in 0..16) from each image to the training set, for
  generated and for held-out real digits (generated digits much closer than held-out ones
  would mean memorisation, much farther would mean poor samples).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from jaxdiff.cli.config import (
    check_output_dir,
    checking,
    compose_config,
    help_epilog,
    schema_from,
)

__all__ = [
    "DESCRIPTION",
    "add_parser",
    "compose",
    "digit_quality",
    "prepare",
    "run",
    "schema",
    "train_and_sample",
]

DESCRIPTION = """Train a small DDPM on scikit-learn's digits (8 x 8), sample it with a jaxdiff
sampler and score the samples. Configuration: Hydra YAML in configs/train, overridden
as key=value (training=quick sampler.method=dpm_solver model.base_channels=64).
Each configuration trains in <output_dir>/<config hash>/ with checkpoints: a killed
run resumes, a finished run only re-samples."""


@dataclasses.dataclass
class DataSchema:
    """``data``: which images and how they are split."""

    name: str = "digits"
    test_fraction: float = 0.2
    split_seed: int = 0


@dataclasses.dataclass
class ObjectiveSchema:
    """``objective``: the training noise schedule and prediction target."""

    schedule_type: str = "cosine"
    num_train_timesteps: int = 1000
    prediction_type: str = "epsilon"


@dataclasses.dataclass
class SamplerSchema:
    """``sampler``: how the trained model is sampled for the report."""

    method: str = "ddim"
    num_inference_steps: int = 50
    num_samples: int = 400


def schema() -> type:
    """The app's structured config (a dataclass).

    ``model`` is a HighResModelConfig, ``training`` a TrainingConfig, the other groups
    the schemas above.
    """
    from jaxdiff.nets.config import HighResModelConfig
    from jaxdiff.train.config import TrainingConfig

    parts = {
        "model": schema_from(HighResModelConfig, "ModelSchema"),
        "training": schema_from(TrainingConfig, "TrainingSchema"),
        "data": DataSchema,
        "objective": ObjectiveSchema,
        "sampler": SamplerSchema,
    }
    fields = [(k, v, dataclasses.field(default_factory=v)) for k, v in parts.items()]
    fields.append(("output_dir", str, dataclasses.field(default="outputs")))
    return dataclasses.make_dataclass("TrainSchema", fields)


def compose(overrides: list[str], config_name: str = "config") -> dict:
    """The composed, schema-checked ``train`` config (a plain dict); ConfigError if bad."""
    return compose_config("train", overrides, config_name, schema())


def add_parser(subparsers, parents=()):
    """Register ``jaxdiff train`` on an argparse sub-parser set; returns its parser."""
    import argparse

    parser = subparsers.add_parser(
        "train",
        help="train a small DDPM on scikit-learn's digits (Hydra overrides)",
        description=DESCRIPTION,
        epilog=help_epilog("train"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=list(parents),
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. training=quick")
    return parser


def run(args) -> int:
    """Check the whole config, then train, sample and report; returns the exit code."""
    from jaxdiff.cli.app import run_app

    return run_app(
        "train",
        args,
        compose=compose,
        prepare=prepare,
        execute=train_and_sample,
        files=("samples.png", "loss.png", "metrics.json"),
    )


def prepare(cfg: dict) -> dict:
    """Build every library object of ``cfg`` before any work; ConfigError naming the key.

    Returns ``{"model_cfg", "training", "sched_cfg", "objective", "manager", "method",
    "num_samples", "run_dir"}``; ``run_dir`` is where the run will go (not created yet).
    """
    from jaxdiff._validation import check_choice, check_int_range, check_real
    from jaxdiff.samplers.config import SamplingConfig, SamplingMethod
    from jaxdiff.samplers.manager import AdvancedSamplingManager
    from jaxdiff.schedules.config import NoiseSchedulerConfig, build_schedule
    from jaxdiff.train import DenoisingObjective, TrainingConfig, config_hash

    data, obj, smp = cfg["data"], cfg["objective"], cfg["sampler"]
    with checking("model", cfg["model"]):
        model_cfg = _model_config(cfg["model"])
    with checking("training", cfg["training"]):
        training = TrainingConfig(**cfg["training"])
    with checking("data", data):
        check_choice("name", data["name"], ["digits"])
        check_real("test_fraction", data["test_fraction"], 0.0, strict=True)
        if data["test_fraction"] >= 1:
            raise ValueError(f"test_fraction={data['test_fraction']} must be < 1")
        check_int_range("split_seed", data["split_seed"], 0)
    with checking("objective", obj):
        sched_cfg = NoiseSchedulerConfig(
            schedule_type=obj["schedule_type"], num_train_timesteps=obj["num_train_timesteps"]
        )
        objective = DenoisingObjective.create(build_schedule(sched_cfg), obj["prediction_type"])
    with checking("sampler", smp):
        check_int_range("num_samples", smp["num_samples"], 1, 100_000)
        smp_cfg = SamplingConfig(
            method=smp["method"],
            num_inference_steps=smp["num_inference_steps"],
            prediction_type=obj["prediction_type"],
        )
        manager = AdvancedSamplingManager(sched_cfg, smp_cfg)
        method = SamplingMethod.parse(smp["method"]).value
    root = check_output_dir(cfg["output_dir"])
    run_dir = root / config_hash(dataclasses.asdict(model_cfg), data, obj)
    return {
        "model_cfg": model_cfg,
        "training": training,
        "sched_cfg": sched_cfg,
        "objective": objective,
        "manager": manager,
        "method": method,
        "num_samples": smp["num_samples"],
        "run_dir": run_dir,
    }


def _model_config(model: dict):
    from jaxdiff.nets import HighResModelConfig

    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()}
    return HighResModelConfig(**tuples)


def train_and_sample(cfg: dict, job: dict | None = None, log=None) -> dict:
    """Run the whole job for a composed config; returns ``{"run_dir", "metrics"}``.

    Args:
      cfg: the composed config (:func:`compose`).
      job: :func:`prepare`'s result for ``cfg`` (built here when None).
      log: called with one line per phase (see :class:`~jaxdiff.cli.console.Console`).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdiff.data.digits import load_digits
    from jaxdiff.nets import UNet, bind
    from jaxdiff.train import array_batches, fit, run_directory

    say = log or (lambda message: None)
    job = prepare(cfg) if job is None else job
    model_cfg, training, manager = job["model_cfg"], job["training"], job["manager"]
    data_cfg = cfg["data"]
    run_dir = run_directory(
        cfg["output_dir"], dataclasses.asdict(model_cfg), data_cfg, cfg["objective"]
    )
    say(f"config {run_dir.name}: run directory {run_dir}")
    split = {"test_fraction": data_cfg["test_fraction"], "seed": data_cfg["split_seed"]}
    train_x, train_y = load_digits("train", **split)
    test_x, test_y = load_digits("test", **split)
    say(f"digits: {len(train_x)} training and {len(test_x)} held-out images")
    module = UNet(model_cfg)
    key = jax.random.key(training.seed)
    k_init, k_train, k_noise, k_sample = jax.random.split(key, 4)
    say("initialising the UNet (compiling its initialiser)")
    params = jax.jit(module.init)(k_init, jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32))
    batches, steps_per_epoch = array_batches(
        {"x": train_x}, training.batch_size, seed=training.seed
    )
    fitted = fit(
        k_train,
        params["params"],
        bind(module).apply_fn,
        job["objective"],
        batches,
        training,
        run_dir=run_dir,
        steps_per_epoch=steps_per_epoch,
        log=say,
    )

    method, steps = job["method"], manager.sampling_config.num_inference_steps
    say(f"sampling {job['num_samples']} digits with {method}, {steps} steps")
    model = bind(module, fitted.state.ema_params)
    latents = jax.random.normal(k_noise, (job["num_samples"], 8, 8, 1))
    res = manager.sample(model, latents, key=k_sample)
    samples = np.clip(np.asarray(res.samples), -1.0, 1.0)
    say(
        f"sampled in {res.processing_time:.2f}s after {res.compile_time:.1f}s compiling "
        f"({res.num_function_evals} model calls)"
    )
    say("scoring: digit classifier and nearest-neighbour distances")
    metrics = digit_quality(samples, train_x, train_y, test_x, test_y)
    metrics.update(
        steps=int(fitted.state.step),
        sampler=method,
        nfe=int(res.num_function_evals),
        sampling_seconds=float(res.processing_time),
    )
    _write_outputs(run_dir, samples, metrics)
    return {"run_dir": str(run_dir), "metrics": metrics}


def digit_quality(samples, train_x, train_y, test_x, test_y) -> dict:
    """Classifier- and nearest-neighbour-based quality of generated digits (see module)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from jaxdiff.data.digits import digits_to_pixels

    tr, te, gen = (digits_to_pixels(a) for a in (train_x, test_x, samples))
    clf = LogisticRegression(max_iter=2000).fit(tr, train_y)
    proba = clf.predict_proba(gen)
    counts = np.bincount(proba.argmax(1), minlength=10) / len(gen)
    nz = counts[counts > 0]

    def nn_dist(a):
        d2 = (a**2).sum(1)[:, None] + (tr**2).sum(1)[None, :] - 2 * a @ tr.T
        return float(np.sqrt(np.maximum(d2.min(1), 0)).mean())

    return {
        "classifier_accuracy_heldout_real": float(clf.score(te, test_y)),
        "classifier_confidence_generated": float(proba.max(1).mean()),
        "classifier_confidence_heldout_real": float(clf.predict_proba(te).max(1).mean()),
        "class_entropy_generated": float(-(nz * np.log(nz)).sum()),
        "class_entropy_max": float(np.log(10)),
        "nn_distance_generated": nn_dist(gen),
        "nn_distance_heldout_real": nn_dist(te),
        "nn_distance_noise": nn_dist(np.random.default_rng(0).uniform(0, 16, gen.shape)),
    }


def _write_outputs(run_dir: Path, samples, metrics: dict) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxdiff.train import read_metrics

    history = read_metrics(run_dir / "metrics.jsonl")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["step"] for r in history], [r["loss"] for r in history])
    ax.set(xlabel="step", ylabel="loss (epsilon MSE)", yscale="log", title="digits DDPM")
    fig.tight_layout()
    fig.savefig(run_dir / "loss.png", dpi=120)
    plt.close(fig)

    k = int(min(10, np.sqrt(len(samples))))
    cells = np.pad(samples[: k * k, :, :, 0], ((0, 0), (1, 1), (1, 1)), constant_values=-1.0)
    grid = cells.reshape(k, k, 10, 10).transpose(0, 2, 1, 3).reshape(10 * k, 10 * k)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(grid, cmap="gray_r", vmin=-1, vmax=1)
    ax.set_axis_off()
    ax.set_title(f"{metrics['sampler']}, {metrics['nfe']} model calls")
    fig.tight_layout()
    fig.savefig(run_dir / "samples.png", dpi=120)
    plt.close(fig)
    tmp = run_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    tmp.replace(run_dir / "metrics.json")
