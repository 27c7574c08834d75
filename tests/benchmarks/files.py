"""Write samples as benchmark files, the way other tools write them: VLMEvalKit TSV, JSONL, datasets, parquet."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from bias_suite.benchmarks.sample import Sample

TEXT_FIELDS = ("answer", "conflicting_caption", "caption_answer")


def png_bytes(image: Image.Image) -> bytes:
    """Lossless encoding, so a file round trip keeps every pixel."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def text_columns(sample: Sample) -> dict[str, str]:
    """Optional text fields of ``sample`` that are set."""
    return {name: getattr(sample, name) for name in TEXT_FIELDS if getattr(sample, name) is not None}


def write_tsv(path: Path, samples: Sequence[Sample]) -> Path:
    """VLMEvalKit layout: ``index``, base64 PNG ``image``, ``question``, optional text columns."""
    header = ["index", "image", "question", *TEXT_FIELDS]
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, delimiter="\t")
        writer.writerow(header)
        for sample in samples:
            image = base64.b64encode(png_bytes(sample.image)).decode("ascii")
            writer.writerow([sample.sample_id, image, sample.prompt, *(getattr(sample, f) or "" for f in TEXT_FIELDS)])
    return path


def write_jsonl(path: Path, samples: Sequence[Sample]) -> Path:
    """One object per line; PNG images in ``images/`` next to the file, referenced by relative path."""
    (path.parent / "images").mkdir(exist_ok=True)
    lines = []
    for position, sample in enumerate(samples):
        relative = f"images/{position:04d}.png"
        (path.parent / relative).write_bytes(png_bytes(sample.image))
        lines.append(json.dumps({"id": sample.sample_id, "image": relative, "question": sample.prompt,
                                 **text_columns(sample)}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def to_dataset(samples: Sequence[Sample]):
    """A ``datasets.Dataset`` with an ``Image`` feature column, as Hub datasets have."""
    import datasets

    datasets.disable_progress_bars()
    features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(),
                                  "question": datasets.Value("string"),
                                  **{name: datasets.Value("string") for name in TEXT_FIELDS}})
    return datasets.Dataset.from_dict(
        {"id": [s.sample_id for s in samples], "image": [s.image for s in samples],
         "question": [s.prompt for s in samples],
         **{name: [getattr(s, name) for s in samples] for name in TEXT_FIELDS}},
        features=features,
    )


def write_saved_dataset(path: Path, samples: Sequence[Sample]) -> Path:
    """A folder written by ``Dataset.save_to_disk``."""
    to_dataset(samples).save_to_disk(str(path))
    return path


def write_parquet(path: Path, samples: Sequence[Sample]) -> Path:
    """One parquet file written by ``Dataset.to_parquet`` (the Hub's layout for an ``Image`` column)."""
    to_dataset(samples).to_parquet(str(path))
    return path


# format (Benchmark.source) -> (file or folder name, writer)
WRITERS: dict[str, tuple[str, Callable[[Path, Sequence[Sample]], Path]]] = {
    "tsv": ("bench.tsv", write_tsv),
    "jsonl": ("bench.jsonl", write_jsonl),
    "hf-dataset": ("saved", write_saved_dataset),
    "parquet": ("bench.parquet", write_parquet),
}
