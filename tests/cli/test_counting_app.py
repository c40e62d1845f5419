"""``jaxdiff counting``: Hydra composition, config-hash run directories, resume, outputs."""

import json

import numpy as np
import pytest

from jaxdiff.cli.counting import compose, training_config
from jaxdiff.cli.main import main
from jaxdiff.counting import ConstrainedSkellamBridge, PoissonMixtureDataset, SkellamBridge
from jaxdiff.counting.factory import build_bridge, build_dataset, build_slack
from jaxdiff.train import run_directory

TINY = [
    "dataset.size=256",
    "dataset.d=3",
    "model.hidden_dim=16",
    "model.m_samples=4",
    "training.num_iterations=6",
    "training.batch_size=32",
    "training.log_interval=3",
    "training.checkpoint_interval=3",
    "evaluation.num_samples=64",
    "evaluation.n_steps=4",
]


def _cfg(overrides, name="config"):
    return compose(overrides, config_name=name)


def _run_dir(root, cfg):
    bridge = {"bridge": cfg["bridge"], "slack_sampler": cfg["slack_sampler"]}
    return run_directory(root, cfg["model"], cfg["dataset"], bridge)


def test_overrides_as_in_the_original_and_the_hash(tmp_path):
    cfg = _cfg(["bridge=constrained", "training.num_iterations=25000", "dataset.d=20"])
    assert cfg["bridge"]["type"] == "constrained"
    assert cfg["dataset"]["d"] == 20
    assert training_config(cfg["training"]).num_steps == 25000
    assert isinstance(build_bridge(cfg["bridge"], cfg["slack_sampler"]), ConstrainedSkellamBridge)

    base = _cfg([])
    longer = _cfg(["training.num_iterations=99", "training.learning_rate=0.01"])
    other = _cfg(["bridge.schedule_type=cosine"])
    # training-only settings keep the run directory; bridge, model and data change it
    assert _run_dir(tmp_path, base) == _run_dir(tmp_path, longer)
    assert _run_dir(tmp_path, base) != _run_dir(tmp_path, other)
    assert _run_dir(tmp_path, base) != _run_dir(tmp_path, _cfg(["model.hidden_dim=32"]))
    assert _run_dir(tmp_path, base) != _run_dir(tmp_path, _cfg(["slack_sampler=poisson"]))

    quick = _cfg([], name="experiment_quick")
    assert quick["training"]["num_iterations"] < base["training"]["num_iterations"]
    assert quick["bridge"] == base["bridge"]


def test_factory_builds_and_rejects():
    bridge = build_bridge(
        {"type": "skellam", "schedule_type": "cosine"}, {"type": "constant", "m": 2}
    )
    assert isinstance(bridge, SkellamBridge) and bridge.schedule_type == "cosine"
    ds = build_dataset({"type": "poisson_mixture", "size": 50, "d": 2, "multiplier_range": [1, 2]})
    assert isinstance(ds, PoissonMixtureDataset) and ds.x0.shape == (50, 2)
    with pytest.raises(ValueError, match="slack_sampler.type"):
        build_slack({"type": "gamma"})
    with pytest.raises(ValueError, match="unknown keys"):
        build_slack({"type": "bessel", "lam_p": 1.0, "lam_m": 1.0, "lam_x": 3})
    with pytest.raises(ValueError, match="'type'"):
        build_dataset({"size": 3})


OUTPUTS = ("loss.png", "bridge_marginals.png", "histograms.png", "metrics.json", "metrics.jsonl")


def _single_run(root):
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    for name in (*OUTPUTS, "config.json"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints").is_dir()
    metrics = json.loads((run / "metrics.json").read_text())
    for name in ("energy_distance", "energy_distance_floor", "mean_abs_error", "var_rel_error"):
        assert np.isfinite(metrics[name]), name
    assert metrics["all_finite"] is True and metrics["in_range"] is True  # sampler health
    return run, metrics


def test_run_writes_outputs_resumes_and_skips(tmp_path):
    args = ["counting", f"output_dir={tmp_path}", *TINY]
    assert main(args) == 0
    run, metrics = _single_run(tmp_path)
    assert metrics["steps"] == 6 and metrics["trained_steps_this_call"] == 6
    assert metrics["bridge"] == "skellam"
    # finished: the same directory, nothing trained again
    assert main(args) == 0
    assert _single_run(tmp_path)[1]["trained_steps_this_call"] == 0
    # more iterations continue the same run from its checkpoint
    assert main([*args, "training.num_iterations=9"]) == 0
    again = _single_run(tmp_path)[1]
    assert again["steps"] == 9 and again["trained_steps_this_call"] == 3
    steps = [json.loads(s)["step"] for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6, 9]


def test_constrained_run_hits_the_target_means(tmp_path):
    assert main(["counting", "bridge=constrained", f"output_dir={tmp_path}", *TINY]) == 0
    _, metrics = _single_run(tmp_path)
    assert metrics["bridge"] == "constrained" and metrics["steps"] == 6
    # the constrained sampler is given the held-out column means: they are met exactly
    # (up to rounding the totals), however little the model has been trained
    assert metrics["mean_abs_error"] <= 1.0 / metrics["num_samples"] + 1e-6
