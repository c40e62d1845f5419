"""``jaxdiff train``: Hydra composition, config-hash run directories, resume, outputs."""

import json

import numpy as np
import pytest

from jaxdiff.cli.config import ConfigError
from jaxdiff.cli.main import main
from jaxdiff.cli.train import compose, digit_quality
from jaxdiff.data.digits import digits_to_pixels, load_digits
from jaxdiff.train import run_directory


def test_hydra_overrides_and_run_directory_hash(tmp_path):
    base = compose([f"output_dir={tmp_path}"])
    quick = compose(["training=quick", "training.learning_rate=0.01"])
    wider = compose(["model.base_channels=64"])
    assert quick["training"]["num_steps"] == 20 and quick["training"]["learning_rate"] == 0.01
    assert wider["model"]["base_channels"] == 64

    def run_dir(cfg):
        return run_directory(tmp_path, cfg["model"], cfg["data"], cfg["objective"])

    # training-only settings do not change the run; the model does
    assert run_dir(base) == run_dir(quick)
    assert run_dir(base) != run_dir(wider)
    with pytest.raises(ConfigError, match="nonexistent"):
        compose(["training=nonexistent"])


def test_train_quick_writes_outputs_and_resumes(tmp_path, capsys):
    args = [
        "train",
        "training=quick",
        "sampler.num_inference_steps=10",
        "sampler.num_samples=64",
        f"output_dir={tmp_path}",
    ]
    assert main(args) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    for name in ("samples.png", "loss.png", "metrics.json", "metrics.jsonl", "config.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 20 and metrics["nfe"] == 10
    assert 0.9 < metrics["classifier_accuracy_heldout_real"] <= 1.0
    out = capsys.readouterr().out
    for phase in ("training 20 steps from scratch", "compiling the train step", "step 20/20"):
        assert phase in out, (phase, out)
    # a finished run is not trained again: the same directory, the same step, re-sampled
    assert main(args) == 0
    assert "run already finished" in capsys.readouterr().out
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == [run]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 20
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [10, 20]


def test_digits_split_and_quality_figures():
    train_x, train_y = load_digits("train")
    test_x, test_y = load_digits("test")
    assert train_x.shape[1:] == (8, 8, 1) and len(train_x) + len(test_x) == 1797
    assert train_x.min() >= -1 and train_x.max() <= 1
    np.testing.assert_allclose(digits_to_pixels(test_x).max(), 16.0)
    # held-out real digits score as real; uniform noise does not
    real = digit_quality(test_x[:200], train_x, train_y, test_x, test_y)
    noise = np.random.default_rng(0).uniform(-1, 1, (200, 8, 8, 1))
    fake = digit_quality(noise, train_x, train_y, test_x, test_y)
    assert real["nn_distance_generated"] == pytest.approx(real["nn_distance_heldout_real"], rel=0.2)
    assert fake["nn_distance_generated"] > 2 * real["nn_distance_generated"]
    assert real["class_entropy_generated"] > 2.0
    with pytest.raises(ValueError, match="split"):
        load_digits("validation")
