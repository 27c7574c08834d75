"""The ``caption-variants`` built-in: one question about a scene, asked with captions of three kinds.

After "Words or Vision" (Deng et al., arXiv 2503.02199): a *matching* caption (relevant and true), a
*corrupted* one (relevant and false) and an *irrelevant* one (true, about something else), beside the
question alone. Each of the 120 scenes (1–3 shapes; question kinds colour, count and position take turns)
yields seven queries, whose candidates are the question's whole answer group (8 colours, zero…four or the
5 slots):

* ``corrupted`` (the probe: where text can override the image), ``none``, ``matching``, ``irrelevant``:
  the scene with the question, after its caption;
* ``blank-matching``, ``blank-corrupted``, ``blank-irrelevant``: the same prompts on the blank canvas —
  the model's text-only answer, from which Words or Vision's text preference per variant is counted
  (:mod:`bias_suite.metrics.suites`).

An irrelevant caption contains no word of the question's answer group (a colour question gets the count
sentence, a count question a colour statement, a position question a colour statement or the count).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bias_suite.benchmarks.layouts import (
    COLOURS,
    COUNTS,
    SLOTS,
    STREAMS,
    blank_canvas,
    build,
    count_statement,
    geometry,
    position_statement,
    statement,
    words,
)
from bias_suite.benchmarks.sample import Query, Sample
from bias_suite.benchmarks.scenes import SHAPE_KINDS, Scene, Shape, number_word

N_CAPTION_VARIANT_ITEMS = 120
QUESTION_KINDS = ("colour", "count", "position")
VARIANTS = ("matching", "corrupted", "irrelevant")


def _question(scene: Scene, shape: Shape, kind: str) -> tuple[str, str, tuple[str, ...], Callable[[str], str]]:
    """(question, image answer, candidates, caption of a claimed value) for one question kind."""
    if kind == "colour":
        noun = scene.noun_phrase(shape)
        return f"What colour is {noun}?", shape.colour, COLOURS, lambda value: statement(noun, value)
    if kind == "count":
        return "How many shapes are there?", number_word(scene.count()), COUNTS, count_statement
    noun = f"the {shape.colour} {shape.kind}"
    return f"Where is {noun}?", shape.position, SLOTS, lambda value: position_statement(noun, value)


def _irrelevant(scene: Scene, shape: Shape, kind: str) -> str:
    """A true sentence about the scene with no word of the question's answer group."""
    if kind == "count" or (kind == "position" and scene.count(shape.kind) == 1):
        return statement(scene.noun_phrase(shape), shape.colour)
    return count_statement(number_word(scene.count()))


def build_caption_variants(seed: int) -> tuple[Sample, ...]:
    """120 scenes ``caption-variants/NNNN-<question kind>``, each with its seven queries (corrupted first)."""
    rng = np.random.default_rng([seed, STREAMS["caption-variants"]])
    blank = blank_canvas().render()
    samples = []
    for i in range(N_CAPTION_VARIANT_ITEMS):
        kind = QUESTION_KINDS[i % len(QUESTION_KINDS)]
        n_shapes = int(rng.integers(1, 4))
        drawn = geometry(rng)
        slots = words(rng.choice(SLOTS, size=n_shapes, replace=False))
        colours = words(rng.choice(COLOURS, size=n_shapes, replace=False))
        scene = build([(str(rng.choice(SHAPE_KINDS)), c, s) for c, s in zip(colours, slots)], drawn)
        asked = scene.shapes[int(rng.integers(len(scene.shapes)))]
        question, answer, candidates, caption_of = _question(scene, asked, kind)
        pool = [value for value in candidates if value != answer and not (kind == "count" and value == "zero")]
        wrong = str(rng.choice(pool))
        described = scene.shapes[int(rng.integers(len(scene.shapes)))]
        captions = {"matching": caption_of(answer), "corrupted": caption_of(wrong),
                    "irrelevant": _irrelevant(scene, described, kind)}
        text_answers = {"matching": answer, "corrupted": wrong, "irrelevant": answer}
        meta = (("question_kind", kind),)
        prompts = {variant: f"{caption} {question}" for variant, caption in captions.items()}
        queries = [
            Query("corrupted", prompts["corrupted"], candidates, answer, wrong, meta=meta),
            Query("none", question, candidates, answer, meta=meta),
            Query("matching", prompts["matching"], candidates, answer, meta=meta),
            Query("irrelevant", prompts["irrelevant"], candidates, answer, meta=meta),
        ]
        # text only: what the caption alone makes the model answer (the irrelevant caption implies nothing;
        # its "answer" is only a placeholder, the model's choice is what counts)
        queries += [Query(f"blank-{variant}", prompts[variant], candidates, text_answers[variant], image=blank,
                          meta=meta) for variant in VARIANTS]
        samples.append(Sample(f"caption-variants/{i:04d}-{kind}", scene.render(), prompts["corrupted"], answer=answer,
                              queries=tuple(queries)))
    return tuple(samples)
