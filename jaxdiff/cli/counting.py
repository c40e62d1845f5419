"""``jaxdiff counting``: Counting Flows on count data, trained and evaluated on device.

Configuration is Hydra YAML (``configs/counting``; groups ``bridge`` {skellam,
constrained, reflected}, ``slack_sampler`` {bessel, poisson, constant}, ``model``
{energy_score}, ``dataset`` {poisson_mixture, beta_binomial}, ``training`` {default}),
overridden on the command line as in the original Counting Flows code::

    jaxdiff counting bridge=constrained training.num_iterations=25000 dataset.d=20
    jaxdiff counting --config-name experiment_quick

Each configuration trains in ``<output_dir>/<hash>/`` (:func:`jaxdiff.train.run_directory`;
the hash covers bridge, slack sampler, model and dataset, not the ``training`` group), with
Orbax checkpoints: a killed run resumes where it stopped, a finished run is not trained
again (only re-evaluated), and more ``training.num_iterations`` continue it.

Evaluation draws ``evaluation.num_samples`` fresh pairs ``(x0, x1, context)`` from the
dataset's law (held out: never seen in training), generates ``x0`` from their ``x1`` (and
context) with ``bridge.sample`` in ``evaluation.n_steps`` steps (one ``lax.scan``), and
writes ``metrics.json`` (:func:`jaxdiff.counting.evaluate.sample_quality` plus the
sampler's health ``all_finite`` and ``in_range``), ``loss.png``,
``bridge_marginals.png`` and ``histograms.png``. The constrained bridge is given the
held-out per-feature mean as its target ``mu0``, as the original's constrained sampler is
given its target mean (the aggregate is what that bridge conditions on).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.cli.train import compose_config

__all__ = ["add_parser", "run", "train_and_evaluate", "training_config"]


def add_parser(subparsers) -> None:
    """Register ``jaxdiff counting`` on an argparse sub-parser set."""
    parser = subparsers.add_parser(
        "counting", help="Counting Flows: train and evaluate a count bridge (Hydra overrides)"
    )
    parser.add_argument(
        "--config-name", "-cn", default="config", help="config file in configs/counting"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. bridge=constrained")


def run(args) -> int:
    """Train, evaluate and report; returns the exit code."""
    from omegaconf import OmegaConf

    cfg = compose_config("counting", args.overrides, config_name=args.config_name)
    result = train_and_evaluate(OmegaConf.to_container(cfg, resolve=True))
    print(json.dumps(result["metrics"], indent=2))
    print(f"wrote {result['run_dir']}/metrics.json, loss.png, bridge_marginals.png, histograms.png")
    return 0


def training_config(training: dict):
    """The :class:`~jaxdiff.train.TrainingConfig` of the ``training`` group.

    ``num_iterations`` (the original's name) is the number of optimiser steps.
    """
    from jaxdiff.train import TrainingConfig

    kwargs = dict(training)
    if "num_iterations" in kwargs:
        kwargs["num_steps"] = kwargs.pop("num_iterations")
    return TrainingConfig(**kwargs)


def _build_model(model_cfg: dict, delta: bool):
    from jaxdiff.counting.energy import EnergyScorePosterior

    arch = {k: v for k, v in model_cfg.items() if k not in ("m_samples", "lambda_energy")}
    return EnergyScorePosterior(residual=not delta, **arch)


def train_and_evaluate(cfg: dict) -> dict:
    """Run the whole job for a plain-dict config; returns ``{"run_dir", "metrics"}``."""
    from jaxdiff.counting.energy import EnergyScoreObjective, posterior_sampler
    from jaxdiff.counting.evaluate import sample_quality
    from jaxdiff.counting.factory import build_bridge, build_dataset
    from jaxdiff.nets import bind
    from jaxdiff.train import fit, run_directory

    dataset = build_dataset(cfg["dataset"])
    bridge = build_bridge(cfg["bridge"], cfg["slack_sampler"])
    model_cfg = cfg["model"]
    module = _build_model(model_cfg, bridge.delta)
    noise_dim = module.noise_dim
    objective = EnergyScoreObjective.create(
        bridge,
        noise_dim=noise_dim,
        m_samples=model_cfg["m_samples"],
        lambda_energy=model_cfg["lambda_energy"],
    )
    apply_fn = bind(module).apply_fn
    training = training_config(cfg["training"])
    bridge_cfg = {"bridge": cfg["bridge"], "slack_sampler": cfg["slack_sampler"]}
    run_dir = run_directory(cfg["output_dir"], model_cfg, cfg["dataset"], bridge_cfg)

    k_init, k_train = jax.random.split(jax.random.key(training.seed))
    cond = jnp.zeros((1, dataset.context_dim)) if dataset.context_dim else None
    x = jnp.zeros((1, dataset.d), jnp.int32)
    ctx = {"noise": jnp.zeros((1, noise_dim)), "condition": cond}
    params = jax.jit(module.init)(k_init, x, jnp.zeros((1,)), ctx)["params"]
    batches, steps_per_epoch = dataset.batches(training.batch_size, seed=training.seed)
    fitted = fit(
        k_train,
        params,
        apply_fn,
        objective,
        batches,
        training,
        run_dir=run_dir,
        steps_per_epoch=steps_per_epoch,
    )

    ev = cfg["evaluation"]
    k_data, k_gen, k_plot = jax.random.split(jax.random.key(ev["seed"]), 3)
    held = dataset.sample(k_data, ev["num_samples"])
    extra = {"context": held.get("context")}
    if cfg["bridge"]["type"] == "constrained":
        extra["mu0"] = jnp.mean(held["x"].astype(jnp.float32), axis=0)

    def generate(key, params):
        model = posterior_sampler(apply_fn, params, noise_dim=noise_dim)
        return bridge.sample(key, held["x1"], model, ev["n_steps"], **extra)

    out = jax.jit(generate)(k_gen, fitted.state.ema_params)
    generated = np.asarray(out.samples)
    metrics = sample_quality(generated, held["x"], source=held["x1"])
    metrics.update(
        all_finite=bool(out.all_finite),
        in_range=bool(out.in_range),
        steps=int(fitted.state.step),
        trained_steps_this_call=int(fitted.state.step) - fitted.start_step,
        bridge=cfg["bridge"]["type"],
        slack_sampler=cfg["slack_sampler"]["type"],
        n_steps=int(ev["n_steps"]),
        num_samples=int(ev["num_samples"]),
    )
    _write_outputs(run_dir, bridge, k_plot, held, generated, metrics)
    return {"run_dir": str(run_dir), "metrics": metrics}


def _write_outputs(run_dir: Path, bridge, key, held, generated, metrics: dict) -> None:
    from jaxdiff.counting.plots import plot_bridge_marginals, plot_histograms, plot_loss
    from jaxdiff.train import read_metrics

    plot_loss(read_metrics(run_dir / "metrics.jsonl"), run_dir / "loss.png")
    plot_bridge_marginals(bridge, key, held["x"], held["x1"], run_dir / "bridge_marginals.png")
    plot_histograms(generated, held["x"], run_dir / "histograms.png", source=held["x1"])
    tmp = run_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    tmp.replace(run_dir / "metrics.json")
