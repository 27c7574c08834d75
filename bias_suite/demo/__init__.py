"""The embedded demonstrator: two tiny LLaVA models trained here, on CPU, with a known history.

``demo-text-first`` follows the LLaVA recipe (text-only pretraining, then a frozen decoder while the
projector learns to feed it the pretrained vision tower's features, then a joint instruction stage);
``demo-joint`` is the control trained on the same examples for the same number of steps, images and
text together from the first step. Both
checkpoints ship with the package (``checkpoints/``); ``python -m bias_suite train-demo`` (the tool
:mod:`bias_suite.tools.train_demo`) rebuilds them. Their only purpose is to put a model whose training
history is known behind the default run, so the paper's causal claim (text-only pretraining makes
visual keys out-of-distribution) can be tested rather than assumed. :mod:`bias_suite.tools.train_demo.scoring`
measures how well a model answers the scene questions and how often it follows a contradicting caption.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_ROOT = Path(__file__).resolve().parent / "checkpoints"

# alias -> checkpoint directory (config.json, model.safetensors, tokenizer and processor files).
DEMO_CHECKPOINTS: dict[str, Path] = {
    "demo-text-first": CHECKPOINT_ROOT / "demo-text-first",
    "demo-joint": CHECKPOINT_ROOT / "demo-joint",
}
DEFAULT_MODEL = "demo-text-first"

__all__ = ["CHECKPOINT_ROOT", "DEFAULT_MODEL", "DEMO_CHECKPOINTS"]
