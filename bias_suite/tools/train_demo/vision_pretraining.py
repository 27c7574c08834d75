"""Stage 0, shared by both arms: pretrain the CLIP vision tower on the scenes, as LLaVA starts from a
pretrained CLIP.

Without it nothing works at this scale: a randomly initialised tower + decoder trained end to end on
the questions learns the answer prior within a hundred steps and then stalls at chance for hundreds
more (the image tokens carry the information, but the decoder does not find it in the budget).

The objective is supervised, from the features LLaVA actually reads (``vision_feature_layer``, CLS
dropped), through two linear heads that are thrown away afterwards:

- pooled: from the mean over patch tokens, each of the 5 slots' colour (or empty) and kind (or empty);
- local: from each patch token, the colour and kind of the shape covering most of that patch (or empty,
  when no shape covers a tenth of it).

So every patch token says what is on it and the pool says what is where, which is what the questions
ask. The decoder and projector are untouched; both arms then start from this same tower.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from bias_suite.benchmarks.scenes import COLOUR_RGB, SHAPE_KINDS, SLOT_CENTRES, Scene

N_COLOUR_CLASSES = len(COLOUR_RGB) + 1  # class 0 = empty
N_KIND_CLASSES = len(SHAPE_KINDS) + 1
MIN_PATCH_COVER = 0.1  # a patch is labelled with a shape only if the shape's box covers this share of it
LOG_EVERY = 250  # steps between loss lines


def slot_targets(scenes: Sequence[Scene]) -> torch.Tensor:
    """``[n_scenes, 5, 2]`` int64: per slot (SLOT_CENTRES order), colour class and kind class (0 = empty)."""
    slots, colours, kinds = list(SLOT_CENTRES), list(COLOUR_RGB), list(SHAPE_KINDS)
    targets = torch.zeros(len(scenes), len(slots), 2, dtype=torch.long)
    for i, scene in enumerate(scenes):
        for shape in scene.shapes:
            targets[i, slots.index(shape.position)] = torch.tensor(
                [1 + colours.index(shape.colour), 1 + kinds.index(shape.kind)]
            )
    return targets


def patch_targets(scenes: Sequence[Scene], grid: int) -> torch.Tensor:
    """``[n_scenes, grid², 2]`` int64: per patch (row-major), colour and kind class of the shape whose
    bounding box covers most of the patch, 0 when none covers :data:`MIN_PATCH_COVER` of it."""
    colours, kinds = list(COLOUR_RGB), list(SHAPE_KINDS)
    targets = torch.zeros(len(scenes), grid * grid, 2, dtype=torch.long)
    for i, scene in enumerate(scenes):
        cell = scene.side / grid
        for row in range(grid):
            for col in range(grid):
                covers = []
                for shape in scene.shapes:
                    (x, y), r = shape.centre, shape.radius
                    width = min(x + r, (col + 1) * cell) - max(x - r, col * cell)
                    height = min(y + r, (row + 1) * cell) - max(y - r, row * cell)
                    covers.append((max(0.0, width) * max(0.0, height), shape))
                area, shape = max(covers, key=lambda pair: pair[0])
                if area >= MIN_PATCH_COVER * cell * cell:
                    classes = [1 + colours.index(shape.colour), 1 + kinds.index(shape.kind)]
                    targets[i, row * grid + col] = torch.tensor(classes)
    return targets


class SceneHeads(nn.Module):
    """Linear read-outs of the scene from patch features ``[batch, n_patches, hidden]``."""

    def __init__(self, hidden: int, n_slots: int = len(SLOT_CENTRES)):
        super().__init__()
        self.n_slots = n_slots
        self.pooled = nn.Linear(hidden, n_slots * (N_COLOUR_CLASSES + N_KIND_CLASSES))
        self.local = nn.Linear(hidden, N_COLOUR_CLASSES + N_KIND_CLASSES)

    def loss(self, features: torch.Tensor, slots: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Sum of the four mean cross-entropies (slot colour, slot kind, patch colour, patch kind), nats."""
        pooled = self.pooled(features.mean(dim=1)).view(len(features), self.n_slots, -1)
        local = self.local(features)
        total = torch.zeros((), dtype=features.dtype)
        for logits, targets in ((pooled, slots), (local, patches)):
            colour_logits, kind_logits = logits[..., :N_COLOUR_CLASSES], logits[..., N_COLOUR_CLASSES:]
            total = total + nn.functional.cross_entropy(colour_logits.flatten(0, 1), targets[..., 0].flatten())
            total = total + nn.functional.cross_entropy(kind_logits.flatten(0, 1), targets[..., 1].flatten())
        return total


def patch_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """``[batch, n_patches, vision_hidden]``: the tower's hidden states at the layer LLaVA reads, CLS dropped."""
    layer = model.config.vision_feature_layer
    hidden_states = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states
    return hidden_states[layer][:, 1:]


def pretrain_vision_tower(
    model,
    pixel_values: torch.Tensor,
    scenes: Sequence[Scene],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> dict[str, float]:
    """Train ``model``'s vision tower in place; ``pixel_values[i]`` shows ``scenes[i]``.

    Batches are drawn with replacement from a generator seeded by ``seed``; constant ``lr``, AdamW.
    Returns the mean loss (nats, sum of four cross-entropies) of the first and last tenth of steps.
    """
    tower = model.model.vision_tower
    grid = pixel_values.shape[-1] // model.config.vision_config.patch_size
    slots, patches = slot_targets(scenes), patch_targets(scenes, grid)
    heads = SceneHeads(model.config.vision_config.hidden_size)
    parameters = [*tower.parameters(), *heads.parameters()]
    for parameter in tower.parameters():
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
    rng = np.random.default_rng([seed, 3])
    losses = []
    tower.train()
    for step in range(steps):
        batch = torch.from_numpy(rng.integers(0, len(scenes), size=batch_size))
        loss = heads.loss(patch_features(model, pixel_values[batch]), slots[batch], patches[batch])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % LOG_EVERY == 0 or step + 1 == steps:
            window = losses[-LOG_EVERY:]
            print(f"    vision step {step + 1:4d}/{steps}  loss {sum(window) / len(window):.3f}", flush=True)
    tower.eval()
    tenth = max(1, steps // 10)
    return {
        "first_tenth_loss": round(sum(losses[:tenth]) / tenth, 4),
        "last_tenth_loss": round(sum(losses[-tenth:]) / tenth, 4),
    }
