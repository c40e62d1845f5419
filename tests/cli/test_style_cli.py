"""``jaxdiff style``: train (Hydra, resume), transfer (file, folder, round trip), preprocess."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from jaxdiff.cli.config import ConfigError
from jaxdiff.cli.main import main
from jaxdiff.cli.run_checkpoint import TrainCheckpoint, restore_train_params
from jaxdiff.cli.style import compose, prepare
from jaxdiff.cli.style_transfer import read_card, transfer_latents
from jaxdiff.data.digit_styles import digit_styles
from jaxdiff.data.style_folders import read_image, write_style_folders
from jaxdiff.flows import load_latents

QUICK = ["style", "train", "--config-name", "experiment_quick"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The quick config trained once (100 steps, checkpoints at 50 and 100)."""
    root = tmp_path_factory.mktemp("style_runs")
    assert main([*QUICK, f"output_dir={root}"]) == 0
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
    return root, run_dir


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """16 held-out digits in both styles as ``raw/style_0``, ``raw/style_1`` (8-bit PNG)."""
    d = digit_styles("test", paired=True)
    n = len(d.styles) // 2
    idx = np.r_[0:16, n : n + 16]
    return write_style_folders(tmp_path_factory.mktemp("raw") / "raw", d.images[idx], d.styles[idx])


def _error(capsys, argv):
    """``main(argv)``'s exit code and its one stderr line."""
    capsys.readouterr()
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    return code, lines[-1] if lines else ""


def test_config_fields_hash_and_checks(tmp_path, capsys):
    cfg = compose([])
    assert (cfg["model"]["hidden_dim"], cfg["model"]["num_layers"]) == (384, 12)
    assert cfg["model"]["num_styles"] == 2 and cfg["training"]["batch_size"] == 64
    assert cfg["training"]["lr"] == 1e-4 and cfg["training"]["stage1_epochs"] == 200
    assert cfg["training"]["label_drop_prob"] == 0.15
    job = prepare(cfg)
    assert job["training"].learning_rate == 1e-4 and job["training"].epochs == 200
    assert job["objective"].coupling == "exact" and job["objective"].class_conditional
    assert job["objective"].num_classes == 2 and job["objective"].label_drop_prob == 0.15
    # training-only settings keep the run directory; model, data and objective change it
    same = prepare(compose(["training.lr=3e-4", "training.label_drop_prob=0.1"]))
    assert same["run_dir"] == job["run_dir"]
    for other in ("model.hidden_dim=256", "objective.class_conditional=false", "data.sigma=1.0"):
        assert prepare(compose([other]))["run_dir"] != job["run_dir"]
    with pytest.raises(ConfigError, match="did you mean 'model.hidden_dim'"):
        compose(["model.hidden_dimm=3"])
    bad = {
        "data.source=folder": "data.root",
        "model.num_styles=3": "model.num_styles=2",
        "model.groups=5": "model.groups",
        "training.label_drop_prob=1.0": "training.label_drop_prob",
        "training.lr=-1": "training.lr",
        "objective.coupling=independent": "objective.class_conditional",
        "data.latents=vae": "data.vae",
    }
    for override, needle in bad.items():
        code, line = _error(capsys, ["style", "train", f"output_dir={tmp_path}", override])
        assert code == 2 and needle in line, (override, line)
    assert not any(tmp_path.iterdir())  # checked before any work
    assert main(["style", "train", "--cfg", "job", "training.lr=0.5"]) == 0
    assert "lr: 0.5" in capsys.readouterr().out


