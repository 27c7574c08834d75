"""Benchmarks: offline built-in sample sets, and loaders for benchmark files people already have.

``load_benchmark("shapes", n_samples=8, seed=0)`` or ``load_benchmark("data/MMBench_DEV_EN.tsv")``.
Built-ins: ``photos`` (scikit-image's photographs), ``shapes`` (rendered scenes with answers),
``text-in-image`` (rendered words and numbers), ``conflict`` (scenes with a contradicting caption), and the
behaviour suites ``language-prior``, ``conflict-levels``, ``caption-variants``, ``paired-images``, whose
items carry scored :class:`Query` s. Files: VLMEvalKit TSV, JSONL, a ``datasets`` save_to_disk folder,
parquet, and the behaviour layouts of MMVP, VLind-Bench, V-FAT (assumed) and caption variants. Every
benchmark yields :class:`Sample` s (wing 3; may import wing 1 only).
"""

from bias_suite.benchmarks.benchmark import Benchmark, content_hash, validate_seed
from bias_suite.benchmarks.registry import BUILTIN_BENCHMARKS, FILE_READERS, load_benchmark
from bias_suite.benchmarks.sample import Query, Sample
from bias_suite.errors import BenchmarkError

__all__ = [
    "BUILTIN_BENCHMARKS", "FILE_READERS", "Benchmark", "BenchmarkError", "Query", "Sample", "content_hash",
    "load_benchmark", "validate_seed",
]
