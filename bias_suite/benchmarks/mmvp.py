"""MMVP folders ("Eyes Wide Shut?", Tong et al.): ``Questions.csv`` and ``MMVP Images/<Index>.jpg``.

The layout of the Hugging Face dataset ``MMVP/MMVP``, as the official evaluation (tsb0601/MMVP,
``scripts/evaluate_mllm.py``) reads it::

    MMVP/
    ├── MMVP Images/1.jpg … 300.jpg
    └── Questions.csv          Index (spelled "lndex" in the released file),Question,Options,Correct Answer

``Options`` reads ``(a) Open (b) Closed`` and ``Correct Answer`` ``(a)``. Consecutive rows form a pair (rows
1–2, 3–4, …): the same question about two images whose answers differ, scored together — a pair counts only
when both are right (MMVP's accuracy). The prompt is the official one, ``Question + " " + Options``; the
candidates are the option texts, scored as answers. The image is the one the ``Index`` column names (the
official script counts rows instead; a mismatch is warned about). One sample per pair: its first row is the
probe, its second a query with its own image.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

from bias_suite.benchmarks.rows import PendingSample, confined_image_path, not_utf8_error, open_image_file
from bias_suite.benchmarks.sample import Query
from bias_suite.errors import BenchmarkError, BiasSuiteWarning

QUESTIONS_FILE = "Questions.csv"
IMAGES_FOLDER = "MMVP Images"
INDEX_COLUMNS = ("Index", "lndex")  # the released CSV spells its first header with a lower-case L
COLUMNS = ("Question", "Options", "Correct Answer")
OPTION = re.compile(r"\(([A-Za-z])\)\s*")
ANSWER = re.compile(r"\s*\(?([A-Za-z])\)?")


def is_mmvp_folder(path: Path) -> bool:
    return path.is_dir() and (path / QUESTIONS_FILE).is_file()


def parse_options(text: str, where: str) -> dict[str, str]:
    """``"(a) Open (b) Closed"`` → ``{"a": "Open", "b": "Closed"}``; at least two distinct, non-empty options."""
    parts = OPTION.split(text or "")
    options = {parts[i].lower(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    texts = list(options.values())
    if parts[0].strip() or len(options) < 2 or not all(texts) or len(set(texts)) != len(texts):
        raise BenchmarkError(f"{where}, column 'Options': expected two or more different options written "
                             f"'(a) … (b) …', got {text!r}")
    return options


def read_mmvp(folder: Path, *, allow_paths_outside: bool = False) -> list[PendingSample]:
    """One pending sample per pair of rows of ``folder/Questions.csv``; images are read when a pair is kept."""
    path = folder / QUESTIONS_FILE
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = [(dict(row), reader.line_num) for row in reader
                    if any((cell or "").strip() for cell in row.values() if isinstance(cell, str))]
    except UnicodeDecodeError as error:
        raise not_utf8_error(path, error) from error
    index_column = next((name for name in INDEX_COLUMNS if name in header), None)
    missing = [name for name in COLUMNS if name not in header] + ([] if index_column else ["Index"])
    if missing:
        raise BenchmarkError(f"{path} line 1: no {', '.join(repr(m) for m in missing)} column; it has {header}. "
                             "MMVP's Questions.csv has 'Index' (or 'lndex'), 'Question', 'Options', 'Correct Answer'")
    if not rows:
        raise BenchmarkError(f"benchmark file {str(path)!r} has no samples (it has only a header)")
    if len(rows) % 2:
        raise BenchmarkError(f"{path}: {len(rows)} rows, an odd number; MMVP pairs consecutive rows (1–2, 3–4, …), "
                             f"so the last row (line {rows[-1][1]}) has no partner")
    members = [_member(folder, row, line, position, index_column, allow_paths_outside)
               for position, (row, line) in enumerate(rows)]
    pending = []
    for first, second in zip(members[::2], members[1::2]):
        if first["question"] != second["question"]:
            raise BenchmarkError(
                f"{second['where']}, column 'Question': {second['question']!r} differs from line "
                f"{first['line']}'s {first['question']!r}, although MMVP pairs consecutive rows: a row is missing "
                "or out of order")
        pending.append(PendingSample(
            sample_id=f"{first['index']}-{second['index']}", location=f"{first['where']} and line {second['line']}",
            prompt=first["prompt"], answer=first["answer"],
            read_image=lambda member=first: open_image_file(member["image"], member["where"],
                                                            relative_to=f"{folder / IMAGES_FOLDER}"),
            read_queries=lambda a=first, b=second: _queries(folder, a, b)))
    return pending


def _member(folder: Path, row: dict, line: int, position: int, index_column: str, allow_outside: bool) -> dict:
    where = f"{folder / QUESTIONS_FILE} line {line}"
    index = (row.get(index_column) or "").strip()
    if not index.isdigit():
        raise BenchmarkError(f"{where}, column {index_column!r}: {index!r} is not an image number "
                             f"(the image is '{IMAGES_FOLDER}/<{index_column}>.jpg')")
    if int(index) != position + 1:
        warnings.warn(f"{where}: {index_column} {index} is not the row's position {position + 1}; bias-suite reads "
                      f"'{IMAGES_FOLDER}/{index}.jpg', the official MMVP script would read {position + 1}.jpg",
                      BiasSuiteWarning, stacklevel=4)
    question = (row.get("Question") or "").strip()
    if not question:
        raise BenchmarkError(f"{where}, column 'Question': the cell is empty")
    options = parse_options(row.get("Options") or "", where)
    letter = ANSWER.fullmatch((row.get("Correct Answer") or "").strip().split(" ")[0] or "")
    if letter is None or letter[1].lower() not in options:
        raise BenchmarkError(f"{where}, column 'Correct Answer': {row.get('Correct Answer')!r} names no option of "
                             f"{sorted(options)} (expected e.g. '(a)')")
    image = confined_image_path(folder, f"{IMAGES_FOLDER}/{index}.jpg", f"{where}, column {index_column!r}",
                                allow_outside, what="the MMVP folder")
    if not image.is_file():
        raise BenchmarkError(f"{where}, column {index_column!r}: image file {str(image)!r} not found "
                             f"(MMVP images are '{IMAGES_FOLDER}/<{index_column}>.jpg' in the folder)")
    return {"where": where, "line": line, "index": index, "question": question, "image": image,
            "prompt": f"{question} {(row.get('Options') or '').strip()}", "candidates": tuple(options.values()),
            "answer": options[letter[1].lower()], "letter": letter[1].lower()}


def _queries(folder: Path, first: dict, second: dict) -> tuple[Query, ...]:
    second_image = open_image_file(second["image"], second["where"], relative_to=f"{folder / IMAGES_FOLDER}")
    return (Query("a", first["prompt"], first["candidates"], first["answer"], meta=(("index", first["index"]),)),
            Query("b", second["prompt"], second["candidates"], second["answer"], image=second_image,
                  meta=(("index", second["index"]),)))
