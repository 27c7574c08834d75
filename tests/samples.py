"""Samples for capture tests: random images of different sizes, questions of different lengths."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bias_suite.benchmarks.sample import Sample

QUESTIONS = (
    "What colour is the cat on the left of the picture?",
    "How many?",
    "Where is the red ball? Answer with one word.",
    "Describe the image.",
)


def make_samples(n: int, seed: int = 0) -> list[Sample]:
    """``n`` samples with random images of different sizes and questions of different lengths
    (so a batch of them is padded)."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        height, width = 48 + 8 * (i % 3), 64 + 8 * (i % 4)
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        samples.append(Sample(f"sample-{i}", Image.fromarray(pixels), QUESTIONS[i % len(QUESTIONS)]))
    return samples
