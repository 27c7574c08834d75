"""From a row of a benchmark file to a Sample: the column conventions every file format shares.

Columns (TSV header, JSONL keys, dataset columns):

* ``id`` or ``index`` — the sample id; without either, the row's 0-based position.
* ``image`` — the image (how it is stored depends on the format).
* ``question`` — required.
* optional ``answer``, ``conflicting_caption``, ``caption_answer``, ``hint`` and option columns
  ``A``, ``B``, ``C``, … (MMBench). With options, the prompt is built as LLaVA's MMBench evaluation
  does: hint, question, one ``"X. option"`` line per option, then an instruction to answer with the
  letter; ``answer`` stays the letter.

Empty optional cells, and the strings pandas reads as missing ("nan", "None", …), count as absent,
because VLMEvalKit and lmms-eval read these files through pandas.

Rows become :class:`PendingSample` first: ids and texts are read for every row, but an image is only
decoded for the rows a (sub)sample keeps.
"""

from __future__ import annotations

import io
import json
import math
import string
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from bias_suite.benchmarks.benchmark import Benchmark, check_unique_ids, subsample_indices
from bias_suite.benchmarks.sample import Query, Sample
from bias_suite.errors import BenchmarkError
from bias_suite.vocabulary import BehaviourKind

ID_COLUMNS = ("id", "index")
IMAGE_COLUMN = "image"
QUESTION_COLUMN = "question"
MISSING_TEXT = frozenset({"", "nan", "NaN", "NA", "N/A", "n/a", "null", "NULL", "None", "<NA>"})
MCQ_INSTRUCTION = "Answer with the option's letter from the given choices directly."


@dataclass(frozen=True)
class PendingSample:
    """A sample read from a file whose image is not decoded yet.

    location: where the row is, for error messages (e.g. ``"bench.jsonl line 4"``).
    read_image: decodes the image; raises :class:`BenchmarkError` naming ``location`` if it cannot.
    read_queries: for behaviour items, builds the item's scored queries (decoding their images); the first is
        the probe and must match ``prompt`` and ``answer`` (see :class:`~bias_suite.benchmarks.sample.Sample`).
    """

    sample_id: str
    location: str
    prompt: str
    read_image: Callable[[], Image.Image]
    answer: str | None = None
    conflicting_caption: str | None = None
    caption_answer: str | None = None
    read_queries: Callable[[], tuple[Query, ...]] | None = None

    def to_sample(self) -> Sample:
        queries = () if self.read_queries is None else self.read_queries()
        return Sample(self.sample_id, self.read_image(), self.prompt, self.answer, self.conflicting_caption,
                      self.caption_answer, queries, source=self.location)


def optional_text(value: object) -> str | None:
    """A cell as text, or None when it is empty or a pandas missing-value marker."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = cell_text(value)
    return None if text.strip() in MISSING_TEXT else text


def cell_text(value: object) -> str:
    """A cell as text; whole floats (pandas turns int columns with gaps into floats) lose their ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def mcq_prompt(question: str, hint: str | None, options: Sequence[tuple[str, str]]) -> str:
    """The MMBench prompt as LLaVA's evaluation builds it: ``[hint\\n]question\\nA. …\\nB. …\\n<instruction>``."""
    lines = ([hint] if hint is not None else []) + [question]
    lines += [f"{letter}. {option}" for letter, option in options]
    return "\n".join([*lines, MCQ_INSTRUCTION])


def require_columns(
    columns: Sequence[str], where: str, needed: Sequence[str] = (IMAGE_COLUMN, QUESTION_COLUMN), noun: str = "column"
) -> None:
    """Raise naming ``where`` and the columns (or JSON keys: ``noun``) it does have if any of ``needed`` is missing."""
    missing = [name for name in needed if name not in columns]
    if missing:
        raise BenchmarkError(
            f"{where} has no {', '.join(repr(name) for name in missing)} {noun}; it has {list(columns)}. "
            f"Benchmark files need {IMAGE_COLUMN!r} and {QUESTION_COLUMN!r}, optionally 'id'/'index', 'answer', "
            "'hint', options 'A'-'D', 'conflicting_caption', 'caption_answer'."
        )


def pending_from_row(
    fields: Mapping[str, object], row: int, location: str, read_image: Callable[[], Image.Image]
) -> PendingSample:
    """The sample in one row. ``row`` is its 0-based position (the id when the row has no id column)."""
    require_columns(list(fields), location, needed=(QUESTION_COLUMN,))
    question = optional_text(fields[QUESTION_COLUMN])
    if question is None:
        raise BenchmarkError(f"{location}: the {QUESTION_COLUMN!r} cell is empty; every sample needs a question")
    id_column = next((name for name in ID_COLUMNS if name in fields), None)
    sample_id = str(row) if id_column is None else optional_text(fields[id_column])
    if sample_id is None:
        raise BenchmarkError(f"{location}: the {id_column!r} cell is empty; give every sample an id")
    options = []
    for letter in string.ascii_uppercase:
        option = optional_text(fields.get(letter))
        if option is None:
            break
        options.append((letter, option))
    hint = optional_text(fields.get("hint"))
    if options:
        prompt = mcq_prompt(question, hint, options)
    else:
        prompt = question if hint is None else f"{hint}\n{question}"
    return PendingSample(
        sample_id=sample_id,
        location=location,
        prompt=prompt,
        read_image=read_image,
        answer=optional_text(fields.get("answer")),
        conflicting_caption=optional_text(fields.get("conflicting_caption")),
        caption_answer=optional_text(fields.get("caption_answer")),
    )


