"""JSON Lines files (UTF-8): one JSON object per line, ``image`` a path relative to the JSONL file's folder.

Example line: ``{"id": "cat-1", "image": "images/cat.png", "question": "What animal is this?", "answer": "cat"}``.
Blank lines are skipped. Image paths must stay inside the file's folder unless the caller allows otherwise.
"""

from __future__ import annotations

from pathlib import Path

from bias_suite.benchmarks.rows import (
    IMAGE_COLUMN,
    PendingSample,
    confined_image_path,
    jsonl_objects,
    open_image_file,
    pending_from_row,
    require_columns,
)
from bias_suite.errors import BenchmarkError


def read_jsonl(path: Path, *, allow_paths_outside: bool = False) -> list[PendingSample]:
    """Lines of a JSONL benchmark as pending samples; images are read when a sample is kept.

    allow_paths_outside: accept image paths that resolve outside the JSONL file's folder.
    """
    folder = path.parent
    pending = []
    for location, fields in jsonl_objects(path, "with 'image' and 'question'"):
        require_columns(list(fields), location, noun="key")
        if not isinstance(fields[IMAGE_COLUMN], str):
            raise BenchmarkError(
                f"{location}: {IMAGE_COLUMN!r} must be an image path relative to the JSONL file, "
                f"not {fields[IMAGE_COLUMN]!r}"
            )
        image_path = confined_image_path(folder, fields[IMAGE_COLUMN], location, allow_paths_outside)
        pending.append(
            pending_from_row(
                fields, len(pending), location,
                lambda image_path=image_path, at=location: open_image_file(
                    image_path, at, relative_to=f"the JSONL file's folder {str(folder)!r}"
                ),
            )
        )
    if not pending:
        raise BenchmarkError(f"benchmark file {str(path)!r} is empty: expected one JSON object per line with "
                             "'image' (a path relative to the file) and 'question'")
    return pending
