"""Read a rendered shapes scene back from its pixels, independently of how it was generated.

The oracle for the ``shapes`` and ``conflict`` answers: every colour appears once per scene, so the
pixels of one colour are one shape; its bounding-box fill ratio tells the kind (square 1, circle π/4,
triangle 1/2) and its centroid the nearest slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image
from skimage.measure import label

from bias_suite.benchmarks.scenes import COLOUR_RGB, SLOT_CENTRES


@dataclass(frozen=True)
class SeenShape:
    kind: str
    colour: str
    position: str


def read_scene(image: Image.Image) -> list[SeenShape]:
    """The shapes visible in ``image``, one per colour present."""
    pixels = np.asarray(image.convert("RGB"))
    side = pixels.shape[0]
    seen = []
    for colour, rgb in COLOUR_RGB.items():
        mask = (pixels == np.array(rgb, dtype=np.uint8)).all(axis=-1)
        if mask.sum() < 20:
            continue
        rows, cols = np.nonzero(mask)
        fill = mask.sum() / ((np.ptp(rows) + 1) * (np.ptp(cols) + 1))
        kind = "square" if fill > 0.9 else "circle" if fill > 0.65 else "triangle"
        centre = np.array([cols.mean(), rows.mean()]) / side
        position = min(SLOT_CENTRES, key=lambda slot: np.linalg.norm(centre - np.array(SLOT_CENTRES[slot])))
        seen.append(SeenShape(kind, colour, position))
    return seen


def count_blobs(image: Image.Image) -> int:
    """Connected regions of non-background pixels."""
    foreground = (np.asarray(image.convert("RGB")) != 255).any(axis=-1)
    return int(label(foreground, connectivity=2).max())


PHRASE_POSITIONS = {"on the left": "left", "on the right": "right", "at the top": "top",
                    "at the bottom": "bottom", "in the middle": "middle"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
COLOUR_QUESTION = re.compile(rf"What colour is the (\w+)(?: ({'|'.join(PHRASE_POSITIONS)}))?\?")
POSITION_QUESTION = re.compile(r"Where is the (\w+) (\w+)\?")
KIND_COUNT_QUESTION = re.compile(r"How many (\w+)s are there\?")


def answer_from_pixels(question: str, image: Image.Image) -> str:
    """The answer to a shapes question, read off the image."""
    shapes = read_scene(image)
    if question == "How many shapes are there?":
        return NUMBER_WORDS[count_blobs(image)]
    if match := KIND_COUNT_QUESTION.fullmatch(question):
        return NUMBER_WORDS[sum(shape.kind == match[1] for shape in shapes)]
    if match := POSITION_QUESTION.fullmatch(question):
        (shape,) = [s for s in shapes if (s.colour, s.kind) == (match[1], match[2])]
        return shape.position
    if match := COLOUR_QUESTION.fullmatch(question):
        candidates = [s for s in shapes if s.kind == match[1]]
        if match[2] is not None:
            candidates = [s for s in candidates if s.position == PHRASE_POSITIONS[match[2]]]
        (shape,) = candidates
        return shape.colour
    raise ValueError(f"not a shapes question: {question!r}")
