"""The ``conflict-levels`` built-in: V-FAT's three levels of text-image conflict, plus a control level.

V-FAT (arXiv 2601.04897) separates (L1) internal corpus bias, from atypical images, (L2) external
instruction bias, from misleading instructions, and (L3) both together. No release of V-FAT was found, so
this design follows the paper's abstract; its robustness score is reconstructed (see
:mod:`bias_suite.metrics.suites`). Each of the 120 items is one layout, a target shape of kind K with
0–2 shapes of other kinds, asked about in four ways (candidates: the 8 colours):

=========  ============================  ====================================  ==========  ==========
level      image                         prompt                                answer      trap
=========  ============================  ====================================  ==========  ==========
L3 (probe) atypical: target colour c     The circle is {typical}. What colour…  c           typical
L0         typical: target typical(K)    What colour is the circle?            typical     —
L1         atypical                      What colour is the circle?            c           typical
L2         typical                       The circle is {m}. What colour…        typical     m
=========  ============================  ====================================  ==========  ==========

``typical`` is the declared :data:`~bias_suite.benchmarks.layouts.TYPICAL_COLOUR`; a model that learned no
such prior (the demos) meets L1 as a plain perception question and L3 as a misleading instruction.
"""

from __future__ import annotations

import numpy as np

from bias_suite.benchmarks.layouts import COLOURS, SLOTS, STREAMS, TYPICAL_COLOUR, build, geometry, statement, words
from bias_suite.benchmarks.sample import Query, Sample
from bias_suite.benchmarks.scenes import SHAPE_KINDS

N_CONFLICT_LEVEL_ITEMS = 120
LEVELS = ("L0", "L1", "L2", "L3")


def build_conflict_levels(seed: int) -> tuple[Sample, ...]:
    """120 layouts ``conflict-levels/NNNN-<kind>``, each with its four levels (L3 first: the probe)."""
    rng = np.random.default_rng([seed, STREAMS["conflict-levels"]])
    samples = []
    for i in range(N_CONFLICT_LEVEL_ITEMS):
        kind = SHAPE_KINDS[i % len(SHAPE_KINDS)]
        typical = TYPICAL_COLOUR[kind]
        atypical = [colour for colour in COLOURS if colour != typical]
        colour = str(rng.choice(atypical))
        misleading = str(rng.choice([c for c in atypical if c != colour]))  # L2's false claim
        n_other = int(rng.integers(0, 3))
        slots = words(rng.permutation(SLOTS))
        free = [c for c in atypical if c not in (colour, misleading)]
        other_kinds = [k for k in SHAPE_KINDS if k != kind]
        others = [(str(rng.choice(other_kinds)), str(c), slots[1 + j])
                  for j, c in enumerate(rng.choice(free, size=n_other, replace=False))]
        drawn = geometry(rng)
        typical_scene = build([(kind, typical, slots[0]), *others], drawn)
        atypical_scene = build([(kind, colour, slots[0]), *others], drawn)
        noun = typical_scene.noun_phrase(typical_scene.shapes[0])  # "the circle": the only one of its kind
        question = f"What colour is {noun}?"
        meta = (("kind", kind), ("typical", typical))
        typical_image = typical_scene.render()
        l3_prompt = f"{statement(noun, typical)} {question}"
        queries = (
            Query("L3", l3_prompt, COLOURS, colour, typical, meta=meta),
            Query("L0", question, COLOURS, typical, image=typical_image, meta=meta),
            Query("L1", question, COLOURS, colour, typical, meta=meta),  # the item's own (atypical) image
            Query("L2", f"{statement(noun, misleading)} {question}", COLOURS, typical, misleading,
                  image=typical_image, meta=meta),
        )
        samples.append(Sample(f"conflict-levels/{i:04d}-{kind}", atypical_scene.render(), l3_prompt, answer=colour,
                              queries=queries))
    return tuple(samples)
