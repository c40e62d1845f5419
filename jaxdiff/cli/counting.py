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

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

from jaxdiff._atomic import atomic_write_text
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
    "prepare",
    "run",
    "schema",
    "train_and_evaluate",
    "training_config",
]

DESCRIPTION = """Counting Flows on count data: train an energy-score posterior for a Skellam
birth-death bridge, then generate held-out counts and score them. Configuration: Hydra
YAML in configs/counting, overridden as key=value (bridge=constrained dataset.d=20
training.num_iterations=25000). Each configuration trains in <output_dir>/<config hash>/
with checkpoints: a killed run resumes, a finished run is only re-evaluated."""

_RENAME = {"num_steps": "num_iterations"}


@dataclasses.dataclass
class ModelSchema:
    """``model``: the energy-score posterior MLP and its objective."""

    hidden_dim: int = 128
    depth: int = 3
    noise_dim: int = 16
    log1p_inputs: bool = False
    time_features: int = 0
    m_samples: int = 16
    lambda_energy: float = 1.0


@dataclasses.dataclass
class EvaluationSchema:
    """``evaluation``: held-out pairs, reverse-bridge steps and their seed."""

    num_samples: int = 4000
    n_steps: int = 30
    seed: int = 1


def schema() -> type:
    """The app's structured config (a dataclass).

    ``training`` is a TrainingConfig (``num_steps`` named ``num_iterations``);
    ``bridge``, ``slack_sampler`` and ``dataset`` may hold the keys of any of their
    types (the weight-schedule options ``concentration`` and ``steepness`` for a
    bridge); :mod:`jaxdiff.counting.factory` checks them per ``type``.
    """
    from jaxdiff.counting.factory import BRIDGES, DATASETS, SLACK_SAMPLERS
    from jaxdiff.train.config import TrainingConfig

    def group(registry, extra=()):
        keys = {"type", *extra}
        for name in registry.names():
            params = inspect.signature(registry.get(name)).parameters.values()
            keys |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        keys.discard("slack_sampler")  # a bridge's slack sampler is its own group
        meta = {"keys": sorted(keys)}
        return dict[str, Any], dataclasses.field(default_factory=dict, metadata=meta)

    training = schema_from(TrainingConfig, "CountingTrainingSchema", rename=_RENAME)
    fields = [
        ("bridge", *group(BRIDGES, extra=("concentration", "steepness"))),
        ("slack_sampler", *group(SLACK_SAMPLERS)),
        ("model", ModelSchema, dataclasses.field(default_factory=ModelSchema)),
        ("dataset", *group(DATASETS)),
        ("training", training, dataclasses.field(default_factory=training)),
        ("evaluation", EvaluationSchema, dataclasses.field(default_factory=EvaluationSchema)),
        ("output_dir", str, dataclasses.field(default="outputs")),
    ]
    return dataclasses.make_dataclass("CountingSchema", fields)


def compose(overrides: list[str], config_name: str = "config") -> dict:
    """The composed, schema-checked ``counting`` config (a plain dict); ConfigError if bad."""
    return compose_config("counting", overrides, config_name, schema())


