"""Hugging Face ``datasets`` folders saved with ``save_to_disk``, and parquet files (a file or a folder of them).

Both are Arrow tables with the shared columns of :mod:`bias_suite.benchmarks.rows`. The ``image`` column
may be a ``datasets.Image`` feature (stored as ``{"bytes", "path"}``), raw encoded bytes, or a path
relative to the dataset folder / parquet file. ``datasets`` and ``pyarrow`` are optional: they are
imported here, when such a file is loaded (``pip install "bias-suite[files]"``).
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from PIL import Image

from bias_suite.benchmarks.rows import (
    IMAGE_COLUMN,
    PendingSample,
    decode_image,
    open_image_file,
    pending_from_row,
    require_columns,
)
from bias_suite.errors import BenchmarkError

FILES_EXTRA_HINT = 'pip install "bias-suite[files]"'
SAVE_TO_DISK_MARKERS = ("state.json", "dataset_info.json")
DATASET_DICT_MARKER = "dataset_dict.json"
SHARD_NAME = re.compile(r"^(?P<split>.+)-\d+-of-\d+$")  # train-00000-of-00003.parquet, as the Hub names shards


def import_optional(module: str, package: str, purpose: str) -> ModuleType:
    """``module``, or a BenchmarkError naming the missing ``package`` and the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise BenchmarkError(
            f"{purpose} needs the {package!r} package, which is not installed: {FILES_EXTRA_HINT}"
        ) from error


def is_saved_dataset(path: Path) -> bool:
    """True for a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return path.is_dir() and (
        all((path / marker).is_file() for marker in SAVE_TO_DISK_MARKERS) or (path / DATASET_DICT_MARKER).is_file()
    )


def read_saved_dataset(path: Path) -> list[PendingSample]:
    """Rows of a ``save_to_disk`` folder. A DatasetDict folder must hold exactly one split."""
    datasets = import_optional("datasets", "datasets", f"reading the saved dataset {str(path)!r}")
    if (path / DATASET_DICT_MARKER).is_file():
        splits = json.loads((path / DATASET_DICT_MARKER).read_text())["splits"]
        if len(splits) != 1:
            raise BenchmarkError(
                f"{str(path)!r} is a DatasetDict with splits {splits}; pass one split's folder, "
                f"e.g. {str(path / splits[0])!r}"
            )
        path = path / splits[0]
    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as error:  # datasets raises several kinds; the message below says which file
        raise BenchmarkError(f"cannot read the saved dataset {str(path)!r}: {error}") from error
    table = dataset.with_format("arrow")[:]
    return rows_from_table(table, str(path), path, first_row=0)


def parquet_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``*.parquet`` files under the folder ``path`` (sorted), all of one split."""
    if path.is_file():
        return [path]
    files = sorted(path.rglob("*.parquet"))
    splits = sorted({match["split"] for f in files if (match := SHARD_NAME.match(f.stem))})
    if len(splits) > 1:
        raise BenchmarkError(
            f"{str(path)!r} holds parquet shards of several splits {splits}; pass the shards of one split "
            "(a single .parquet file, or a folder holding only that split)"
        )
    return files


def read_parquet(path: Path) -> list[PendingSample]:
    """Rows of one parquet file or of every parquet file under a folder, in sorted file order."""
    parquet = import_optional("pyarrow.parquet", "pyarrow", f"reading the parquet benchmark {str(path)!r}")
    pending: list[PendingSample] = []
    for file in parquet_files(path):
        try:
            table = parquet.read_table(file)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...
            raise BenchmarkError(f"cannot read the parquet file {str(file)!r}: {error}") from error
        pending += rows_from_table(table, str(file), file.parent, first_row=len(pending))
    return pending


def rows_from_table(table: Any, where: str, image_folder: Path, first_row: int) -> list[PendingSample]:
    """Pending samples of a ``pyarrow.Table``; images stay undecoded until a sample is kept.

    ``where`` names the table in messages, ``image_folder`` resolves relative image paths, and
    ``first_row`` is the position of the table's first row in the whole benchmark (for default ids).
    """
    require_columns(table.column_names, where)
    texts = {name: table.column(name).to_pylist() for name in table.column_names if name != IMAGE_COLUMN}
    images = table.column(IMAGE_COLUMN)
    pending = []
    for row in range(table.num_rows):
        location = f"{where} row {row}"
        fields = {name: values[row] for name, values in texts.items()}
        pending.append(
            pending_from_row(
                fields, first_row + row, location,
                lambda row=row, at=location: image_from_cell(images[row].as_py(), at, image_folder),
            )
        )
    return pending


def image_from_cell(value: object, location: str, image_folder: Path) -> Image.Image:
    """An ``image`` cell (``{"bytes", "path"}``, bytes, or a relative path) as a loaded RGB image."""
    at = f"{location}, column {IMAGE_COLUMN!r}"
    if isinstance(value, dict):
        data, relative_path = value.get("bytes"), value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        data, relative_path = value, None
    elif isinstance(value, str):
        data, relative_path = None, value
    else:
        raise BenchmarkError(
            f"{at} holds a {type(value).__name__}; expected one image per sample: a datasets Image, "
            "encoded image bytes, or a path"
        )
    if data:
        return decode_image(bytes(data), at)
    if relative_path:
        return open_image_file(image_folder / relative_path, at, relative_to=f"the folder {str(image_folder)!r}")
    raise BenchmarkError(f"{at} is empty: it has neither image bytes nor a path")
