"""The ``paired-images`` built-in: MMVP-style pairs of images that differ in one attribute.

After "Eyes Wide Shut?" (Tong et al., MMVP): the same question is asked of two images whose answers
differ, and a pair counts only when both are answered right, so a model that answers without looking
scores 0 (it gives both the same answer) and coin flips score 0.25. Each of the 120 pairs is one layout of
1–3 shapes; image ``b`` changes exactly one thing (attributes take turns):

* ``colour``: the first shape recoloured to an unused colour — "What colour is the circle?";
* ``position``: the first shape moved to an empty slot — "Where is the red circle?";
* ``count``: one shape added in an empty slot — "How many shapes are there?";
* ``kind-count``: one shape's kind changed — "How many squares are there?" (the counts differ by one).

The two candidates are the pair's two answers in a seeded order (MMVP's (a)/(b)); which image is ``a``
(the probe) is seeded too.
"""

from __future__ import annotations

import numpy as np

from bias_suite.benchmarks.layouts import COLOURS, SLOTS, STREAMS, build, geometry, words
from bias_suite.benchmarks.sample import Query, Sample
from bias_suite.benchmarks.scenes import SHAPE_KINDS, number_word

N_PAIRED_IMAGE_ITEMS = 120
ATTRIBUTES = ("colour", "position", "count", "kind-count")


def build_paired_images(seed: int) -> tuple[Sample, ...]:
    """120 pairs ``paired-images/NNNN-<attribute>``: image ``a`` (the sample's) and ``b``, one question."""
    rng = np.random.default_rng([seed, STREAMS["paired-images"]])
    samples = []
    for i in range(N_PAIRED_IMAGE_ITEMS):
        attribute = ATTRIBUTES[i % len(ATTRIBUTES)]
        drawn = geometry(rng)
        n = int(rng.integers(1, 4))  # 1–3 shapes, so one more always fits
        slots = words(rng.permutation(SLOTS))
        colours = words(rng.permutation(COLOURS))
        specs = [(str(rng.choice(SHAPE_KINDS)), colours[j], slots[j]) for j in range(n)]
        first = build(specs, drawn)
        if attribute == "colour":
            second = build([(specs[0][0], colours[n], specs[0][2]), *specs[1:]], drawn)
            question, answers = f"What colour is {first.noun_phrase(first.shapes[0])}?", (specs[0][1], colours[n])
        elif attribute == "position":
            second = build([(specs[0][0], specs[0][1], slots[n]), *specs[1:]], drawn)
            question, answers = f"Where is the {specs[0][1]} {specs[0][0]}?", (specs[0][2], slots[n])
        elif attribute == "count":
            second = build([*specs, (str(rng.choice(SHAPE_KINDS)), colours[n], slots[n])], drawn)
            question, answers = "How many shapes are there?", (number_word(n), number_word(n + 1))
        else:
            target = str(rng.choice(SHAPE_KINDS))
            changed = target if specs[0][0] != target else str(rng.choice([k for k in SHAPE_KINDS if k != target]))
            second = build([(changed, specs[0][1], specs[0][2]), *specs[1:]], drawn)
            question = f"How many {target}s are there?"
            answers = (number_word(first.count(target)), number_word(second.count(target)))
        if answers[0] == answers[1]:
            raise AssertionError(f"paired-images item {i}: the pair's answers must differ ({answers})")
        candidates = answers if rng.random() < 0.5 else (answers[1], answers[0])
        images = (first.render(), second.render())
        if rng.random() < 0.5:  # which image is "a"
            images, answers = images[::-1], answers[::-1]
        meta = (("attribute", attribute),)
        queries = (Query("a", question, candidates, answers[0], meta=meta),
                   Query("b", question, candidates, answers[1], image=images[1], meta=meta))
        samples.append(Sample(f"paired-images/{i:04d}-{attribute}", images[0], question, answer=answers[0],
                              queries=queries))
    return tuple(samples)