def test_train_writes_outputs_skips_and_resumes(run):
    root, run_dir = run
    for name in ("style_model.json", "loss.png", "metrics.json", "config.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == metrics["trained_steps_this_call"] == 100
    assert metrics["steps_per_epoch"] == 1438 // 32
    log = [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [25, 50, 75, 100]
    assert metrics["final_loss"] == log[-1]["loss"] < log[0]["loss"]
    # finished: not trained again
    assert main([*QUICK, f"output_dir={root}"]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["trained_steps_this_call"] == 0
    # killed after the checkpoint at step 50: resumes there, ends bit-identical
    shutil.rmtree(run_dir / "checkpoints" / "100")
    assert main([*QUICK, f"output_dir={root}"]) == 0
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again["steps"] == 100 and again["trained_steps_this_call"] == 50
    assert again["final_loss"] == metrics["final_loss"]


def _pixels(path):
    return read_image(path, None) * 2.0 - 1.0


def test_transfer_a_file_and_a_folder_to_the_other_style(run, digits, tmp_path, capsys):
    _, run_dir = run
    base = ["style", "transfer", "--checkpoint", str(run_dir), "--num-steps", "20"]
    src = digits / "style_1" / "000016.png"
    out = tmp_path / "one.png"
    argv = [*base, "--input", str(src), "--source-style", "1", "--target-style", "0"]
    assert main([*argv, "--output", str(out), "--solver", "rk4"]) == 0
    assert "NFE 80 invert + 80 generate = 160" in capsys.readouterr().out
    assert _pixels(out).shape == (8, 8, 1) and _pixels(out).mean() < 0  # style 0: dark
    folder = tmp_path / "folder"
    argv = [*base, "--input", str(digits / "style_0"), "--output", str(folder)]
    assert main([*argv, "--source-style", "0", "--target-style", "1", "--solver", "heun"]) == 0
    written = sorted(folder.iterdir())
    assert [p.name for p in written] == sorted(p.name for p in (digits / "style_0").iterdir())
    # 100 steps in, the contrast (style 0 mean <= -0.154 < 0.154 <= style 1) has flipped
    assert np.mean([_pixels(p).mean() > 0 for p in written]) >= 0.9


def test_invert_then_generate_under_one_style_returns_the_input(run, digits, tmp_path):
    _, run_dir = run
    card, module, step_dir = read_card(run_dir)
    params = restore_train_params(TrainCheckpoint(run_dir, step_dir, int(step_dir.name)))
    x = np.stack([_pixels(p) for p in sorted((digits / "style_0").iterdir())]).astype(np.float32)
    z, y, nfe, _, _ = transfer_latents(module, params, x, 0, 0, solver="rk4", num_steps=20)
    assert nfe == 160 and 0.8 < z.std() < 1.3  # a noise code, not the image (std 0.75)
    # measured: max |y - x| = 3.6e-7 (float32 round-off); euler x 10: 0.15
    assert np.abs(y - x).max() < 1e-4
    _, y_euler, *_ = transfer_latents(module, params, x, 0, 0, solver="euler", num_steps=10)
    assert np.abs(y_euler - x).max() > 100 * np.abs(y - x).max()
    # through the command and 8-bit PNGs: every pixel comes back exactly
    src, out = digits / "style_0" / "000000.png", tmp_path / "same.png"
    argv = ["style", "transfer", "--checkpoint", str(run_dir), "--input", str(src)]
    assert main([*argv, "--output", str(out), "--source-style", "0", "--target-style", "0"]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(src)))


def test_bad_transfer_inputs_fail_in_one_line_and_write_nothing(run, digits, tmp_path, capsys):
    _, run_dir = run
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really")
    mixed = tmp_path / "mixed"
    shutil.copytree(digits / "style_0", mixed)
    shutil.copy(tmp_path / "corrupt.png", mixed / "zzz.png")
    good = str(digits / "style_0" / "000000.png")
    out = tmp_path / "out"
    cases = {
        ("--source-style", "2"): "--source-style 2 is not a style of this model; allowed: 0..1",
        ("--target-style", "-1"): "--target-style -1 is not a style of this model",
        ("--checkpoint", str(tmp_path / "nowhere")): "--checkpoint",
        ("--checkpoint", str(digits)): "not a `jaxdiff style train` run directory",
        (
            "--input",
            str(tmp_path / "big.png"),
        ): "(16, 16, 1); the model at --checkpoint takes (8, 8, 1)",
        (
            "--input",
            str(tmp_path / "rgb.png"),
        ): "(8, 8, 3); the model at --checkpoint takes (8, 8, 1)",
        ("--input", str(tmp_path / "corrupt.png")): "not a readable image file",
        ("--input", str(mixed)): "zzz.png: not a readable image file",
        ("--solver", "rk5"): "--solver 'rk5' is unknown; allowed: euler, midpoint, heun, rk4",
        ("--num-steps", "0"): "--num-steps=0 is out of range",
    }
    for (flag, value), needle in cases.items():
        args = {
            "--checkpoint": str(run_dir),
            "--input": good,
            "--source-style": "0",
            "--target-style": "1",
            "--output": str(out / "x.png"),
            flag: value,
        }
        if flag == "--input" and value == str(mixed):
            args["--output"] = str(out)
        argv = ["style", "transfer", *[s for item in args.items() for s in item]]
        code, line = _error(capsys, argv)
        assert code == 2 and line.startswith("jaxdiff style: error: ") and needle in line, line
        assert flag in line or flag == "--input", line
        assert not out.exists()


def test_preprocess_writes_a_loadable_file(digits, tmp_path, capsys):
    out = tmp_path / "latents.npz"
    assert main(["style", "preprocess", "--input", str(digits), "--output", str(out)]) == 0
    latents = load_latents(out)
    assert latents.latents.shape == (32, 8, 8, 1) and latents.metadata["encoder"] == "pixels"
    assert np.array_equal(latents.labels, np.repeat([0, 1], 16))
    assert np.allclose(latents.latents[0], _pixels(digits / "style_0" / "000000.png"))
    code, line = _error(
        capsys, ["style", "preprocess", "--input", str(digits), "--output", str(out)]
    )
    assert code == 2 and "--output" in line and "exists" in line
    missing = ["style", "preprocess", "--input", str(tmp_path / "nowhere"), "--output", "x.npz"]
    code, line = _error(capsys, missing)
    assert code == 2 and "--input" in line and "not a directory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latents.npz"]
