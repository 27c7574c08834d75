"""The Benchmark record: which samples were measured, where they came from, and a hash of their content."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bias_suite.benchmarks.sample import Sample
from bias_suite.errors import BenchmarkError
from bias_suite.options import validate_seed  # noqa: F401  (re-exported: the library's seed check)
from bias_suite.vocabulary import BehaviourKind

SOURCES = ("builtin", "tsv", "jsonl", "hf-dataset", "parquet", "mmvp", "vlind", "vfat", "caption-jsonl")
CONTENT_HASH_CHARS = 16


@dataclass(frozen=True)
class Benchmark:
    """The samples one run measures, with enough provenance for a report to say exactly what they were.

    name: the built-in name, or the file path as it was given.
    source: how the samples were read, one of :data:`SOURCES`.
    samples: the samples actually yielded (after subsampling), in benchmark order; ids are unique.
    seed: the seed of the built-in scenes and of the subsample.
    suite: the behaviour suite whose scored queries the samples carry (:class:`BehaviourKind`), or None.
    content_hash: first 16 hex digits of a sha256 over every sample's id, texts and RGB pixels
        (see :func:`content_hash`), computed here so it always describes ``samples``.
    """

    name: str
    source: str
    samples: tuple[Sample, ...]
    seed: int = 0
    n_rows: int | None = None  # items the source holds (a seeded subset decodes only ``size`` of them)
    suite: BehaviourKind | None = None
    content_hash: str = field(init=False)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise BenchmarkError(f"benchmark source must be one of {SOURCES}, not {self.source!r}")
        if not self.samples:
            raise BenchmarkError(f"benchmark {self.name!r} has no samples")
        object.__setattr__(self, "samples", tuple(self.samples))
        if self.suite is not None:
            object.__setattr__(self, "suite", BehaviourKind(self.suite))
            without = [s.sample_id for s in self.samples if not s.queries]
            if without:
                raise BenchmarkError(f"benchmark {self.name!r} is a {self.suite} suite, but samples "
                                     f"{without[:5]} carry no scored queries")
        check_unique_ids(
            [s.sample_id for s in self.samples], [f"samples[{i}]" for i in range(len(self.samples))], self.name,
            fix="give each sample its own sample_id",
        )
        object.__setattr__(self, "content_hash", content_hash(self.samples))

    @property
    def size(self) -> int:
        """Number of samples yielded."""
        return len(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def has_answers(self) -> bool:
        """True when every sample has a reference answer (answer tokens can be teacher-forced)."""
        return all(s.answer is not None for s in self.samples)

    @property
    def has_conflicts(self) -> bool:
        """True when every sample carries a caption that contradicts its image."""
        return all(s.conflicting_caption is not None for s in self.samples)

    @property
    def behaviour(self) -> BehaviourKind | None:
        """How the benchmark's answers are counted: its ``suite``, or ``conflict`` when every sample carries a
        contradicting caption; None when it has no behaviour metric."""
        if self.suite is not None:
            return self.suite
        return BehaviourKind.CONFLICT if self.has_conflicts else None

    @property
    def has_behaviour(self) -> bool:
        """True when the benchmark yields behaviour metrics (a gate run adds a behaviour case for it)."""
        return self.behaviour is not None

    def summary(self) -> dict[str, str | int]:
        """What a report records about the benchmark: name, source, size, seed and content hash."""
        return {"name": self.name, "source": self.source, "size": self.size, "seed": self.seed,
                "content_hash": self.content_hash, "n_rows": self.n_rows}


def content_hash(samples: Sequence[Sample]) -> str:
    """sha256 (first 16 hex digits) of the samples, in order.

    Covers each sample's id, prompt, answer, conflicting caption and caption answer, and its image as
    the model receives it: RGB mode, ``(width, height)`` and raw pixel bytes. Raw pixels rather than an
    encoded file keep the hash independent of PNG/JPEG encoder versions; every field is length-prefixed
    so that moving text from one field to the next changes the hash. A behaviour item's queries (role,
    prompt, candidates, answer, trap, meta and own image) follow its sample; samples without queries hash
    exactly as before queries existed.
    """
    digest = hashlib.sha256()

    def put(chunk: bytes | None) -> None:
        if chunk is None:
            digest.update(b"\xff" * 8)
        else:
            digest.update(len(chunk).to_bytes(8, "little"))
            digest.update(chunk)

    for sample in samples:
        texts = (sample.sample_id, sample.prompt, sample.answer, sample.conflicting_caption, sample.caption_answer)
        for text in texts:
            put(None if text is None else text.encode("utf-8"))
        put_image(put, sample.image)
        if sample.queries:
            put(f"queries:{len(sample.queries)}".encode())
        for query in sample.queries:
            for text in (query.role, query.prompt, query.answer, query.trap, *query.candidates):
                put(None if text is None else text.encode("utf-8"))
            put(f"candidates:{len(query.candidates)};meta:{len(query.meta)}".encode())
            for key, value in query.meta:
                put(key.encode("utf-8"))
                put(value.encode("utf-8"))
            if query.image is None:
                put(None)
            else:
                put_image(put, query.image)
    return digest.hexdigest()[:CONTENT_HASH_CHARS]


def put_image(put, image) -> None:
    """Hash an image as the model receives it: RGB, ``(width, height)``, raw pixels."""
    rgb = image.convert("RGB")
    put(f"{rgb.width}x{rgb.height}".encode())
    put(rgb.tobytes())


def check_unique_ids(sample_ids: Sequence[str], locations: Sequence[str], benchmark: str, fix: str) -> None:
    """Raise :class:`BenchmarkError` naming every id used more than once, where each use is, and ``fix``.

    ``locations[i]`` says where ``sample_ids[i]`` came from (e.g. ``"bench.tsv line 4 (row 2)"``).
    """
    where: dict[str, list[str]] = defaultdict(list)
    for sample_id, location in zip(sample_ids, locations, strict=True):
        where[sample_id].append(location)
    clashes = {sample_id: places for sample_id, places in where.items() if len(places) > 1}
    if clashes:
        listed = "; ".join(f"{sample_id!r} at {', '.join(places)}" for sample_id, places in clashes.items())
        raise BenchmarkError(
            f"benchmark {benchmark!r}: sample ids must be unique, but {listed}; {fix}"
        )


def subsample_indices(size: int, n_samples: int | None, seed: int) -> list[int]:
    """Indices of a seeded subset of ``n_samples`` out of ``size`` items, in their original order.

    The subset is the first ``n_samples`` of ``numpy.random.default_rng(seed).permutation(size)``, so the
    same seed always picks the same items. ``None``, or a number at least ``size``, keeps everything.
    """
    if n_samples is not None and n_samples < 1:
        raise BenchmarkError(f"n_samples must be >= 1 (or None for all samples), not {n_samples}")
    if n_samples is None or n_samples >= size:
        return list(range(size))
    chosen = np.random.default_rng(seed).permutation(size)[:n_samples]
    return sorted(int(i) for i in chosen)
