"""The ``shapes`` built-in: rendered scenes of coloured shapes, each with a question and its one-word answer.

Answers are known by construction, so answer tokens can be teacher-forced. Four question kinds take
turns: the colour of a shape, the number of shapes, the position of a shape, the number of shapes of
one kind (which may be zero).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bias_suite.benchmarks.sample import Sample
from bias_suite.benchmarks.scenes import MAX_SHAPES, SHAPE_KINDS, Scene, number_word, random_scene

N_SHAPES_SAMPLES = 24
IMAGE_SIDE = 224  # pixels


def colour_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    shape = scene.shapes[int(rng.integers(len(scene.shapes)))]
    return f"What colour is {scene.noun_phrase(shape)}?", shape.colour


def count_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    return "How many shapes are there?", number_word(scene.count())


def position_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    shape = scene.shapes[int(rng.integers(len(scene.shapes)))]
    return f"Where is the {shape.colour} {shape.kind}?", shape.position


def kind_count_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    kind = str(rng.choice(SHAPE_KINDS))
    return f"How many {kind}s are there?", number_word(scene.count(kind))


# question kind -> (scene, rng) -> (question, answer); kinds take turns in this order.
QUESTIONS: dict[str, Callable[[Scene, np.random.Generator], tuple[str, str]]] = {
    "colour": colour_question,
    "count": count_question,
    "position": position_question,
    "kind-count": kind_count_question,
}


def build_shapes(seed: int) -> tuple[Sample, ...]:
    """24 samples ``shapes/NNNN-<kind>``: a 224×224 RGB scene of 1–4 shapes, a question, its answer."""
    rng = np.random.default_rng(seed)
    kinds = list(QUESTIONS)
    samples = []
    for i in range(N_SHAPES_SAMPLES):
        scene = random_scene(rng, n_shapes=int(rng.integers(1, MAX_SHAPES + 1)), side=IMAGE_SIDE)
        kind = kinds[i % len(kinds)]
        question, answer = QUESTIONS[kind](scene, rng)
        samples.append(Sample(f"shapes/{i:04d}-{kind}", scene.render(), question, answer=answer))
    return tuple(samples)
