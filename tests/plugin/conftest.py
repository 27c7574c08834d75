"""Fixtures for plugin tests: a pytester runner for the gate, and checkpoints with known separation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugin.planted import FAST, build_separated_llava


@pytest.fixture(scope="session")
def separated_checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("separated")
    return {"control": build_separated_llava(root / "control", offset=0.0),
            "planted": build_separated_llava(root / "planted", offset=1.0)}


@pytest.fixture
def gate(pytester):
    """``gate(*args, subprocess=False)``: run pytest with the bias gate's options in a fresh folder (the
    plugin adds the gate's items itself; the folder holds no test file)."""

    def run(*args, subprocess: bool = False):
        runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
        return runner(*FAST, *args)

    return run
