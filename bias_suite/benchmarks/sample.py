"""The unit every benchmark yields and every wing above consumes: one image with its question."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image


@dataclass(frozen=True)
class Sample:
    """One benchmark item. ``prompt`` is the user's question, before any chat template.

    For image-text conflict items, ``conflicting_caption`` is the text that contradicts the image,
    ``answer`` the answer the image supports and ``caption_answer`` the one the caption implies.
    """

    sample_id: str
    image: Image.Image
    prompt: str
    answer: str | None = None
    conflicting_caption: str | None = None
    caption_answer: str | None = None
    source: str | None = field(default=None, compare=False)  # where it was read ("bench.jsonl line 4"), for errors
