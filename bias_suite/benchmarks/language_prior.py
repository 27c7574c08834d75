"""The ``language-prior`` built-in: VLind-Bench's stages on rendered scenes, plus the model's own prior.

Each of the 120 items is a target shape of kind K in a colour c that is not K's declared typical colour
(:data:`~bias_suite.benchmarks.layouts.TYPICAL_COLOUR`), with one or two distractors of the other kinds in
other atypical colours, so "the circle" names the target and the typical colour is nowhere in the image.
The factual image is the same layout with only the target recoloured typical. Seven queries per item:

========================  ==============  ==========================================  ==============
role                      image           prompt                                      answer (trap)
========================  ==============  ==========================================  ==============
``prior`` (probe; LP)     counterfactual  What colour is the circle?                  c (typical)
``knowledge`` (CK)        blank canvas    What colour are circles usually?            typical
``perception`` (VP)       counterfactual  How many shapes are there?                  the count
``perception-where`` (VP) counterfactual  Where is the {colour} {kind}? (a distractor)  its slot
``bias`` (CB)             counterfactual  The circle is c. What colour is the circle?  c (typical)
``prior-factual``         factual         What colour is the circle?                  typical
``prior-blank``           blank canvas    What colour is the circle?                  (the model's prior)
========================  ==============  ==========================================  ==============

VLind's stages need a commonsense the model learned from text (CK). The demo models were never told one,
so :mod:`bias_suite.metrics.suites` also measures the **model-relative prior**: the model's own answer to
the prior question on the blank canvas (``prior-blank``), and how often it sticks to it when the image
shows another colour (``prior_adherence_rate``). Perception asks what the colour prior cannot answer (a
count and a distractor's place), as VLind asks about objects rather than the counterfactual attribute.
"""

from __future__ import annotations

import numpy as np

from bias_suite.benchmarks.layouts import (
    COLOURS,
    COUNTS,
    SLOTS,
    STREAMS,
    TYPICAL_COLOUR,
    blank_canvas,
    build,
    geometry,
    statement,
    words,
)
from bias_suite.benchmarks.sample import Query, Sample
from bias_suite.benchmarks.scenes import SHAPE_KINDS, number_word

N_LANGUAGE_PRIOR_ITEMS = 120


def build_language_prior(seed: int) -> tuple[Sample, ...]:
    """120 items ``language-prior/NNNN-<kind>``; kinds take turns, the counterfactual colour cycles through
    the seven atypical ones, so every (kind, colour) pair occurs about equally often."""
    rng = np.random.default_rng([seed, STREAMS["language-prior"]])
    blank = blank_canvas().render()
    samples = []
    for i in range(N_LANGUAGE_PRIOR_ITEMS):
        kind = SHAPE_KINDS[i % len(SHAPE_KINDS)]
        typical = TYPICAL_COLOUR[kind]
        atypical = [colour for colour in COLOURS if colour != typical]
        colour = atypical[(i // len(SHAPE_KINDS)) % len(atypical)]
        others = words(rng.permutation([c for c in atypical if c != colour]))
        slots = words(rng.permutation(SLOTS))
        other_kinds = [k for k in SHAPE_KINDS if k != kind]
        n_distractors = int(rng.integers(1, 3))
        distractors = [(str(rng.choice(other_kinds)), others[j], slots[1 + j]) for j in range(n_distractors)]
        drawn = geometry(rng)
        counterfactual = build([(kind, colour, slots[0]), *distractors], drawn)
        factual = build([(kind, typical, slots[0]), *distractors], drawn)
        noun = counterfactual.noun_phrase(counterfactual.shapes[0])  # "the circle": the only one of its kind
        question = f"What colour is {noun}?"
        d_kind, d_colour, d_slot = distractors[int(rng.integers(n_distractors))]
        meta = (("kind", kind), ("typical", typical), ("colour", colour))
        queries = (
            Query("prior", question, COLOURS, colour, typical, meta=meta),
            Query("knowledge", f"What colour are {kind}s usually?", COLOURS, typical, image=blank, meta=meta),
            Query("perception", "How many shapes are there?", COUNTS, number_word(counterfactual.count()),
                  meta=meta),
            Query("perception-where", f"Where is the {d_colour} {d_kind}?", SLOTS, d_slot, meta=meta),
            Query("bias", f"{statement(noun, colour)} {question}", COLOURS, colour, typical, meta=meta),
            Query("prior-factual", question, COLOURS, typical, image=factual.render(), meta=meta),
            # no image answer exists on the blank canvas: only the model's choice is used (its prior)
            Query("prior-blank", question, COLOURS, typical, image=blank, meta=meta),
        )
        samples.append(Sample(f"language-prior/{i:04d}-{kind}", counterfactual.render(), question, answer=colour,
                              queries=queries))
    return tuple(samples)
