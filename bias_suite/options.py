"""The gate's options as plain values, and their validators — importable without torch or transformers.

The pytest plugin registers these options and validates them at parse time (a bad ``--layers`` fails
before any model loads); the same validators serve the library. Values stay plain strings and numbers
so pytest-xdist can send them to workers.
"""

from __future__ import annotations

import argparse
import contextlib
import operator
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bias_suite.errors import LayerSelectionError, SeedError
from bias_suite.layers import LayerSelector

DTYPE_NAMES = ("float32", "bfloat16", "float16")
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
BUILTIN_BENCHMARK_NAMES = ("photos", "shapes", "text-in-image", "conflict", "language-prior", "conflict-levels",
                           "caption-variants", "paired-images")  # bias_suite.benchmarks.BUILTIN_BENCHMARKS
DEFAULT_BENCHMARKS = ("photos", "shapes", "conflict")
DEFAULT_SAMPLES = 16
MIN_SAMPLES = 3  # key-space statistics pair distinct samples and cross-validate over them
MIN_GATED_SAMPLES = 8  # fewer, and a gated row is INCONCLUSIVE: its interval cannot be trusted
DEFAULT_TOKEN_CAP = 64
DEFAULT_BOOTSTRAP = 1000  # bootstrap-t needs ~1000 (python -m bias_suite bench: +x % of the key-space time vs 200)
ESTIMATOR_VERSION = 2  # recorded with every bound: 2 = jackknife intervals, energy ratio, template-robust intra terms
MIN_BOOTSTRAP = 50
REPORT_SUFFIXES = (".md", ".json", ".html")
SEED_LIMIT = 2**32
_CUDA_INDEX = re.compile(r"cuda:([0-9]+)")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # accelerate's strategies
_SHARD = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")
_MEMORY = re.compile(r"[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B)?", re.IGNORECASE)


def parse_device(value: str) -> str:
    """A device as given: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``N`` a GPU index, 0 or more).

    Whether that GPU exists is checked when a model loads, not here, so options can be validated on a
    machine without one. Leading zeros are dropped (``cuda:01`` → ``cuda:1``).
    """
    if value in ("auto", "cpu", "cuda"):
        return value
    match = _CUDA_INDEX.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"device {value!r} is not a device: use {DEVICE_CHOICES} (N a GPU index: 0, 1, ...)")
    return f"cuda:{int(match[1])}"


def parse_dtype(value: str) -> str:
    if value == "auto" or value in DTYPE_NAMES:
        return value
    raise ValueError(f"dtype {value!r} is not a dtype: use auto, {', '.join(DTYPE_NAMES)}")


def validate_seed(seed: object) -> int:
    """``seed`` as a plain int if it is an integer with ``0 <= seed < 2**32``, else a :class:`SeedError` naming it.

    numpy would refuse a negative seed with a bare "expected non-negative integer" and silently accept
    2**70; one range, checked here, keeps every seeded step (scenes, subsets, folds, bootstrap) reproducible
    from the same number.
    """
    not_an_integer = f"seed {seed!r} is not an integer; pass a whole number with 0 <= seed < 2**32, e.g. 0"
    if isinstance(seed, bool):
        raise SeedError(not_an_integer)
    try:
        value = operator.index(seed)
    except TypeError:
        raise SeedError(not_an_integer) from None
    if not 0 <= value < SEED_LIMIT:
        raise SeedError(f"seed {value} is out of range: a seed must satisfy 0 <= seed < 2**32 ({SEED_LIMIT}); "
                        "pass e.g. 0")
    return int(value)


def parse_layers(value: str) -> str:
    return LayerSelector.parse(value).text


def parse_benchmark(value: str) -> str:
    if value in BUILTIN_BENCHMARK_NAMES or Path(value).exists():
        return value
    raise ValueError(f"unknown benchmark {value!r}: not a built-in ({', '.join(BUILTIN_BENCHMARK_NAMES)}) "
                     "and no such file or folder")


def parse_positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{value!r} is not a positive integer")
    return number


