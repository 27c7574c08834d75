"""The built wheel, installed into a fresh virtual environment where only torch is preinstalled, brings every
other dependency (pytest among them: the plugin is the product) and runs the gate in an empty directory.

"Only torch": the new environment sees the running interpreter's torch and the distributions torch itself
requires (through a folder of links and a ``.pth`` line, whether the suite runs in a virtual environment or
not), and nothing else of it; pip installs the rest from the package index. Subprocesses run without
``PYTHONPATH``, so the environment's own copy of bias-suite is what runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def run(command, cwd, timeout=900) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def with_requirements(name: str, found: dict | None = None) -> dict:
    """``name``'s installed distribution and those it requires on this machine (markers and extras honoured)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    found = {} if found is None else found
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        return found
    key = dist.metadata["Name"].lower().replace("_", "-")
    if key in found:
        return found
    found[key] = dist
    for text in dist.requires or ():
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({**default_environment(), "extra": ""}):
            with_requirements(requirement.name, found)
        for extra in requirement.extras:  # e.g. cuda-toolkit[cublas, …]: what the extra pulls in
            extra_dist = found.get(requirement.name.lower().replace("_", "-"))
            for extra_text in (extra_dist.requires or ()) if extra_dist else ():
                extra_requirement = Requirement(extra_text)
                if extra_requirement.marker is not None and extra_requirement.marker.evaluate(
                        {**default_environment(), "extra": extra}):
                    with_requirements(extra_requirement.name, found)
    return found


def torch_only(folder: Path) -> Path:
    """A folder of links to torch and what it requires, as they are installed for this interpreter."""
    folder.mkdir()
    for dist in with_requirements("torch").values():
        root = Path(dist.locate_file(""))
        for top in {Path(file).parts[0] for file in dist.files or () if not str(file).startswith("..")}:
            if (root / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(root / top)
    return folder


@pytest.mark.slow
def test_an_installed_wheel_runs_the_gate_from_an_empty_directory(tmp_path):
    pytest.importorskip("packaging")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", ROOT]
    built = run([*build, "--no-build-isolation"], cwd=tmp_path)
    if built.returncode != 0:  # this environment's setuptools cannot build wheels (an old one in a venv)
        built = run(build, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("bias_suite-*.whl"))
    assert run([sys.executable, "-m", "venv", tmp_path / "venv"], cwd=tmp_path).returncode == 0
    python, bin_folder = tmp_path / "venv" / "bin" / "python", tmp_path / "venv" / "bin"
    inner = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path)
    (Path(inner.stdout.strip()) / "_torch_only.pth").write_text(f"{torch_only(tmp_path / 'torch-only')}\n")
    assert run([python, "-c", "import torch"], cwd=tmp_path).returncode == 0
    assert run([python, "-c", "import transformers"], cwd=tmp_path).returncode != 0  # only torch is there
    installed = run([python, "-m", "pip", "install", "-q", wheel], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    empty = tmp_path / "team-repo"
    empty.mkdir()
    where = run([python, "-c", "import bias_suite, transformers; print(bias_suite.__file__, transformers.__file__)"],
                cwd=empty)
    assert where.stdout.count(str(tmp_path / "venv")) == 2, where.stdout + where.stderr
    assert sysconfig.get_paths()["purelib"] not in where.stdout

    nothing = run([bin_folder / "pytest", "-p", "no:cacheprovider", "-q"], cwd=empty)
    assert nothing.returncode == 5, nothing.stdout[-2000:]  # without --model the plugin adds nothing

    gate = run([bin_folder / "pytest", "--model=tiny-llava", "--samples=8", "--benchmark=shapes", "--layers=0",
                "-p", "no:cacheprovider", "--bias-report=card.json"], cwd=empty)
    assert gate.returncode == 7, gate.stdout[-3000:] + gate.stderr[-2000:]  # NO BASELINE: generic bounds only
    assert "2 failed" in gate.stdout and "gated by packaged default.yaml" in gate.stdout
    assert (empty / "card.json").is_file()

    commands = run([bin_folder / "bias-suite", "--help"], cwd=empty)
    assert commands.returncode == 0 and all(name in commands.stdout for name in ("launch", "merge", "render", "diff"))
    launched = run([bin_folder / "bias-suite", "launch", "--executor=local", "--shards=2", "--report=merged.json",
                    "--", "--model=tiny-llava", "--samples=8", "--benchmark=shapes", "--benchmark=photos",
                    "--layers=0"], cwd=empty)
    assert launched.returncode == 7, launched.stdout[-3000:] + launched.stderr[-2000:]
    assert "shard 2/2: exit code 7 (NO BASELINE)" in launched.stdout and (empty / "merged.json").is_file()
