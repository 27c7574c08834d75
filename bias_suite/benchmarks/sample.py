"""The unit every benchmark yields and every wing above consumes: one image with its question.

Behaviour items (the ``language-prior``, ``conflict-levels``, ``caption-variants`` and ``paired-images``
built-ins and the MMVP, VLind-Bench, V-FAT and caption-variant files) carry several scored prompts,
:class:`Query` s, that share the item; capture sees the item once, through its first query (the probe).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from PIL import Image

from bias_suite.errors import BenchmarkError


@dataclass(frozen=True)
class Query:
    """One scored prompt of a behaviour item: the model reads ``image`` and ``prompt``, and every candidate
    answer is scored by its teacher-forced log-likelihood (nats), all in one fixed order.

    role: what the query is within its item (a VLind stage, a V-FAT level, a caption variant, a pair member).
    candidates: the answers scored, in a fixed order (a tie goes to the first); at least two, all different.
    answer: the candidate the pixels support (for text-only stages: the one the text supports).
    trap: the candidate a text or prior bias would pick instead, when the design has one.
    image: the query's own image; None means the item's image (``Sample.image``).
    meta: descriptive ``(key, value)`` pairs (question kind, attribute, …), part of the content hash.
    """

    role: str
    prompt: str
    candidates: tuple[str, ...]
    answer: str
    trap: str | None = None
    image: Image.Image | None = None
    meta: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", tuple(self.candidates))
        object.__setattr__(self, "meta", tuple((str(key), str(value)) for key, value in self.meta))
        where = f"query {self.role!r} ({self.prompt!r})"
        if len(self.candidates) < 2 or len(set(self.candidates)) != len(self.candidates) or not all(
                isinstance(c, str) and c.strip() for c in self.candidates):
            raise BenchmarkError(f"{where}: candidates must be at least two different non-empty strings, "
                                 f"not {list(self.candidates)}")
        if self.answer not in self.candidates:
            raise BenchmarkError(f"{where}: answer {self.answer!r} is not one of its candidates "
                                 f"{list(self.candidates)}")
        if self.trap is not None and (self.trap not in self.candidates or self.trap == self.answer):
            raise BenchmarkError(f"{where}: trap {self.trap!r} must be another of its candidates "
                                 f"{list(self.candidates)}, not the answer")

    @property
    def info(self) -> Mapping[str, str]:
        """``meta`` as a mapping."""
        return dict(self.meta)


@dataclass(frozen=True)
class Sample:
    """One benchmark item. ``prompt`` is the user's question, before any chat template.

    For image-text conflict items, ``conflicting_caption`` is the text that contradicts the image,
    ``answer`` the answer the image supports and ``caption_answer`` the one the caption implies.

    ``queries``: the scored prompts of a behaviour item. The first is the item's **probe** — the prompt
    capture measures (where text can override the image): it uses the sample's own image (``image=None``),
    ``prompt`` and ``answer``.
    """

    sample_id: str
    image: Image.Image
    prompt: str
    answer: str | None = None
    conflicting_caption: str | None = None
    caption_answer: str | None = None
    queries: tuple[Query, ...] = ()
    source: str | None = field(default=None, compare=False)  # where it was read ("bench.jsonl line 4"), for errors

    def __post_init__(self) -> None:
        object.__setattr__(self, "queries", tuple(self.queries))
        if self.queries:
            probe = self.queries[0]
            if probe.image is not None or probe.prompt != self.prompt or probe.answer != self.answer:
                raise BenchmarkError(
                    f"sample {self.sample_id!r}: its first query ({probe.role!r}) is its probe and must use the "
                    "sample's own image, prompt and answer (image=None)")
            roles = [query.role for query in self.queries]
            if len(set(roles)) != len(roles):
                raise BenchmarkError(f"sample {self.sample_id!r}: query roles must be unique, not {roles}")

    def query_image(self, query: Query) -> Image.Image:
        """The image ``query`` is asked about."""
        return self.image if query.image is None else query.image
