"""The demo models' sizes, and the two training schedules: text-first (the LLaVA recipe) and joint
(the control).

Both arms start from the same weights: a randomly initialised decoder and projector (same seed) and
the vision tower pretrained in the shared stage 0 (:mod:`bias_suite.tools.train_demo.vision_pretraining`),
which then stays frozen, as CLIP does in LLaVA-1.5. They take the same optimizer steps on the same
batches; only the order of the batches and which parameters learn differ:

- text-first (LLaVA): ``text`` (decoder only, text-only batches) → ``align`` (decoder frozen, the
  projector learns from captions and questions) → ``instruct`` (decoder + projector, image questions).
  A fresh AdamW per stage, as in LLaVA's separate stages.
- joint (control): every batch of the three stages in one seeded random order, decoder + projector
  trainable from the first step, one AdamW.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from bias_suite.models.tiny.families import TextSize, VisionSize, build_llava
from bias_suite.tools.train_demo.data import TrainingData

Trainable = Literal["decoder", "projector", "decoder+projector"]  # the vision tower is frozen after stage 0
ARMS = ("text-first", "joint")


@dataclass(frozen=True)
class DemoShape:
    """Sizes of both demo models: the ``tiny-llava`` layout (CLIP tower → MLP projector → Llama decoder,
    GQA) at a size that learns something in minutes on two CPU cores. ``(image_size / 14)²`` image tokens
    per image (CLS dropped). Flat fields, so each checkpoint's ``training.json`` records them as they are."""

    image_size: int = 56  # pixels; 56 → 16 image tokens
    vision_hidden: int = 64
    vision_layers: int = 3  # features are taken from the second-to-last layer, as in LLaVA-1.5
    vision_heads: int = 4
    vision_intermediate: int = 256
    text: TextSize = field(
        default_factory=lambda: TextSize(layers=4, hidden=128, heads=4, kv_heads=2, intermediate=384)
    )

    @property
    def vision(self) -> VisionSize:
        return VisionSize(layers=self.vision_layers, hidden=self.vision_hidden, heads=self.vision_heads,
                          intermediate=self.vision_intermediate)


def build_demo_llava(shape: DemoShape) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A freshly initialised demo model and its processor: :func:`bias_suite.models.tiny.families.build_llava` at
    ``shape``'s sizes (same tokenizer and chat template as ``tiny-llava``). Draws from torch's global
    generator: seed before calling."""
    return build_llava(shape.text, shape.image_size, shape.vision)


@dataclass(frozen=True)
class Recipe:
    """Sizes, data and optimisation of one training run (both arms)."""

    shape: DemoShape = field(default_factory=DemoShape)
    vision_steps: int = 1500  # stage 0 (shared): vision tower pretraining on the scenes
    vision_batch_size: int = 64  # images per stage-0 step
    vision_lr: float = 2e-3  # constant
    batch_size: int = 32  # sequences per optimizer step
    text_steps: int = 400  # text-first stage 1: text-only language modelling
    align_steps: int = 300  # stage 2: half captions, half questions per batch; decoder frozen
    instruct_steps: int = 500  # stage 3: image questions
    n_scenes: int = 3000  # distinct rendered training scenes
    text_lr: float = 2e-3  # peak learning rates (linear warm-up, cosine decay to 10 %)
    align_lr: float = 2e-3
    instruct_lr: float = 2e-3
    joint_lr: float = 2e-3
    warmup_fraction: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global grad norm
    seed: int = 0

    @property
    def total_steps(self) -> int:
        return self.text_steps + self.align_steps + self.instruct_steps

    @property
    def n_texts(self) -> int:
        return self.text_steps * self.batch_size

    @property
    def n_captions(self) -> int:
        return self.align_steps * (self.batch_size // 2)

    @property
    def n_questions(self) -> int:
        return self.align_steps * (self.batch_size - self.batch_size // 2) + self.instruct_steps * self.batch_size


FULL_RECIPE = Recipe()
QUICK_RECIPE = Recipe(
    vision_steps=100, vision_batch_size=32, batch_size=16, text_steps=30, align_steps=30, instruct_steps=20,
    n_scenes=200,
)


@dataclass(frozen=True)
class Stage:
    """Consecutive optimizer steps with one optimizer, one set of trainable parameters and one lr curve."""

    name: str
    trainable: Trainable
    batches: tuple[tuple[int, ...], ...]  # per step: indices into TrainingData.examples
    peak_lr: float


def text_first_stages(recipe: Recipe, data: TrainingData) -> tuple[Stage, ...]:
    """Stage 1 text, stage 2 projector only (decoder frozen), stage 3 decoder + projector on image questions."""
    size = recipe.batch_size
    texts = list(data.indices("text"))
    captions = list(data.indices("caption"))
    questions = list(data.indices("question"))
    half = size // 2
    text_batches = [tuple(texts[i * size:(i + 1) * size]) for i in range(recipe.text_steps)]
    align_batches = [
        tuple(captions[i * half:(i + 1) * half]) + tuple(questions[i * (size - half):(i + 1) * (size - half)])
        for i in range(recipe.align_steps)
    ]
    used = recipe.align_steps * (size - half)
    instruct_batches = [tuple(questions[used + i * size:used + (i + 1) * size]) for i in range(recipe.instruct_steps)]
    return (
        Stage("text", "decoder", tuple(text_batches), recipe.text_lr),
        Stage("align", "projector", tuple(align_batches), recipe.align_lr),
        Stage("instruct", "decoder+projector", tuple(instruct_batches), recipe.instruct_lr),
    )


def joint_stages(recipe: Recipe, data: TrainingData) -> tuple[Stage, ...]:
    """The text-first batches in one seeded random order, decoder + projector trainable from step one."""
    batches = [batch for stage in text_first_stages(recipe, data) for batch in stage.batches]
    order = np.random.default_rng([recipe.seed, 2]).permutation(len(batches))
    return (Stage("joint", "decoder+projector", tuple(batches[i] for i in order), recipe.joint_lr),)


def stages_for(arm: str, recipe: Recipe, data: TrainingData) -> tuple[Stage, ...]:
    if arm == "text-first":
        return text_first_stages(recipe, data)
    if arm == "joint":
        return joint_stages(recipe, data)
    raise ValueError(f"unknown arm {arm!r}; arms: {', '.join(ARMS)}")


def learning_rate(step: int, n_steps: int, peak_lr: float, warmup_fraction: float) -> float:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay from ``peak_lr`` to 10 % of it."""
    warmup = max(1, round(warmup_fraction * n_steps))
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, n_steps - warmup)
    return peak_lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress)))
