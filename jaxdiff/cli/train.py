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

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["add_parser", "compose_config", "config_dir", "run"]


def config_dir(app: str) -> Path:
    """The shipped Hydra config folder of an app (installed wheel or source checkout)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "configs" / app, here.parents[2] / "configs" / app):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no Hydra configs for {app!r} next to the jaxdiff package")


def compose_config(app: str, overrides: list[str], config_name: str = "config"):
    """Hydra's composed config (an OmegaConf DictConfig) of ``config_name`` + ``overrides``."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir(app)), version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


def add_parser(subparsers) -> None:
    """Register ``jaxdiff train`` on an argparse sub-parser set."""
    parser = subparsers.add_parser(
        "train", help="train a small DDPM on scikit-learn's digits (Hydra overrides)"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. training=quick")


def run(args) -> int:
    """Train, sample and report; returns the exit code."""
    from omegaconf import OmegaConf

    cfg = compose_config("train", args.overrides)
    result = train_and_sample(OmegaConf.to_container(cfg, resolve=True))
    print(json.dumps(result["metrics"], indent=2))
    print(f"wrote {result['run_dir']}/samples.png, loss.png, metrics.json")
    return 0


def _model_config(model: dict):
    from jaxdiff.nets import HighResModelConfig

    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()}
    return HighResModelConfig(**tuples)


def train_and_sample(cfg: dict) -> dict:
    """Run the whole job for a plain-dict config; returns ``{"run_dir", "metrics"}``."""
    from jaxdiff.data.digits import load_digits
    from jaxdiff.nets import UNet, bind
    from jaxdiff.samplers.config import SamplingConfig
    from jaxdiff.samplers.manager import AdvancedSamplingManager
    from jaxdiff.schedules.config import NoiseSchedulerConfig, build_schedule
    from jaxdiff.train import (
        DenoisingObjective,
        TrainingConfig,
        array_batches,
        fit,
        run_directory,
    )

    model_cfg = _model_config(cfg["model"])
    data_cfg, obj_cfg, smp = cfg["data"], cfg["objective"], cfg["sampler"]
    training = TrainingConfig(**cfg["training"])
    run_dir = run_directory(cfg["output_dir"], dataclasses.asdict(model_cfg), data_cfg, obj_cfg)

    train_x, train_y = load_digits(
        "train", test_fraction=data_cfg["test_fraction"], seed=data_cfg["split_seed"]
    )
    test_x, test_y = load_digits(
        "test", test_fraction=data_cfg["test_fraction"], seed=data_cfg["split_seed"]
    )
    sched_cfg = NoiseSchedulerConfig(
        schedule_type=obj_cfg["schedule_type"], num_train_timesteps=obj_cfg["num_train_timesteps"]
    )
    objective = DenoisingObjective.create(build_schedule(sched_cfg), obj_cfg["prediction_type"])
    module = UNet(model_cfg)
    key = jax.random.key(training.seed)
    k_init, k_train, k_noise, k_sample = jax.random.split(key, 4)
    params = jax.jit(module.init)(k_init, jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32))
    batches, steps_per_epoch = array_batches(
        {"x": train_x}, training.batch_size, seed=training.seed
    )
    fitted = fit(
        k_train,
        params["params"],
        bind(module).apply_fn,
        objective,
        batches,
        training,
        run_dir=run_dir,
        steps_per_epoch=steps_per_epoch,
    )

    manager = AdvancedSamplingManager(
        sched_cfg,
        SamplingConfig(
            method=smp["method"],
            num_inference_steps=smp["num_inference_steps"],
            prediction_type=obj_cfg["prediction_type"],
        ),
    )
    ema = fitted.state.ema_params
    model = bind(module, ema)
    latents = jax.random.normal(k_noise, (smp["num_samples"], 8, 8, 1))
    res = manager.sample(model, latents, key=k_sample)
    samples = np.clip(np.asarray(res.samples), -1.0, 1.0)

    metrics = digit_quality(samples, train_x, train_y, test_x, test_y)
    metrics.update(
        steps=int(fitted.state.step),
        sampler=smp["method"],
        nfe=int(res.num_function_evals),
        sampling_seconds=float(res.processing_time),
    )
    _write_outputs(run_dir, samples, metrics)
    return {"run_dir": str(run_dir), "metrics": metrics}


def digit_quality(samples, train_x, train_y, test_x, test_y) -> dict:
    """Classifier- and nearest-neighbour-based quality of generated digits (see module)."""
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
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
