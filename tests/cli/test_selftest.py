"""``jaxdiff selftest``: every subsystem's check passes; a failing check is reported, not fatal."""

import re
import subprocess
import sys

import pytest

from jaxdiff.cli import selftest, selftest_checks

SUBSYSTEMS = [
    "schedules",
    "samplers",
    "ot",
    "kernels",
    "networks",
    "interop",
    "training",
    "checkpoint",
    "counting",
]


def test_selftest_passes_every_check():
    assert [name for name, _ in selftest_checks.CHECKS] == SUBSYSTEMS
    proc = subprocess.run(
        [sys.executable, "-m", "jaxdiff.cli.main", "selftest"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    out = proc.stdout
    for name in SUBSYSTEMS:
        assert re.search(rf"^\[ok\] {name} \(\d+\.\ds\): \S", out, re.M), (name, out)
    assert "[FAIL]" not in out
    assert re.search(r"^selftest: 9/9 checks passed in \d+\.\d s$", out, re.M), out


def _broken():
    raise ValueError("injected fault")


def test_failing_check_is_reported_and_later_checks_run(monkeypatch, capsys):
    real = dict(selftest_checks.CHECKS)
    patched = (("schedules", real["schedules"]), ("ot", _broken), ("kernels", real["kernels"]))
    monkeypatch.setattr(selftest_checks, "CHECKS", patched)
    assert selftest.run_selftest() is False
    lines = capsys.readouterr().out.splitlines()
    fail = lines.index("[FAIL] ot: ValueError: injected fault")
    assert lines[fail - 1].startswith("[ok] schedules (")
    assert lines[fail + 1].startswith("[ok] kernels (")
    assert re.fullmatch(r"selftest FAILED: 2/3 checks passed in \d+\.\d s; failed: ot", lines[-1])


def test_kernel_check_fails_against_a_wrong_reference(monkeypatch):
    import jaxdiff.kernels

    monkeypatch.setattr(jaxdiff.kernels, "lse_dot_reference", lambda x, y, h: h[: len(x)] + 1.0)
    with pytest.raises(selftest_checks.CheckFailed, match="relative error"):
        selftest_checks.check_kernels()
