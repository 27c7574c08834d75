"""VLMEvalKit TSV files (MMBench and friends): one row per sample, the image as base64 in the ``image`` column.

As in VLMEvalKit, a row whose ``image`` cell is short (64 characters or fewer) and equals another row's
``index`` reuses that row's image; MMBench stores each image once this way.
"""

from __future__ import annotations

import base64
import binascii
import csv
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from PIL import Image

from bias_suite.benchmarks.rows import (
    IMAGE_COLUMN,
    PendingSample,
    decode_image,
    not_utf8_error,
    pending_from_row,
    require_columns,
)
from bias_suite.errors import BenchmarkError

IMAGE_REFERENCE_MAX_CHARS = 64


@contextmanager
def unlimited_csv_fields() -> Iterator[None]:
    """Lift the csv module's 128 kB field limit (base64 images are larger) for the duration only."""
    previous = csv.field_size_limit()
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            break
        except OverflowError:  # C long is 32 bits on some platforms
            limit //= 2
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def decode_base64_image(text: str, location: str) -> Image.Image:
    """A base64 cell as a loaded RGB image; corrupt base64 and non-image bytes raise naming ``location``."""
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise BenchmarkError(
            f"{location}: column {IMAGE_COLUMN!r} is not valid base64 ({error}); "
            "it must hold the base64 of an encoded image (PNG or JPEG), as VLMEvalKit writes it"
        ) from error
    return decode_image(data, f"{location}, column {IMAGE_COLUMN!r}")


def tsv_rows(path: Path) -> list[tuple[dict[str, str], str]]:
    """``(cells by column, location)`` of every non-blank row after the header; checks header and widths."""
    with path.open(encoding="utf-8-sig", newline="") as file, unlimited_csv_fields():
        reader = csv.reader(file, delimiter="\t")
        header = next(reader, [])
        if not any(name.strip() for name in header):
            raise BenchmarkError(f"benchmark file {str(path)!r} is empty: expected a header row "
                                 "(index, image, question, ...) and one row per sample")
        require_columns(header, f"benchmark file {str(path)!r}")
        rows: list[tuple[dict[str, str], str]] = []
        for cells in reader:
            location = f"{path} line {reader.line_num} (row {len(rows)})"
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                raise BenchmarkError(f"{location} has {len(cells)} tab-separated fields but the header has "
                                     f"{len(header)}; quote cells that contain tabs or newlines")
            rows.append((dict(zip(header, cells, strict=True)), location))
    return rows


def read_tsv(path: Path) -> list[PendingSample]:
    """Rows of a VLMEvalKit TSV (tab-separated, header first, UTF-8) as pending samples."""
    try:
        rows = tsv_rows(path)
    except UnicodeDecodeError as error:
        raise not_utf8_error(path, error) from error
    images_by_index = {fields["index"]: fields[IMAGE_COLUMN] for fields, _ in rows if "index" in fields}
    pending = []
    for row, (fields, location) in enumerate(rows):
        cell = fields[IMAGE_COLUMN]
        if len(cell) <= IMAGE_REFERENCE_MAX_CHARS and len(images_by_index.get(cell, "")) > IMAGE_REFERENCE_MAX_CHARS:
            cell = images_by_index[cell]
        pending.append(pending_from_row(fields, row, location, partial(decode_base64_image, cell, location)))
    return pending
