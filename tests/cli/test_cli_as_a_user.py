"""The command line as a user meets it (issue 13): each case runs the real console entry
point in a subprocess and checks the exit code, the one line printed, and that nothing
was written where it must not be."""

import os
import subprocess
import sys
import time

import pytest

from jaxdiff.cli.counting import compose as compose_counting
from jaxdiff.cli.train import compose as compose_train
from tests.cli.test_counting_app import TINY as TINY_COUNTING

CLI = [sys.executable, "-m", "jaxdiff.cli.main"]


def _run(args, cwd, env=None):
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def _one_line_error(proc, app, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"jaxdiff {app}: error: "), lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize(
    "overrides, needles",
    [
        (["sampler.method=dpm_solverr"], ["sampler.method", "did you mean 'dpm_solver'"]),
        (["sampler.num_inference_steps=0"], ["sampler.num_inference_steps=0"]),
        (["+trainin.num_steps=5"], ["'trainin.num_steps'", "did you mean 'training.num_steps'"]),
        (["trainin.num_steps=5"], ["did you mean 'training.num_steps'"]),
        (["+training.num_stepz=5"], ["did you mean 'training.num_steps'"]),
        (["training.num_steps=abc"], ["training.num_steps=abc", "Integer"]),
        (["training=quik"], ["did you mean 'quick'", "default"]),
        (["training.batch_size=0"], ["training.batch_size=0"]),
        (["objective.prediction_type=eps"], ["objective.prediction_type"]),
    ],
)
def test_train_checks_the_whole_config_before_any_work(tmp_path, overrides, needles):
    proc = _run(["train", "training=quick", f"output_dir={tmp_path / 'out'}", *overrides], tmp_path)
    _one_line_error(proc, "train", *needles)
    assert _tree(tmp_path) == []  # no run folder, no checkpoint, nothing
    assert "compiling" not in proc.stdout


@pytest.mark.parametrize(
    "overrides, needles",
    [
        (["evaluation.n_steps=0"], ["evaluation.n_steps=0"]),
        # the key as the user typed it, not the library's num_steps
        (["training.num_iterations=0"], ["training.num_iterations=0"]),
        (["bridge.delt=true"], ["bridge.delt", "did you mean 'bridge.delta'"]),
        (["dataset.type=poisson"], ["dataset.type"]),
        (["+evaluaton.seed=3"], ["did you mean 'evaluation.seed'"]),
    ],
)
def test_counting_checks_the_whole_config_before_any_work(tmp_path, overrides, needles):
    proc = _run(
        ["counting", f"output_dir={tmp_path / 'out'}", *TINY_COUNTING, *overrides], tmp_path
    )
    line = _one_line_error(proc, "counting", *needles)
    assert "num_steps" not in line or "num_iterations" not in overrides[0]
    assert _tree(tmp_path) == []


def test_unknown_primary_config_lists_the_available_ones(tmp_path):
    proc = _run(["counting", "--config-name", "experiment_quik"], tmp_path)
    _one_line_error(
        proc, "counting", "experiment_quik", "did you mean 'experiment_quick'", "config"
    )


def test_debug_and_hydra_full_error_show_the_traceback(tmp_path):
    args = ["train", "sampler.method=dpm_solverr"]
    assert "Traceback" in _run([*args, "--debug"], tmp_path).stderr
    assert "Traceback" in _run(args, tmp_path, env={"HYDRA_FULL_ERROR": "1"}).stderr


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--num-samples", "-5"], ["--num-samples=-5"]),
        (["--num-samples", "0"], ["--num-samples=0"]),
        (["--out", "nodir/x.png"], ["nodir"]),
        (["--out", "x.txt"], ["x.txt", ".png"]),
        (["--seed", "-1"], ["--seed=-1"]),
    ],
)
def test_demo_checks_its_arguments_first(tmp_path, args, needles):
    proc = _run(["demo", *args], tmp_path)
    _one_line_error(proc, "demo", *needles)
    assert _tree(tmp_path) == []


def test_counting_prints_every_phase_resumes_and_skips(tmp_path):
    args = ["counting", f"output_dir={tmp_path}", *TINY_COUNTING]
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    start = time.perf_counter()
    first = proc.stdout.readline()
    first_after = time.perf_counter() - start
    rest = proc.stdout.read()
    assert proc.wait(timeout=600) == 0
    # the first line comes before any JAX work (import + config); a generous bound
    assert "checking the config" in first and first_after < 30, (first, first_after)
    phases = [
        "run directory",
        "training 6 steps from scratch",
        "compiling the train step",
        "step 3/6  loss",
        "step 6/6  loss",
        "generating 64 held-out samples in 4 bridge steps",
        "wrote ",
    ]
    positions = [rest.index(p) for p in phases]
    assert positions == sorted(positions), rest
    # a finished run says so; fewer iterations than the checkpoint say they are ignored
    again = _run(args, tmp_path)
    assert again.returncode == 0 and "run already finished" in again.stdout
    fewer = _run([*args, "training.num_iterations=3"], tmp_path)
    assert fewer.returncode == 0 and "is below it: ignored" in fewer.stdout
    more = _run([*args, "training.num_iterations=9"], tmp_path)
    assert "resuming from the checkpoint at step 6 of 9" in more.stdout


def test_version_cfg_info_and_help(tmp_path):
    import jaxdiff

    version = _run(["--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"jaxdiff {jaxdiff.__version__}"
    job = _run(["train", "training=quick", "--cfg", "job"], tmp_path)
    assert job.returncode == 0 and "num_steps: 20" in job.stdout and "sampler:" in job.stdout
    assert _tree(tmp_path) == []
    info = _run(["counting", "--info"], tmp_path)
    assert info.returncode == 0 and "run directory of this config" in info.stdout
    assert "bridge: constrained, reflected, skellam*" in info.stdout
    for app, keys in (("train", "training.{batch_size"), ("counting", "evaluation.{num_samples")):
        text = _run([app, "--help"], tmp_path).stdout
        assert "config groups" in text and keys in text, text
    for app in ("train", "counting", "convert", "demo", "selftest"):
        text = _run([app, "--help"], tmp_path).stdout
        assert "``" not in text and ":func:" not in text, (app, text)  # no raw reST markup


def test_parser_imports_no_jax():
    code = (
        "import sys; from jaxdiff.cli.main import _build_parser; _build_parser(); "
        "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_outputs_go_to_one_place_and_any_library_field_can_be_set():
    train, counting = compose_train([]), compose_counting([])
    assert train["output_dir"] == counting["output_dir"] == "outputs"
    # the schema is the library's TrainingConfig / HighResModelConfig: fields the YAML
    # does not list can still be set, without "+"
    cfg = compose_train(["training.keep_checkpoints=5", "model.dropout=0.1"])
    assert cfg["training"]["keep_checkpoints"] == 5 and cfg["model"]["dropout"] == 0.1
