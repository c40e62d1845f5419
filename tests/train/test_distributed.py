"""Data parallel on 8 simulated CPU devices vs 1, and resume on another device count.

Each run is a subprocess (``tests/train/_worker.py``) because the device count is fixed
when JAX starts (``XLA_FLAGS=--xla_force_host_platform_device_count``).
"""

import numpy as np
import pytest

from tests.train._subproc import load, run_worker


@pytest.mark.slow
def test_eight_devices_match_one_and_resume_across_device_counts(tmp_path, xla_cache):
    run = tmp_path / "run"
    # 8 devices, micro-batching on: a full 20-step run, then the same run stopped at
    # step 10 (checkpoints every 5 steps) in a run directory.
    run_worker(
        xla_cache,
        "--devices",
        8,
        "--out",
        tmp_path / "a.npz",
        "--full-too",
        "--run-dir",
        run,
        "--stop-at",
        10,
        "--micro",
        8,
        "--steps",
        20,
    )
    # 1 device: a full 20-step run, then resume the 8-device run directory to step 20.
    run_worker(
        xla_cache,
        "--devices",
        1,
        "--out",
        tmp_path / "b.npz",
        "--full-too",
        "--run-dir",
        run,
        "--micro",
        8,
        "--steps",
        20,
    )
    a, info_a = load(tmp_path / "a.npz")
    b, info_b = load(tmp_path / "b.npz")
    assert info_a == {"stopped": True}
    assert info_b == {"start_step": 10, "final_step": 20}
    full = [k for k in a.files if k.startswith("full/")]
    assert len(full) > 10
    for k in full:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
        resumed = b["params/" + k[len("full/") :]]
        np.testing.assert_allclose(resumed, b[k], rtol=1e-5, atol=1e-6, err_msg=k)
