"""``python -m bias_suite train-demo --quick`` runs end to end and leaves two loadable checkpoints;
``python -m bias_suite.tools.train_demo`` is the same command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bias_suite.models.loading import load_model
from bias_suite.tools.train_demo.recipe import QUICK_RECIPE


@pytest.mark.slow
def test_quick_training_run_saves_both_arms_as_loadable_checkpoints(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bias_suite", "train-demo", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "total training time" in completed.stdout
    for arm in ("text-first", "joint"):
        directory = tmp_path / f"demo-{arm}"
        record = json.loads((directory / "training.json").read_text())
        assert record["arm"] == arm
        assert record["stages"][0]["name"] == "vision"  # the shared stage 0
        assert sum(stage["steps"] for stage in record["stages"]) == QUICK_RECIPE.vision_steps + QUICK_RECIPE.total_steps
        loaded = load_model(str(directory), device="cpu", dtype="float32")
        assert type(loaded.model).__name__ == "LlavaForConditionalGeneration"
        assert f"[{arm}] shapes_accuracy" in completed.stdout


def test_the_tool_module_runs_the_same_command():
    via_package = subprocess.run([sys.executable, "-m", "bias_suite", "train-demo", "--help"],
                                 capture_output=True, text=True, check=False, timeout=120)
    via_tool = subprocess.run([sys.executable, "-m", "bias_suite.tools.train_demo", "--help"],
                              capture_output=True, text=True, check=False, timeout=120)
    assert via_package.returncode == via_tool.returncode == 0, via_package.stderr + via_tool.stderr
    assert via_tool.stdout == via_package.stdout
    assert via_package.stdout.startswith("usage: python -m bias_suite train-demo")
