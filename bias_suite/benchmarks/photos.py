"""The ``photos`` built-in: real photographs shipped inside scikit-image, each with several natural prompts.

Only images stored in the scikit-image wheel are used (``skimage.data`` functions that need ``pooch``
would download, so they are left out). Each photo is converted to RGB and downscaled (Lanczos) so its
longer side is at most 256 pixels. Answers are given only where the photo settles them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from PIL import Image

from bias_suite.benchmarks.sample import Sample
from bias_suite.errors import BenchmarkError

MAX_SIDE = 256  # pixels, longer side after downscaling
DESCRIBE = "Describe the image."


def skimage_data():
    """``skimage.data``, imported lazily so the library imports without scikit-image."""
    try:
        from skimage import data
    except ImportError as error:
        raise BenchmarkError('the "photos" benchmark needs scikit-image: pip install "scikit-image>=0.22"') from error
    return data


def skimage_photo(name: str) -> Callable[[], np.ndarray]:
    """Loader of ``skimage.data.<name>()``."""
    def load() -> np.ndarray:  # scikit-image's data module is imported on first use, not here
        return getattr(skimage_data(), name)()

    return load


def motorcycle() -> np.ndarray:
    """Left view of the Middlebury stereo motorcycle pair."""
    return skimage_data().stereo_motorcycle()[0]


# photo name -> (pixel loader, {prompt kind: (prompt, answer or None)})
PHOTOS: dict[str, tuple[Callable[[], np.ndarray], dict[str, tuple[str, str | None]]]] = {
    "astronaut": (skimage_photo("astronaut"), {
        "describe": (DESCRIBE, None),
        "count": ("How many people are in the picture?", "one"),
        "colour": ("What colour is the person's suit?", "orange"),
        "location": ("Where is the flag in the picture?", "left"),
    }),
    "camera": (skimage_photo("camera"), {
        "describe": (DESCRIBE, None),
        "object": ("What is on the tripod?", "camera"),
        "location": ("Where is the man standing, on the left or on the right?", "left"),
    }),
    "chelsea": (skimage_photo("chelsea"), {
        "describe": (DESCRIBE, None),
        "object": ("What animal is in the picture?", "cat"),
        "colour": ("What colour are the cat's eyes?", None),
    }),
    "clock": (skimage_photo("clock"), {
        "describe": (DESCRIBE, None),
        "object": ("What object is in the picture?", "clock"),
    }),
    "coffee": (skimage_photo("coffee"), {
        "describe": (DESCRIBE, None),
        "object": ("What drink is in the cup?", "coffee"),
        "colour": ("What colour is the cup?", "red"),
        "count": ("How many cups are there?", "one"),
    }),
    "coins": (skimage_photo("coins"), {
        "describe": (DESCRIBE, None),
        "object": ("What objects are in the picture?", "coins"),
        "count": ("How many coins are there?", "24"),
    }),
    "horse": (skimage_photo("horse"), {
        "describe": (DESCRIBE, None),
        "object": ("What animal is shown?", "horse"),
        "colour": ("What colour is the horse?", "black"),
    }),
    "hubble_deep_field": (skimage_photo("hubble_deep_field"), {
        "describe": (DESCRIBE, None),
        "colour": ("What colour is the background?", "black"),
        "count": ("About how many bright objects can you see?", None),
    }),
    "immunohistochemistry": (skimage_photo("immunohistochemistry"), {
        "describe": (DESCRIBE, None),
        "colour": ("What colour is the stained tissue?", "brown"),
    }),
    "moon": (skimage_photo("moon"), {
        "describe": (DESCRIBE, None),
        "object": ("What is on the surface?", None),
    }),
    "motorcycle": (motorcycle, {
        "describe": (DESCRIBE, None),
        "object": ("What vehicle is in the picture?", "motorcycle"),
        "colour": ("What colour is the motorcycle?", "red"),
    }),
    "rocket": (skimage_photo("rocket"), {
        "describe": (DESCRIBE, None),
        "object": ("What is in the middle of the picture?", "rocket"),
        "colour": ("What colour is the sky?", "blue"),
        "location": ("Where is the rocket?", None),
    }),
}


def to_rgb_thumbnail(pixels: np.ndarray, max_side: int = MAX_SIDE) -> Image.Image:
    """``pixels`` (``[H, W]`` bool/uint8 or ``[H, W, 3|4]`` uint8) as an RGB image, longer side <= ``max_side``."""
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    image = Image.fromarray(pixels).convert("RGB")
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS
        )
    return image


@functools.cache
def photo_thumbnail(photo: str) -> Image.Image:
    """The downscaled RGB photo, decoded once per process; callers get copies (see :func:`build_photos`)."""
    load_pixels, _ = PHOTOS[photo]
    return to_rgb_thumbnail(load_pixels())


def build_photos(seed: int) -> tuple[Sample, ...]:
    """One sample per photo and prompt, ids ``photos/<photo>/<kind>``. Nothing is random; ``seed`` only
    matters to the subsample taken afterwards."""
    samples = []
    for photo, (_, prompts) in PHOTOS.items():
        image = photo_thumbnail(photo)
        for kind, (prompt, answer) in prompts.items():
            samples.append(Sample(f"photos/{photo}/{kind}", image.copy(), prompt, answer=answer))
    return tuple(samples)
