"""``load_benchmark(NAME_OR_PATH)``: a built-in benchmark by name, or a benchmark file by path."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bias_suite.benchmarks.benchmark import Benchmark, subsample_indices, validate_seed
from bias_suite.benchmarks.caption_file import looks_like_caption_variants, read_caption_file
from bias_suite.benchmarks.caption_variants import build_caption_variants
from bias_suite.benchmarks.conflict import build_conflict
from bias_suite.benchmarks.conflict_levels import build_conflict_levels
from bias_suite.benchmarks.jsonl import read_jsonl
from bias_suite.benchmarks.language_prior import build_language_prior
from bias_suite.benchmarks.mmvp import is_mmvp_folder, read_mmvp
from bias_suite.benchmarks.paired_images import build_paired_images
from bias_suite.benchmarks.photos import build_photos
from bias_suite.benchmarks.rows import PendingSample, finish
from bias_suite.benchmarks.sample import Sample
from bias_suite.benchmarks.shapes import build_shapes
from bias_suite.benchmarks.tables import is_saved_dataset, read_parquet, read_saved_dataset
from bias_suite.benchmarks.text_in_image import build_text_in_image
from bias_suite.benchmarks.tsv import read_tsv
from bias_suite.benchmarks.vfat import looks_like_vfat, read_vfat
from bias_suite.benchmarks.vlind import is_vlind_folder, read_vlind
from bias_suite.errors import BenchmarkError
from bias_suite.vocabulary import BehaviourKind

# name -> builder(seed) returning every sample of the built-in, in order. Nothing here touches the network.
BUILTIN_BENCHMARKS: dict[str, Callable[[int], tuple[Sample, ...]]] = {
    "photos": build_photos,
    "shapes": build_shapes,
    "text-in-image": build_text_in_image,
    "conflict": build_conflict,
    "language-prior": build_language_prior,
    "conflict-levels": build_conflict_levels,
    "caption-variants": build_caption_variants,
    "paired-images": build_paired_images,
}
# built-in name -> the behaviour suite its items' scored queries belong to
BUILTIN_SUITES: dict[str, BehaviourKind] = {
    "language-prior": BehaviourKind.LANGUAGE_PRIOR,
    "conflict-levels": BehaviourKind.CONFLICT_LEVELS,
    "caption-variants": BehaviourKind.CAPTION_VARIANTS,
    "paired-images": BehaviourKind.PAIRED_IMAGES,
}

# Benchmark.source -> reader of every row of a file (or folder) of that format.
FILE_READERS: dict[str, Callable[[Path], list[PendingSample]]] = {
    "tsv": read_tsv,
    "jsonl": read_jsonl,
    "hf-dataset": read_saved_dataset,
    "parquet": read_parquet,
    "mmvp": read_mmvp,
    "vlind": read_vlind,
    "vfat": read_vfat,
    "caption-jsonl": read_caption_file,
}
# Benchmark.source -> the behaviour suite of a public layout's items
FILE_SUITES: dict[str, BehaviourKind] = {
    "mmvp": BehaviourKind.PAIRED_IMAGES,
    "vlind": BehaviourKind.VLIND,
    "vfat": BehaviourKind.CONFLICT_LEVELS,
    "caption-jsonl": BehaviourKind.CAPTION_VARIANTS,
}
# readers whose image paths are confined to the benchmark's folder (allow_paths_outside lifts it)
CONFINED_READERS = ("jsonl", "mmvp", "vlind", "vfat", "caption-jsonl")
SUPPORTED_FILES = (
    "a VLMEvalKit .tsv (base64 'image', 'question', optional 'answer' and options A-D), "
    "a .jsonl (one object per line, 'image' a path relative to the file; with 'captions': caption variants; "
    "with 'level' and 'options': V-FAT), an MMVP folder (Questions.csv, 'MMVP Images/'), a VLind-Bench folder "
    "(data.json, images/), a folder saved with datasets' save_to_disk, or a .parquet file or folder of them"
)


def load_benchmark(
    name_or_path: str | os.PathLike[str], *, n_samples: int | None = None, seed: int = 0,
    allow_paths_outside: bool = False,
) -> Benchmark:
    """The built-in benchmark ``name_or_path``, or the benchmark file at that path.

    n_samples: keep a seeded subset of this many samples, in benchmark order (``None``: all; more
        than there are: all). The content hash covers only the samples kept.
    seed: seeds the built-in scenes and the subset, so the same seed yields the same samples; an integer
        with ``0 <= seed < 2**32`` (:func:`validate_seed`).
    allow_paths_outside: let a JSONL file's image paths lead outside the file's folder (``../``, absolute
        paths, symlinks); refused by default, so a benchmark file cannot read arbitrary files.
    """
    seed = validate_seed(seed)
    if n_samples is not None and n_samples < 1:
        raise BenchmarkError(f"n_samples must be >= 1 (or None for all samples), not {n_samples}")
    name = os.fspath(name_or_path)
    if name in BUILTIN_BENCHMARKS:
        samples = BUILTIN_BENCHMARKS[name](seed)
        kept = tuple(samples[i] for i in subsample_indices(len(samples), n_samples, seed))
        return Benchmark(name, "builtin", kept, seed=seed, n_rows=len(samples), suite=BUILTIN_SUITES.get(name))
    source = file_format(Path(name))
    reader = FILE_READERS[source]
    # JSONL rows and the public layouts name image files, confined to the benchmark's folder. TSV embeds its
    # images; dataset and parquet path cells are left as datasets writes them (often absolute), so the option
    # does not apply to them.
    if source in CONFINED_READERS:
        reader = partial(reader, allow_paths_outside=allow_paths_outside)
    return finish(name, source, reader(Path(name)), n_samples, seed, suite=FILE_SUITES.get(source))


def file_format(path: Path) -> str:
    """The key of :data:`FILE_READERS` that reads ``path``, or a BenchmarkError saying what is accepted."""
    if not path.exists():
        raise BenchmarkError(
            f"benchmark {str(path)!r} is neither a built-in ({', '.join(BUILTIN_BENCHMARKS)}) nor an existing "
            f"file or folder; a benchmark file is {SUPPORTED_FILES}"
        )
    if path.is_dir():
        if is_mmvp_folder(path):
            return "mmvp"
        if is_vlind_folder(path):
            return "vlind"
        if is_saved_dataset(path):
            return "hf-dataset"
        if any(path.rglob("*.parquet")):
            return "parquet"
        raise BenchmarkError(
            f"folder {str(path)!r} holds neither a datasets save_to_disk dataset (state.json, dataset_info.json) "
            "nor .parquet files, nor an MMVP (Questions.csv) or VLind-Bench (data.json) layout"
        )
    by_suffix = {".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
    if path.suffix.lower() not in by_suffix:
        raise BenchmarkError(
            f"cannot tell the format of {str(path)!r} from its suffix; a benchmark file is {SUPPORTED_FILES}"
        )
    source = by_suffix[path.suffix.lower()]
    return jsonl_layout(path) if source == "jsonl" else source


def jsonl_layout(path: Path) -> str:
    """``caption-jsonl`` or ``vfat`` when the first object has those layouts' keys, else ``jsonl`` (whose reader
    reports a file it cannot read)."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            first = next((line for line in handle if line.strip()), "")
        fields = json.loads(first)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "jsonl"
    if isinstance(fields, dict) and looks_like_caption_variants(fields):
        return "caption-jsonl"
    if isinstance(fields, dict) and looks_like_vfat(fields):
        return "vfat"
    return "jsonl"
