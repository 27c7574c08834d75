"""The bench command runs end to end and prints its ratios (figures are not asserted: no timed tests)."""

from __future__ import annotations

import subprocess
import sys

import pytest

RATIOS = (
    "capture_overhead_ratio", "attention_rows_speedup_vs_eager", "attention_rows_memory_ratio_vs_eager",
    "metrics_speedup_vs_reference",
)


@pytest.mark.slow
def test_bench_prints_its_ratios_and_agrees_with_its_references():
    completed = subprocess.run(
        [sys.executable, "-m", "bias_suite", "bench", "--quick", "--repeats", "1"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = dict(line.split("=", 1) for line in completed.stdout.splitlines() if "=" in line)
    for name in RATIOS:
        assert float(figures[name]) > 0, f"{name} missing or not positive in:\n{completed.stdout}"
    assert float(figures["attention_rows_max_abs_difference"]) < 1e-5
    assert float(figures["metrics_max_relative_difference"]) < 1e-4


def test_unknown_subcommand_prints_usage():
    completed = subprocess.run([sys.executable, "-m", "bias_suite", "nonsense"], capture_output=True, text=True)
    assert completed.returncode == 2
    assert "usage: python -m bias_suite {bench}" in completed.stderr