def jsonl_objects(path: Path, expected: str) -> Iterator[tuple[str, dict]]:
    """``(location, object)`` for every non-blank line of a UTF-8 JSON Lines file; a line that is not valid
    JSON, or not an object, raises :class:`BenchmarkError` naming ``"{path} line N"`` and ``expected`` (what an
    object of this layout holds)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise not_utf8_error(path, error) from error
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        location = f"{path} line {line_number}"
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as error:
            raise BenchmarkError(f"{location} is not valid JSON ({error})") from error
        if not isinstance(fields, dict):
            raise BenchmarkError(f"{location} is a JSON {type(fields).__name__}, not an object {expected}")
        yield location, fields


def not_utf8_error(path: Path, error: UnicodeDecodeError) -> BenchmarkError:
    """The BenchmarkError for a text benchmark file that failed to decode as UTF-8, naming its first bad line.

    Reading stays in text mode (fast, and ``csv`` keeps its newline handling); only after a decode error is the
    file scanned again, line by line in binary, to say where (``b"\\n"`` never occurs inside a multi-byte UTF-8
    character, so splitting on it first is safe).
    """
    with path.open("rb") as file:
        for line_number, raw in enumerate(file, start=1):
            try:
                raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError as line_error:
                where = (f"line {line_number} is not UTF-8 (byte 0x{raw[line_error.start]:02x} at byte "
                         f"{line_error.start + 1} of the line: {line_error.reason})")
                break
        else:
            where = f"is not UTF-8 ({error})"
    return BenchmarkError(
        f"{path} {where}; benchmark files must be UTF-8: save it as UTF-8 (e.g. "
        f"iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}) and load that"
    )


def decode_image(data: bytes, location: str) -> Image.Image:
    """Encoded image bytes (PNG, JPEG, …) as a fully loaded RGB image.

    An image larger than ``PIL.Image.MAX_IMAGE_PIXELS`` is refused before it is decoded, where Pillow itself
    would only warn up to twice that size (and decode it, using gigabytes of memory).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BenchmarkError(
            f"{location}: the image is over the pixel limit of {Image.MAX_IMAGE_PIXELS} pixels "
            f"(PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression bombs; Pillow: {error}); downscale the "
            "image, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
        ) from error
    except (OSError, ValueError) as error:  # UnidentifiedImageError is an OSError; others: damaged data
        reason = "no image format Pillow knows starts like this" if isinstance(error, UnidentifiedImageError) else error
        raise BenchmarkError(
            f"{location}: the image ({len(data)} bytes) is not an image Pillow can read ({reason}); "
            "store PNG or JPEG bytes"
        ) from error


def confined_image_path(folder: Path, written: str, location: str, allow_outside: bool,
                        what: str = "the JSONL file's folder") -> Path:
    """``folder / written``, refused (naming ``location``, ``written`` and ``what`` the folder is) if it resolves
    outside ``folder``.

    Resolving follows ``..``, absolute paths and symlinks, so none of them can reach a file outside the
    benchmark's folder unless ``allow_outside`` (``load_benchmark(..., allow_paths_outside=True)``).
    """
    path = folder / written
    if allow_outside or path.resolve().is_relative_to(folder.resolve()):
        return path
    raise BenchmarkError(
        f"{location}: image path {written!r} leads outside {what} {str(folder)!r} "
        f"(to {str(path.resolve())!r}); move the image under that folder and use a relative path, or pass "
        "allow_paths_outside=True to load_benchmark if you trust the file"
    )


def open_image_file(path: Path, location: str, relative_to: str) -> Image.Image:
    """The image file at ``path`` as a fully loaded RGB image; ``relative_to`` explains how it was resolved."""
    if not path.is_file():
        raise BenchmarkError(
            f"{location}: image file {str(path)!r} not found (image paths are relative to {relative_to})"
        )
    return decode_image(path.read_bytes(), f"{location} (image file {str(path)!r})")


def finish(name: str, source: str, pending: Sequence[PendingSample], n_samples: int | None, seed: int,
           suite: BehaviourKind | None = None) -> Benchmark:
    """Check ids across all rows, take the seeded subsample, decode its images, and build the Benchmark
    (``suite``: the behaviour suite of a file whose rows carry scored queries)."""
    if not pending:
        raise BenchmarkError(f"benchmark file {name!r} has no samples (it is empty or has only a header)")
    check_unique_ids([p.sample_id for p in pending], [p.location for p in pending], name,
                     fix="give each row its own 'id' (or 'index')")
    kept = [pending[i] for i in subsample_indices(len(pending), n_samples, seed)]
    return Benchmark(name, source, tuple(p.to_sample() for p in kept), seed=seed, n_rows=len(pending),
                     suite=suite)