def parse_bootstrap(value: str) -> int:
    number = parse_positive(value)
    if number < MIN_BOOTSTRAP:
        raise ValueError(f"{number} bootstrap replicates are too few for a 95% interval: pass at least {MIN_BOOTSTRAP}")
    return number


def parse_report_path(value: str) -> str:
    if Path(value).suffix.lower() not in REPORT_SUFFIXES:
        raise ValueError(f"{value!r}: the report format comes from the suffix: {', '.join(REPORT_SUFFIXES)}")
    return value


def parse_shard(value: str) -> str:
    """``K/N``: the K-th of N shards of the run's (model × benchmark) cells, 1 <= K <= N, as ``"K/N"``."""
    match = _SHARD.fullmatch(value) if isinstance(value, str) else None
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"shard {value!r}: give K/N with 1 <= K <= N (the K-th of N shards), e.g. 2/4")
    return f"{int(match[1])}/{int(match[2])}"


def shard_numbers(value: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)``."""
    index, count = parse_shard(value).split("/")
    return int(index), int(count)


def parse_device_map(value: str) -> str:
    """An accelerate placement strategy for models larger than one device: auto, balanced, balanced_low_0,
    sequential."""
    if value in DEVICE_MAPS:
        return value
    raise ValueError(f"device map {value!r}: use one of {', '.join(DEVICE_MAPS)} (accelerate's strategies)")


def parse_max_memory(value: str) -> str:
    """``0=20GiB,1=20GiB,cpu=60GiB`` (GPU index, ``cuda:N``, ``cpu``, ``mps`` or ``disk`` = an amount), the
    budget of each device under a device map; normalised to ``0=20GiB,cpu=60GiB``."""
    return ",".join(f"{device}={amount}" for device, amount in max_memory(value).items())


def max_memory(value: str) -> dict[int | str, str]:
    """``--max-memory`` as accelerate takes it: GPU indices as ints (accelerate refuses ``"0"`` and
    ``"cuda:0"``), ``cpu`` / ``mps`` / ``disk`` as strings; a fresh dict each call (accelerate changes the one
    it is given)."""
    budget: dict[int | str, str] = {}
    for part in filter(None, (piece.strip() for piece in str(value).split(","))):
        device, _, amount = part.partition("=")
        device, amount = device.strip().lower(), amount.strip().replace(" ", "")
        gpu = _CUDA_INDEX.fullmatch(device)
        key: int | str = int(gpu[1]) if gpu else int(device) if device.isdigit() else device
        if isinstance(key, str) and key not in ("cpu", "mps", "disk"):
            raise ValueError(f"--max-memory {value!r}: {device!r} is not a device; use a GPU index (0, 1, … or "
                             "cuda:N), cpu, mps or disk, e.g. 0=20GiB,cpu=60GiB")
        if not _MEMORY.fullmatch(amount):
            raise ValueError(f"--max-memory {value!r}: {amount!r} is not an amount for {device}; use e.g. 20GiB, "
                             "500MB or a number of bytes")
        if key in budget:
            raise ValueError(f"--max-memory {value!r}: {device} is given twice")
        budget[key] = amount
    if not budget:
        raise ValueError(f"--max-memory {value!r}: give DEVICE=AMOUNT pairs, e.g. 0=20GiB,cpu=60GiB")
    return budget


def unwritable(path: Path, directory: bool = False) -> str | None:
    """Why ``path`` (a file, or with ``directory`` a folder) could not be written, or None when it can.

    Checked before any model loads, so a run never measures for an hour and then loses its card. The check
    writes: it creates the missing folders and a temporary file in the deepest one, then removes what it
    made — permission bits alone say nothing to root, or on ``/proc``."""
    path = Path(path)
    target = path if directory else path.parent
    existing = target
    while not existing.exists():
        if existing.parent == existing:
            return f"{path}: no part of its folder exists"
        existing = existing.parent
    if not existing.is_dir():
        return f"{path}: {existing} is a file, not a folder"
    if not directory and path.exists() and (path.is_dir() or not os.access(path, os.W_OK)):
        return f"{path}: {'is a folder' if path.is_dir() else 'exists and is not writable'}"
    made = []
    try:
        for folder in reversed([target, *target.parents]):
            if not folder.exists():
                folder.mkdir()
                made.append(folder)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".bias_suite-probe-"):
            pass
    except OSError as error:
        where = error.filename or target
        return f"{path}: cannot write in {where} ({error.strerror or error})"
    finally:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
    return None


@dataclass(frozen=True)
class RunSettings:
    """How a run measures. Plain values, so they travel to pytest-xdist workers unchanged, and are
    recorded in threshold files (a bound depends on them)."""

    layers: str = "all"
    n_samples: int | None = DEFAULT_SAMPLES  # per benchmark (seeded subset); None: all
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    allow_incomplete_weights: bool = False
    max_tokens_per_modality: int | None = DEFAULT_TOKEN_CAP  # pre-RoPE key rows kept per sample and modality
    n_bootstrap: int = DEFAULT_BOOTSTRAP
    n_permutations: int = 200
    batch_size: int = 4
    device_map: str | None = None  # accelerate's placement over several devices (auto, balanced, …); None: one
    max_memory: str | None = None  # with device_map: each device's budget, "0=20GiB,cpu=60GiB"

    def __post_init__(self) -> None:
        try:
            LayerSelector.parse(self.layers)
        except LayerSelectionError as error:
            raise ValueError(str(error)) from None
        validate_seed(self.seed)
        parse_device(self.device)
        parse_dtype(self.dtype)
        if self.device_map is not None:
            parse_device_map(self.device_map)
        if self.max_memory is not None:
            if self.device_map is None:
                raise ValueError("max_memory only means something with a device_map (--device-map auto)")
            object.__setattr__(self, "max_memory", parse_max_memory(self.max_memory))

    def recorded(self) -> dict[str, int | None]:
        """The settings a bound depends on, as a threshold file records them (``estimator_version``: which
        estimators and intervals measured it, :data:`ESTIMATOR_VERSION`)."""
        return {"n_samples": self.n_samples, "max_tokens_per_modality": self.max_tokens_per_modality,
                "seed": self.seed, "n_bootstrap": self.n_bootstrap, "estimator_version": ESTIMATOR_VERSION}


def argparse_type(parse: Callable[[str], object]) -> Callable[[str], object]:
    """A validator of this module as an argparse ``type`` (its ValueError becomes a usage error naming the
    option) — shared by the pytest plugin's options and the command line's."""
    def check(value: str):
        try:
            return parse(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    check.__name__ = parse.__name__
    return check


def parse_family(value: str) -> str:
    """``--family NAME`` or ``SPEC=NAME`` (checked, returned as given)."""
    spec, _, family = value.rpartition("=")
    if not family.strip() or (value.count("=") and not spec.strip()):
        raise ValueError(f"--family {value!r}: give NAME, or SPEC=NAME for one model")
    return value


def family_map(values: Sequence[str] | None) -> dict[str, str] | None:
    """``--family NAME`` / ``--family SPEC=NAME`` (repeatable) → model spec (``*``: every model) → family; None
    when none was given."""
    if not values:
        return None
    found = {}
    for value in values:
        spec, _, family = parse_family(value).rpartition("=")
        found[spec or "*"] = family
    return found


def unwritable_destinations(reports: Sequence[str], thresholds: str | Path | None = None) -> list[str]:
    """Why the report files (and, when blessing, the ``thresholds`` folder or file) could not be written —
    checked before anything runs (the gate's options, ``bias-suite merge`` and ``launch``)."""
    problems = [problem for path in reports if (problem := unwritable(Path(path)))]
    if thresholds is not None:
        location = Path(thresholds)
        as_file = location.is_file() or location.suffix.lower() in (".yaml", ".yml")
        problem = unwritable(location) if as_file else unwritable(location, directory=True)
        if problem:
            problems.append(problem)
    return problems
