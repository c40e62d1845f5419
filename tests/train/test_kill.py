"""SIGKILL a training process mid-run, restart it, and get bit-identical parameters."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from tests.train._subproc import ROOT, load, run_worker, worker_cmd, worker_env

STEPS = 300


def committed_steps(run):
    ckpt = run / "checkpoints"
    if not ckpt.exists():
        return []
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(tmp_path, xla_cache):
    run = tmp_path / "run"
    cmd = worker_cmd(
        "--devices",
        1,
        "--steps",
        STEPS,
        "--ckpt-every",
        25,
        "--sleep",
        0.01,
        "--run-dir",
        run,
        "--out",
        tmp_path / "k.npz",
    )
    log = open(tmp_path / "killed.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=worker_env(xla_cache), stdout=subprocess.DEVNULL, stderr=log
    )
    try:
        deadline = time.monotonic() + 240
        while not committed_steps(run) and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            time.sleep(0.02)
        assert committed_steps(run), "no checkpoint appeared"
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = max(committed_steps(run))
    assert 0 < killed_at < STEPS
    # restart: resumes from the newest checkpoint and finishes
    run_worker(
        xla_cache,
        "--devices",
        1,
        "--steps",
        STEPS,
        "--ckpt-every",
        25,
        "--run-dir",
        run,
        "--out",
        tmp_path / "resumed.npz",
    )
    # an uninterrupted run, no run directory
    run_worker(xla_cache, "--devices", 1, "--steps", STEPS, "--out", tmp_path / "clean.npz")
    resumed, info = load(tmp_path / "resumed.npz")
    clean, _ = load(tmp_path / "clean.npz")
    assert info["final_step"] == STEPS and 0 < info["start_step"] < STEPS
    assert info["start_step"] >= killed_at
    assert sorted(resumed.files) == sorted(clean.files) and len(clean.files) > 10
    for k in clean.files:  # params and EMA params
        assert np.array_equal(resumed[k], clean[k]), k
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(5, STEPS + 1, 5))  # no duplicate or missing records
