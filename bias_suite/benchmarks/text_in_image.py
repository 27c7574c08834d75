"""The ``text-in-image`` built-in: a rendered word or number, with an OCR question and the text as the answer.

Words come from the scene vocabulary's OBJECTS (:mod:`bias_suite.benchmarks.vocabulary`; the tiny
tokenizer's corpus has "What word is written in the image? The word is {obj}."); numbers are 2–3 digits.
Font size, colours and placement are seeded.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bias_suite.benchmarks.sample import Sample
from bias_suite.benchmarks.vocabulary import OBJECTS

N_TEXT_SAMPLES = 16
IMAGE_SIDE = 224  # pixels
FONT_SIZES = (32, 56)  # inclusive range, pixels
WORD_QUESTION = "What word is written in the image?"
NUMBER_QUESTION = "What number is written in the image?"

# (text RGB, background RGB) pairs with strong contrast.
INK_ON_PAPER: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((0, 0, 0), (255, 255, 255)),
    ((255, 255, 255), (0, 0, 0)),
    ((30, 70, 220), (250, 235, 120)),
    ((200, 20, 20), (245, 245, 245)),
    ((255, 255, 255), (30, 110, 60)),
)


def render_text(text: str, rng: np.random.Generator, side: int = IMAGE_SIDE) -> Image.Image:
    """``text`` on a ``side × side`` RGB canvas, in Pillow's bundled font, at a seeded size and place."""
    ink, paper = INK_ON_PAPER[int(rng.integers(len(INK_ON_PAPER)))]
    font = ImageFont.load_default(size=int(rng.integers(FONT_SIZES[0], FONT_SIZES[1] + 1)))
    left, top, right, bottom = font.getbbox(text)
    slack_x, slack_y = max(side - (right - left), 0), max(side - (bottom - top), 0)
    x = int(rng.integers(slack_x // 4, slack_x - slack_x // 4 + 1)) - left
    y = int(rng.integers(slack_y // 4, slack_y - slack_y // 4 + 1)) - top
    image = Image.new("RGB", (side, side), paper)
    ImageDraw.Draw(image).text((x, y), text, fill=ink, font=font)
    return image


def build_text_in_image(seed: int) -> tuple[Sample, ...]:
    """16 samples ``text-in-image/NNNN-<word|number>``: a 224×224 RGB image of one word (even NNNN) or
    one 2–3 digit number (odd NNNN), the matching OCR question, and the text as the answer."""
    rng = np.random.default_rng(seed)
    words = iter(rng.permutation(OBJECTS))
    samples = []
    for i in range(N_TEXT_SAMPLES):
        if i % 2 == 0:
            kind, text, question = "word", str(next(words)), WORD_QUESTION
        else:
            kind, text, question = "number", str(int(rng.integers(10, 1000))), NUMBER_QUESTION
        samples.append(Sample(f"text-in-image/{i:04d}-{kind}", render_text(text, rng), question, answer=text))
    return tuple(samples)
