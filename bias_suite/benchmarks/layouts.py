"""Scene layouts for the behaviour suites: variants of one scene that differ only in what a suite changes.

The behaviour built-ins (``language-prior``, ``conflict-levels``, ``caption-variants``, ``paired-images``)
draw a geometry once per item (:func:`geometry`: every slot's jittered centre and radius, with the ranges
of :func:`bias_suite.benchmarks.scenes.random_scene`) and build each variant from ``(kind, colour, slot)``
triples on it (:func:`build`), so a recoloured or moved shape is the only difference between two images.

Each suite seeds numpy with ``[seed, stream]`` (:data:`STREAMS`): the other built-ins use the bare seed and
the demo's training ``[seed, 2510, part]``, so no suite replays another's draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bias_suite.benchmarks.scenes import (
    COLOUR_RGB,
    MAX_SHAPES,
    POSITION_PHRASES,
    SLOT_CENTRES,
    Scene,
    Shape,
    number_word,
)

IMAGE_SIDE = 224  # pixels
COLOURS: tuple[str, ...] = tuple(COLOUR_RGB)  # the 8 colours a shape can have
SLOTS: tuple[str, ...] = tuple(SLOT_CENTRES)  # left, right, top, bottom, middle
COUNTS: tuple[str, ...] = tuple(number_word(n) for n in range(MAX_SHAPES + 1))  # zero … four
STREAMS = {"language-prior": 7101, "conflict-levels": 7102, "caption-variants": 7103, "paired-images": 7104}

# The "commonsense" colour of each shape kind that language-prior and conflict-levels treat as the prior.
# Declared here, not learned: the demo models' corpus states no such fact (README, "Behaviour suites"), so
# on them the declared-knowledge stage fails and the model-relative prior (its blank-canvas answer) is used.
TYPICAL_COLOUR: dict[str, str] = {"circle": "yellow", "square": "blue", "triangle": "green"}

Geometry = dict[str, tuple[tuple[int, int], int]]


def geometry(rng: np.random.Generator, side: int = IMAGE_SIDE) -> Geometry:
    """Per slot ``(centre, radius)`` in pixels, drawn once per item so that its variants differ only in what
    the suite changes (jitter ≤ 2 % and radius 8–12 % of ``side``, as ``random_scene`` draws them)."""
    drawn = {}
    for slot, (fx, fy) in SLOT_CENTRES.items():
        jitter = rng.integers(-round(0.02 * side), round(0.02 * side) + 1, size=2)
        radius = int(rng.integers(round(0.08 * side), round(0.12 * side) + 1))
        drawn[slot] = ((round(fx * side) + int(jitter[0]), round(fy * side) + int(jitter[1])), radius)
    return drawn


def build(specs: Sequence[tuple[str, str, str]], drawn: Geometry, side: int = IMAGE_SIDE) -> Scene:
    """The scene of ``(kind, colour, slot)`` triples on geometry ``drawn``; refuses layouts that break the scene
    invariants (at most one shape per slot, every colour at most once, 0–4 shapes)."""
    slots = [slot for _, _, slot in specs]
    colours = [colour for _, colour, _ in specs]
    if len(set(slots)) != len(slots) or len(set(colours)) != len(colours) or len(specs) > MAX_SHAPES:
        raise ValueError(f"invalid layout {list(specs)}: at most {MAX_SHAPES} shapes, slots and colours unique")
    return Scene(tuple(Shape(kind, colour, slot, drawn[slot][0], drawn[slot][1]) for kind, colour, slot in specs),
                 side)


def blank_canvas(side: int = IMAGE_SIDE) -> Scene:
    """The empty scene: a text-only stage still needs an image (the gate refuses prompts without one)."""
    return Scene((), side)


def statement(noun: str, colour: str) -> str:
    """``"The circle is red."``: the colour statement of the demo corpus."""
    return f"{noun[:1].upper()}{noun[1:]} is {colour}."


def count_statement(n_word: str) -> str:
    """``"There are two shapes in the picture."`` (``"There is one shape …"`` for one)."""
    return "There is one shape in the picture." if n_word == "one" else f"There are {n_word} shapes in the picture."


def position_statement(noun: str, slot: str) -> str:
    """``"The red circle is on the left."``."""
    return f"{noun[:1].upper()}{noun[1:]} is {POSITION_PHRASES[slot]}."


def words(values: Sequence[object]) -> list[str]:
    """numpy draws as plain strings."""
    return [str(value) for value in values]
