"""Caption-variant JSONL files (bias-suite's own layout): one question per image with captions of each kind.

One object per line::

    {"id": "s1", "image": "images/s1.png", "question": "What colour is the circle?", "answer": "red",
     "choices": ["red", "blue", "green"],
     "captions": {"matching": "The circle is red.", "corrupted": "The circle is blue.",
                  "irrelevant": "There is one shape in the picture."},
     "caption_answers": {"corrupted": "blue"}}

``image`` is relative to the file and confined to its folder. Any subset of the variants (``matching``,
``corrupted``, ``irrelevant``) may be given; the question alone (``none``) is always scored, and so is each
captioned prompt on a blank canvas of the image's size (the model's text-only answer, for Words or
Vision's text preference). ``caption_answers.corrupted`` (required with a corrupted caption) is one of the
choices and differs from ``answer``. The probe is the corrupted prompt when there is one, else the question
alone. Metrics: as the ``caption-variants`` built-in (:mod:`bias_suite.metrics.suites`).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

from PIL import Image

from bias_suite.benchmarks.rows import PendingSample, confined_image_path, jsonl_objects, open_image_file
from bias_suite.benchmarks.sample import Query
from bias_suite.errors import BenchmarkError

VARIANTS = ("matching", "corrupted", "irrelevant")
REQUIRED = ("image", "question", "answer", "choices", "captions")
LAYOUT = ("caption-variant layout: one object per line with 'image', 'question', 'answer', 'choices', "
          "'captions' {matching, corrupted, irrelevant}, 'caption_answers' {corrupted}, optional 'id'")
BLANK_RGB = (255, 255, 255)


def looks_like_caption_variants(fields: dict) -> bool:
    return "captions" in fields


def read_caption_file(path: Path, *, allow_paths_outside: bool = False) -> list[PendingSample]:
    """Lines of a caption-variant JSONL file as pending samples; images are read when a line is kept."""
    pending = []
    for where, fields in jsonl_objects(path, f"({LAYOUT})"):
        row = _row(fields, where)
        image_path = confined_image_path(path.parent, row["image"], where, allow_paths_outside)
        read = cache(lambda image_path=image_path, at=where: open_image_file(
            image_path, at, relative_to=f"the JSONL file's folder {str(path.parent)!r}"))
        queries = _queries(row)
        pending.append(PendingSample(
            sample_id=str(row.get("id", len(pending))), location=where, prompt=queries[0].prompt,
            answer=row["answer"], read_image=read,
            read_queries=lambda queries=queries, read=read: tuple(
                query if query.image is None else _on_blank(query, read()) for query in queries)))
    if not pending:
        raise BenchmarkError(f"benchmark file {str(path)!r} is empty ({LAYOUT})")
    return pending


def _row(row: dict, where: str) -> dict:
    missing = [key for key in REQUIRED if key not in row]
    if missing:
        raise BenchmarkError(f"{where}: no key {', '.join(repr(k) for k in missing)} ({LAYOUT})")
    for key in ("image", "question", "answer"):
        if not isinstance(row[key], str) or not row[key].strip():
            raise BenchmarkError(f"{where}, key {key!r}: expected a non-empty string, got {row[key]!r}")
    choices = row["choices"]
    if not (isinstance(choices, list) and len(choices) >= 2 and all(isinstance(c, str) and c.strip() for c in choices)
            and len(set(choices)) == len(choices)):
        raise BenchmarkError(f"{where}, key 'choices': expected a list of at least two different strings, "
                             f"got {choices!r}")
    if row["answer"] not in choices:
        raise BenchmarkError(f"{where}, key 'answer': {row['answer']!r} is not one of 'choices' {choices}")
    captions = row["captions"]
    if not isinstance(captions, dict) or set(captions) - set(VARIANTS) or not all(
            isinstance(text, str) and text.strip() for text in captions.values()):
        raise BenchmarkError(f"{where}, key 'captions': expected an object from {list(VARIANTS)} to caption texts, "
                             f"got {captions!r}")
    answers = row.get("caption_answers", {})
    if not isinstance(answers, dict):
        raise BenchmarkError(f"{where}, key 'caption_answers': expected an object, got {answers!r}")
    if "corrupted" in captions:
        claimed = answers.get("corrupted")
        if claimed not in choices or claimed == row["answer"]:
            raise BenchmarkError(f"{where}, key 'caption_answers.corrupted': the corrupted caption's answer must be "
                                 f"one of 'choices' other than 'answer' {row['answer']!r}, got {claimed!r}")
    return row


def _queries(row: dict) -> tuple[Query, ...]:
    """The probe first; blank-canvas queries carry a placeholder image until the item's image is read."""
    captions, choices, answer = row["captions"], tuple(row["choices"]), row["answer"]
    claimed = row.get("caption_answers", {}).get("corrupted")
    prompts = {variant: f"{captions[variant].strip()} {row['question']}" for variant in VARIANTS if variant in captions}
    placeholder = Image.new("RGB", (1, 1), BLANK_RGB)
    captioned = [Query(variant, prompts[variant], choices, answer, claimed if variant == "corrupted" else None)
                 for variant in VARIANTS if variant in prompts]
    none = Query("none", row["question"], choices, answer)
    text_only = [Query(f"blank-{variant}", prompts[variant], choices, claimed if variant == "corrupted" else answer,
                       image=placeholder) for variant in VARIANTS if variant in prompts]
    if "corrupted" in prompts:
        return (captioned[[q.role for q in captioned].index("corrupted")],
                none, *[q for q in captioned if q.role != "corrupted"], *text_only)
    return (none, *captioned, *text_only)


def _on_blank(query: Query, image: Image.Image) -> Query:
    """``query`` asked about a blank canvas of ``image``'s size."""
    return replace(query, image=Image.new("RGB", image.size, BLANK_RGB))
