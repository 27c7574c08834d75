"""The ``conflict`` built-in: a shapes scene plus a caption that contradicts it (input of text_preference_rate).

The prompt is the caption followed by the question ("The circle is blue. What colour is the circle?").
``answer`` is what the image shows, ``caption_answer`` what the caption claims; the two always differ,
so every answer a model gives can be classed as following the image, the text, or neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bias_suite.benchmarks.sample import Sample
from bias_suite.benchmarks.scenes import COLOUR_RGB, POSITION_PHRASES, SLOT_CENTRES, Scene, number_word, random_scene

N_CONFLICT_SAMPLES = 16
IMAGE_SIDE = 224  # pixels
MAX_CONFLICT_SHAPES = 3
MAX_CLAIMED_COUNT = 5


@dataclass(frozen=True)
class Conflict:
    """A caption that contradicts a scene, the question it bears on, and both answers."""

    caption: str
    question: str
    image_answer: str
    caption_answer: str


def pick_other(rng: np.random.Generator, choices: list[str], true: str) -> str:
    return str(rng.choice([choice for choice in choices if choice != true]))


def colour_conflict(scene: Scene, rng: np.random.Generator) -> Conflict:
    shape = scene.shapes[int(rng.integers(len(scene.shapes)))]
    claimed = pick_other(rng, list(COLOUR_RGB), shape.colour)
    noun = scene.noun_phrase(shape)
    return Conflict(f"{noun.capitalize()} is {claimed}.", f"What colour is {noun}?", shape.colour, claimed)


def count_conflict(scene: Scene, rng: np.random.Generator) -> Conflict:
    true = number_word(scene.count())
    claimed = pick_other(rng, [number_word(n) for n in range(1, MAX_CLAIMED_COUNT + 1)], true)
    caption = f"There are {claimed} shapes in the picture."
    if claimed == "one":
        caption = "There is one shape in the picture."
    return Conflict(caption, "How many shapes are there?", true, claimed)


def position_conflict(scene: Scene, rng: np.random.Generator) -> Conflict:
    shape = scene.shapes[int(rng.integers(len(scene.shapes)))]
    claimed = pick_other(rng, list(SLOT_CENTRES), shape.position)
    noun = f"the {shape.colour} {shape.kind}"
    return Conflict(
        f"{noun.capitalize()} is {POSITION_PHRASES[claimed]}.", f"Where is {noun}?", shape.position, claimed
    )


# conflict kind -> (scene, rng) -> Conflict; kinds take turns in this order.
CONFLICTS: dict[str, Callable[[Scene, np.random.Generator], Conflict]] = {
    "colour": colour_conflict,
    "count": count_conflict,
    "position": position_conflict,
}


def build_conflict(seed: int) -> tuple[Sample, ...]:
    """16 samples ``conflict/NNNN-<kind>``: a 224×224 scene of 1–3 shapes, caption + question as the
    prompt, the image-true ``answer``, the contradicting ``conflicting_caption`` and its ``caption_answer``."""
    rng = np.random.default_rng(seed)
    kinds = list(CONFLICTS)
    samples = []
    for i in range(N_CONFLICT_SAMPLES):
        scene = random_scene(rng, n_shapes=int(rng.integers(1, MAX_CONFLICT_SHAPES + 1)), side=IMAGE_SIDE)
        kind = kinds[i % len(kinds)]
        conflict = CONFLICTS[kind](scene, rng)
        samples.append(
            Sample(
                f"conflict/{i:04d}-{kind}",
                scene.render(),
                f"{conflict.caption} {conflict.question}",
                answer=conflict.image_answer,
                conflicting_caption=conflict.caption,
                caption_answer=conflict.caption_answer,
            )
        )
    return tuple(samples)
