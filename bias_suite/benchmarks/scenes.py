"""Seeded scenes of coloured shapes with known ground truth, rendered with Pillow.

Shared by the ``shapes`` and ``conflict`` built-ins. Shape kinds, colours, positions and numbers are
words of the benchmarks' scene vocabulary (:mod:`bias_suite.benchmarks.vocabulary`).

Layout: shapes sit in five slots (left, right, top, bottom, middle) of a square canvas, at most one
shape per slot and every colour at most once per scene. So "the red square" and "the circle on the
left" always name exactly one shape, and each shape's position has exactly one correct word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from bias_suite.benchmarks.vocabulary import NUMBERS, OBJECTS

SHAPE_KINDS: tuple[str, ...] = tuple(kind for kind in OBJECTS if kind in ("circle", "square", "triangle"))

# RGB of each colour word; white and grey are left out (white is the background, grey is too close to it).
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 20),
    "black": (20, 20, 20),
    "orange": (245, 130, 20),
    "purple": (140, 50, 180),
    "brown": (130, 80, 30),
}
BACKGROUND_RGB = (255, 255, 255)

# Slot centres as fractions of the canvas side: (x, y), y downwards.
SLOT_CENTRES: dict[str, tuple[float, float]] = {
    "left": (1 / 6, 1 / 2),
    "right": (5 / 6, 1 / 2),
    "top": (1 / 2, 1 / 6),
    "bottom": (1 / 2, 5 / 6),
    "middle": (1 / 2, 1 / 2),
}
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "middle": "in the middle",
}
MAX_SHAPES = len(SLOT_CENTRES) - 1


@dataclass(frozen=True)
class Shape:
    """One shape: what it is, its colour and slot words, and where it is drawn (pixels)."""

    kind: str  # one of SHAPE_KINDS
    colour: str  # a key of COLOUR_RGB
    position: str  # a key of SLOT_CENTRES
    centre: tuple[int, int]  # (x, y) in pixels
    radius: int  # half the side of the shape's bounding box, pixels


@dataclass(frozen=True)
class Scene:
    """A square canvas of ``side`` pixels holding 1–4 shapes in distinct slots with distinct colours."""

    shapes: tuple[Shape, ...]
    side: int

    def render(self) -> Image.Image:
        """The scene as an RGB image of ``side × side`` pixels on a white background (no antialiasing)."""
        image = Image.new("RGB", (self.side, self.side), BACKGROUND_RGB)
        draw = ImageDraw.Draw(image)
        for shape in self.shapes:
            x, y, r = shape.centre[0], shape.centre[1], shape.radius
            fill = COLOUR_RGB[shape.colour]
            if shape.kind == "circle":
                draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
            elif shape.kind == "square":
                draw.rectangle((x - r, y - r, x + r, y + r), fill=fill)
            else:
                draw.polygon(((x, y - r), (x + r, y + r), (x - r, y + r)), fill=fill)
        return image

    def count(self, kind: str | None = None) -> int:
        """Number of shapes, or of shapes of ``kind``."""
        return sum(1 for shape in self.shapes if kind is None or shape.kind == kind)

    def noun_phrase(self, shape: Shape) -> str:
        """The shortest phrase naming exactly ``shape``: "the circle", else "the circle on the left"."""
        if self.count(shape.kind) == 1:
            return f"the {shape.kind}"
        return f"the {shape.kind} {POSITION_PHRASES[shape.position]}"


def random_scene(rng: np.random.Generator, n_shapes: int, side: int = 224) -> Scene:
    """A scene of ``n_shapes`` (1–4) random shapes; the same generator state gives the same scene.

    Radii are 8–12 % of ``side`` and centres jitter by up to 2 % of ``side``, so shapes in neighbouring
    slots never touch.
    """
    if not 1 <= n_shapes <= MAX_SHAPES:
        raise ValueError(f"n_shapes must be in 1..{MAX_SHAPES}, not {n_shapes}")
    slots = rng.choice(list(SLOT_CENTRES), size=n_shapes, replace=False)
    colours = rng.choice(list(COLOUR_RGB), size=n_shapes, replace=False)
    shapes = []
    for slot, colour in zip(slots, colours, strict=True):
        fx, fy = SLOT_CENTRES[str(slot)]
        jitter = rng.integers(-round(0.02 * side), round(0.02 * side) + 1, size=2)
        shapes.append(
            Shape(
                kind=str(rng.choice(SHAPE_KINDS)),
                colour=str(colour),
                position=str(slot),
                centre=(round(fx * side) + int(jitter[0]), round(fy * side) + int(jitter[1])),
                radius=int(rng.integers(round(0.08 * side), round(0.12 * side) + 1)),
            )
        )
    return Scene(tuple(shapes), side)


def number_word(n: int) -> str:
    """``n`` as an English word from the vocabulary's NUMBERS (0–10)."""
    return NUMBERS[n]
