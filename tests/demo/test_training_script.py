"""``python -m bias_suite.demo.train --quick`` runs end to end and leaves two loadable checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bias_suite.demo.recipe import QUICK_RECIPE
from bias_suite.loading import load_model


@pytest.mark.slow
def test_quick_training_run_saves_both_arms_as_loadable_checkpoints(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bias_suite.demo.train", "--quick", "--out", str(tmp_path)],
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
