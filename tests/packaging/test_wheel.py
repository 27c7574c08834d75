"""The built wheel, installed in a fresh virtual environment, runs the gate in an empty directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def run(command, cwd, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_an_installed_wheel_runs_the_gate_from_an_empty_directory(tmp_path):
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                 str(tmp_path / "dist"), str(ROOT)], cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("bias_suite-*.whl"))
    # --system-site-packages: torch and transformers come from the environment, bias-suite from the wheel
    assert run([sys.executable, "-m", "venv", "--system-site-packages", str(tmp_path / "venv")],
               cwd=tmp_path).returncode == 0
    python = tmp_path / "venv" / "bin" / "python"
    installed = run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    empty = tmp_path / "team-repo"
    empty.mkdir()
    where = run([str(python), "-c", "import bias_suite; print(bias_suite.__file__)"], cwd=empty)
    assert str(tmp_path / "venv") in where.stdout, where.stdout + where.stderr

    nothing = run([str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q"], cwd=empty)
    assert nothing.returncode == 5, nothing.stdout[-2000:]  # without --model the plugin adds nothing

    gate = run([str(python), "-m", "pytest", "--model=tiny-llava", "--samples=4", "--benchmark=shapes", "--layers=0",
                "-p", "no:cacheprovider", "--bias-report=card.json"], cwd=empty)
    assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-2000:]
    assert "2 passed" in gate.stdout and "gated by packaged default.yaml" in gate.stdout
    assert (empty / "card.json").is_file()
