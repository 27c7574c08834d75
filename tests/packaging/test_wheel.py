"""The built wheel, installed in a fresh virtual environment, runs the gate in an empty directory."""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
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
    # torch and transformers come from the environment running this test (a virtual environment or not: a
    # .pth line puts its site-packages after the new environment's own), bias-suite from the wheel
    assert run([sys.executable, "-m", "venv", str(tmp_path / "venv")], cwd=tmp_path).returncode == 0
    python = tmp_path / "venv" / "bin" / "python"
    inner = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path)
    outer = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (Path(inner.stdout.strip()) / "_outer_environment.pth").write_text("\n".join(dict.fromkeys(outer)) + "\n")
    installed = run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    empty = tmp_path / "team-repo"
    empty.mkdir()
    where = run([str(python), "-c", "import bias_suite; print(bias_suite.__file__)"], cwd=empty)
    assert str(tmp_path / "venv") in where.stdout, where.stdout + where.stderr

    nothing = run([str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q"], cwd=empty)
    assert nothing.returncode == 5, nothing.stdout[-2000:]  # without --model the plugin adds nothing

    gate = run([str(python), "-m", "pytest", "--model=tiny-llava", "--samples=8", "--benchmark=shapes", "--layers=0",
                "-p", "no:cacheprovider", "--bias-report=card.json"], cwd=empty)
    assert gate.returncode == 7, gate.stdout[-3000:] + gate.stderr[-2000:]  # NO BASELINE: generic bounds only
    assert "2 failed" in gate.stdout and "gated by packaged default.yaml" in gate.stdout
    assert (empty / "card.json").is_file()
