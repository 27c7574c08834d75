"""Seeded training data: a text corpus about scenes, and rendered scenes with captions and questions.

Every example is one chat turn in the format evaluation uses (``USER: [<image>\\n]… ASSISTANT: …</s>``):

- ``text`` — no image. The user turn describes a scene in words (or states one fact about it) and asks
  a question about it. This is the language-only pretraining corpus; loss on every token.
- ``caption`` — a rendered scene, "Describe the image.", and the scene's canonical caption; loss on the caption.
- ``question`` — a rendered scene, a question of one of the four ``shapes`` kinds (same templates, from
  :data:`bias_suite.benchmarks.shapes.QUESTIONS`) and its one-word answer; loss on the answer.

Scenes come from the benchmarks' own generator (:func:`random_scene`) driven by
``numpy.random.default_rng([seed, TRAINING_STREAM])``. The built-in benchmarks seed with the bare seed,
so training never replays an evaluation scene. Sentences use the same phrasing as the ``conflict``
captions ("The circle is red.", "There are two shapes in the picture.", "The red circle is on the left."),
but in training they are always true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from bias_suite.benchmarks.scenes import (
    MAX_SHAPES,
    POSITION_PHRASES,
    SLOT_CENTRES,
    Scene,
    Shape,
    number_word,
    random_scene,
)
from bias_suite.benchmarks.shapes import IMAGE_SIDE, QUESTIONS

TRAINING_STREAM = 2510  # second word of the training generators' seed; the benchmarks use one word
CAPTION_QUESTION = "Describe the image."
ExampleKind = Literal["text", "caption", "question"]


@dataclass(frozen=True)
class Example:
    """One training sequence: a user turn, the assistant's answer, and the scene shown (if any)."""

    kind: ExampleKind
    user_text: str  # the user's words, without the image placeholder
    answer: str  # the assistant's words
    scene_index: int | None  # index into TrainingData.scenes for caption/question, None for text

    @property
    def has_image(self) -> bool:
        return self.scene_index is not None

    @property
    def loss_on_all_tokens(self) -> bool:
        """Text examples are language modelling (every token); image examples train the answer only."""
        return self.kind == "text"


@dataclass(frozen=True)
class TrainingData:
    """Everything both arms train on; ``examples`` = texts, then captions, then questions."""

    scenes: tuple[Scene, ...]  # the scenes that are rendered (224 × 224 px, like the benchmarks)
    examples: tuple[Example, ...]
    n_texts: int
    n_captions: int
    n_questions: int

    def indices(self, kind: ExampleKind) -> range:
        """Positions of the examples of ``kind`` in :attr:`examples`."""
        starts = {"text": 0, "caption": self.n_texts, "question": self.n_texts + self.n_captions}
        sizes = {"text": self.n_texts, "caption": self.n_captions, "question": self.n_questions}
        return range(starts[kind], starts[kind] + sizes[kind])


def count_sentence(n_shapes: int) -> str:
    """"There are two shapes in the picture." (the ``conflict`` caption wording)."""
    if n_shapes == 1:
        return "There is one shape in the picture."
    return f"There are {number_word(n_shapes)} shapes in the picture."


def shape_sentence(shape: Shape, rng: np.random.Generator | None = None) -> str:
    """One shape's kind, colour and position in one of two wordings (the first when ``rng`` is None)."""
    phrase = POSITION_PHRASES[shape.position]
    if rng is None or rng.random() < 0.5:
        return f"The {shape.colour} {shape.kind} is {phrase}."
    return f"There is a {shape.colour} {shape.kind} {phrase}."


def caption(scene: Scene) -> str:
    """The canonical caption: the count, then every shape in slot order (left, right, top, bottom, middle)."""
    order = list(SLOT_CENTRES)
    shapes = sorted(scene.shapes, key=lambda shape: order.index(shape.position))
    return " ".join([count_sentence(scene.count()), *(shape_sentence(shape) for shape in shapes)])


def description(scene: Scene, rng: np.random.Generator) -> str:
    """A free description: every shape in random order and wording, the count first, last or not at all."""
    sentences = [shape_sentence(scene.shapes[i], rng) for i in rng.permutation(len(scene.shapes))]
    where = int(rng.integers(3))
    if where == 0:
        sentences.insert(0, count_sentence(scene.count()))
    elif where == 1:
        sentences.append(count_sentence(scene.count()))
    return " ".join(sentences)


def fact_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str, str]:
    """(one true statement, a question it answers, the answer) about a colour, the count or a position."""
    shape = scene.shapes[int(rng.integers(len(scene.shapes)))]
    kind = int(rng.integers(3))
    if kind == 0:
        noun = scene.noun_phrase(shape)
        return f"{noun.capitalize()} is {shape.colour}.", f"What colour is {noun}?", shape.colour
    if kind == 1:
        return count_sentence(scene.count()), "How many shapes are there?", number_word(scene.count())
    noun = f"the {shape.colour} {shape.kind}"
    return f"{noun.capitalize()} is {POSITION_PHRASES[shape.position]}.", f"Where is {noun}?", shape.position


def scene_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """A ``shapes`` benchmark question of a random kind about ``scene``, and its answer."""
    kinds = list(QUESTIONS)
    return QUESTIONS[kinds[int(rng.integers(len(kinds)))]](scene, rng)


def text_example(rng: np.random.Generator, fact_share: float = 1 / 3) -> Example:
    """A text-only example about a fresh scene: a description or a single fact, then a question."""
    scene = random_scene(rng, n_shapes=int(rng.integers(1, MAX_SHAPES + 1)), side=IMAGE_SIDE)
    if rng.random() < fact_share:
        statement, question, answer = fact_question(scene, rng)
    else:
        statement = description(scene, rng)
        question, answer = scene_question(scene, rng)
    return Example("text", f"{statement} {question}", answer, None)


def build_training_data(seed: int, n_texts: int, n_captions: int, n_questions: int, n_scenes: int) -> TrainingData:
    """All examples of one training run. The same arguments give the same data on every machine.

    Captions take the scenes in turn (each scene is captioned about ``n_captions / n_scenes`` times);
    each question picks a scene and a question kind at random, so a scene is asked different things.
    """
    for name, value in (("n_texts", n_texts), ("n_captions", n_captions), ("n_questions", n_questions)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, not {value}")
    if n_scenes < 1:
        raise ValueError(f"n_scenes must be >= 1, not {n_scenes}")
    text_rng, scene_rng, question_rng = (
        np.random.default_rng([seed, TRAINING_STREAM, part]) for part in range(3)
    )
    scenes = tuple(
        random_scene(scene_rng, n_shapes=int(scene_rng.integers(1, MAX_SHAPES + 1)), side=IMAGE_SIDE)
        for _ in range(n_scenes)
    )
    texts = [text_example(text_rng) for _ in range(n_texts)]
    captions = [
        Example("caption", CAPTION_QUESTION, caption(scenes[i % n_scenes]), i % n_scenes) for i in range(n_captions)
    ]
    questions = []
    for _ in range(n_questions):
        scene_index = int(question_rng.integers(n_scenes))
        question, answer = scene_question(scenes[scene_index], question_rng)
        questions.append(Example("question", question, answer, scene_index))
    return TrainingData(scenes, (*texts, *captions, *questions), n_texts, n_captions, n_questions)
