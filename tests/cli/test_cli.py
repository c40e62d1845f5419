import subprocess
import sys

from jaxdiff.cli.demo import DEMO_METHODS
from jaxdiff.cli.main import main


def test_demo_writes_png_and_prints_table(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--out", str(out), "--num-samples", "400"]) == 0
    text = capsys.readouterr().out
    assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for label, _ in DEMO_METHODS:
        assert label in text
    assert "energy dist" in text


def test_demo_quality_reaches_noise_floor(tmp_path):
    from jaxdiff.cli.demo import run_demo

    results = run_demo(out=str(tmp_path / "d.png"), num_samples=1500, seed=3)
    for label, r in results.items():
        assert r["energy_distance"] < 0.05, (label, r)


def test_console_script_help():
    proc = subprocess.run(
        [sys.executable, "-m", "jaxdiff.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "demo" in proc.stdout and "selftest" in proc.stdout
