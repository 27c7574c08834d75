"""``python -m bias_suite``: a subcommand per tool; anything else prints the usage and exits 2."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv", [["nonsense"], []], ids=["unknown", "none"])
def test_a_missing_or_unknown_subcommand_prints_the_usage(argv):
    completed = subprocess.run([sys.executable, "-m", "bias_suite", *argv], capture_output=True, text=True,
                               check=False, timeout=120)
    assert completed.returncode == 2
    assert "usage: python -m bias_suite {bench,train-demo}" in completed.stderr
