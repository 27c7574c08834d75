"""Fixtures for plugin tests: a pytester folder holding the gate tests, and separated checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.planted import build_separated_llava

GATE_TESTS = Path(__file__).parents[1] / "gate" / "test_bias_gate.py"
FAST = ("-p", "no:cacheprovider", "--samples", "6", "--benchmark", "shapes", "-q")


@pytest.fixture(scope="session")
def separated_checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("separated")
    return {"control": build_separated_llava(root / "control", offset=0.0),
            "planted": build_separated_llava(root / "planted", offset=1.0)}


@pytest.fixture
def gate(pytester):
    """``gate(*args, subprocess=False)``: run the bias gate tests in a fresh folder with ``args``."""
    pytester.makepyfile(test_gate=GATE_TESTS.read_text())

    def run(*args, subprocess: bool = False):
        runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
        return runner(*FAST, *args)

    return run