def add_parser(subparsers, parents=()):
    """Register ``jaxdiff counting`` on an argparse sub-parser set; returns its parser."""
    import argparse

    parser = subparsers.add_parser(
        "counting",
        help="Counting Flows: train and evaluate a count bridge (Hydra overrides)",
        description=DESCRIPTION,
        epilog=help_epilog("counting"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=list(parents),
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. bridge=constrained")
    return parser


def run(args) -> int:
    """Check the whole config, then train, evaluate and report; returns the exit code."""
    from jaxdiff.cli.app import run_app

    return run_app(
        "counting",
        args,
        compose=compose,
        prepare=prepare,
        execute=train_and_evaluate,
        files=("metrics.json", "loss.png", "bridge_marginals.png", "histograms.png"),
    )


def training_config(training: dict):
    """The :class:`~jaxdiff.train.TrainingConfig` of the ``training`` group.

    ``num_iterations`` (the original's name) is the number of optimiser steps.
    """
    from jaxdiff.train import TrainingConfig

    kwargs = dict(training)
    if "num_iterations" in kwargs:
        kwargs["num_steps"] = kwargs.pop("num_iterations")
    return TrainingConfig(**kwargs)


def prepare(cfg: dict) -> dict:
    """Build every library object of ``cfg`` before any work; ConfigError naming the key.

    Returns ``{"dataset", "bridge", "module", "objective", "training", "run_dir"}``;
    ``run_dir`` is where the run will go (not created yet).
    """
    from jaxdiff._validation import check_int_range
    from jaxdiff.counting.checks import check_n_steps
    from jaxdiff.counting.energy import EnergyScoreObjective
    from jaxdiff.counting.factory import build_bridge, build_dataset
    from jaxdiff.train import config_hash

    with checking("dataset", cfg["dataset"]):
        dataset = build_dataset(cfg["dataset"])
    with checking("bridge", cfg["bridge"]):
        bridge = build_bridge(cfg["bridge"], cfg["slack_sampler"])
    model_cfg = cfg["model"]
    with checking("model", model_cfg):
        module = _build_model(model_cfg, bridge.delta)
        objective = EnergyScoreObjective.create(
            bridge,
            noise_dim=module.noise_dim,
            m_samples=model_cfg["m_samples"],
            lambda_energy=model_cfg["lambda_energy"],
        )
    with checking("training", cfg["training"], _RENAME):
        training = training_config(cfg["training"])
    ev = cfg["evaluation"]
    with checking("evaluation", ev):
        check_int_range("num_samples", ev["num_samples"], 1, 10**6)
        check_n_steps(ev["n_steps"], (ev["num_samples"], dataset.d), False)
        check_int_range("seed", ev["seed"], 0)
    root = check_output_dir(cfg["output_dir"])
    bridge_cfg = {"bridge": cfg["bridge"], "slack_sampler": cfg["slack_sampler"]}
    run_dir = root / config_hash(model_cfg, cfg["dataset"], bridge_cfg)
    return {
        "dataset": dataset,
        "bridge": bridge,
        "module": module,
        "objective": objective,
        "training": training,
        "run_dir": run_dir,
    }


def _build_model(model_cfg: dict, delta: bool):
    from jaxdiff.counting.energy import EnergyScorePosterior

    arch = {k: v for k, v in model_cfg.items() if k not in ("m_samples", "lambda_energy")}
    return EnergyScorePosterior(residual=not delta, **arch)


def train_and_evaluate(cfg: dict, job: dict | None = None, log=None) -> dict:
    """Run the whole job for a composed config; returns ``{"run_dir", "metrics"}``.

    Args:
      cfg: the composed config (:func:`compose`).
      job: :func:`prepare`'s result for ``cfg`` (built here when None).
      log: called with one line per phase (see :class:`~jaxdiff.cli.console.Console`).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdiff.counting.energy import posterior_sampler
    from jaxdiff.counting.evaluate import sample_quality
    from jaxdiff.nets import bind
    from jaxdiff.train import fit, run_directory

    say = log or (lambda message: None)
    job = prepare(cfg) if job is None else job
    dataset, bridge, module = job["dataset"], job["bridge"], job["module"]
    training = job["training"]
    noise_dim = module.noise_dim
    apply_fn = bind(module).apply_fn
    bridge_cfg = {"bridge": cfg["bridge"], "slack_sampler": cfg["slack_sampler"]}
    run_dir = run_directory(cfg["output_dir"], cfg["model"], cfg["dataset"], bridge_cfg)
    say(f"config {run_dir.name}: run directory {run_dir}")
    say(f"dataset {cfg['dataset']['type']}: {dataset.d} features")

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
        job["objective"],
        batches,
        training,
        run_dir=run_dir,
        steps_per_epoch=steps_per_epoch,
        log=say,
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

    say(f"generating {ev['num_samples']} held-out samples in {ev['n_steps']} bridge steps")
    out = jax.jit(generate)(k_gen, fitted.state.ema_params)
    generated = np.asarray(out.samples)
    say("scoring: energy distance, moments; plotting")
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
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
