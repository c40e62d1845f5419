"""Helpers to run ``tests/train/_worker.py`` in subprocesses (device count per process)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def worker_env(cache_dir):
    """Environment for a worker: CPU only, shared persistent XLA compilation cache."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def worker_cmd(*args):
    return [sys.executable, "-m", "tests.train._worker", *map(str, args)]


def run_worker(cache_dir, *args):
    """Run the worker to completion; raise with its stderr if it fails."""
    proc = subprocess.run(
        worker_cmd(*args),
        cwd=ROOT,
        env=worker_env(cache_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise AssertionError(f"worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def load(out):
    """The worker's ``.npz`` arrays and its ``.json`` info."""
    return np.load(out), json.loads(Path(str(out) + ".json").read_text())
