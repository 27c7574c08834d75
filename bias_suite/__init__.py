"""bias-suite: a regression harness for intrinsic text bias in multimodal LLMs (arXiv 2510.26721).

What a notebook needs is importable from the package::

    from bias_suite import load_model, extract, CaptureConfig, Sample, load_benchmark, keyspace_metrics

    loaded = load_model("tiny-llava")                       # hub id, local directory, alias or shape:NAME
    benchmark = load_benchmark("shapes", n_samples=8)
    captured = extract(loaded, benchmark.samples, CaptureConfig(layers=(-1,), max_tokens_per_modality=64))

or, measuring the way the gate does, ``ModelUnderTest("tiny-llava").on(benchmark).keyspace(-1)``.
Names are resolved on first use, so ``import bias_suite`` (and the pytest plugin) stays free of torch
and transformers until something that needs them is asked for.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("bias-suite")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # loading models and inputs
    "load_model": "bias_suite.models",
    "LoadedModel": "bias_suite.models",
    "Sample": "bias_suite.benchmarks",
    "load_benchmark": "bias_suite.benchmarks",
    "Benchmark": "bias_suite.benchmarks",
    # capture
    "CaptureConfig": "bias_suite.capture",
    "SampleCapture": "bias_suite.capture",
    "LayerCapture": "bias_suite.capture",
    "capture_batch": "bias_suite.capture",
    "extract": "bias_suite.capture",
    # metrics
    "keyspace_metrics": "bias_suite.metrics",
    "keyspace_metrics_by_layer": "bias_suite.metrics",
    "KeySpaceConfig": "bias_suite.metrics",
    "KeySpaceResult": "bias_suite.metrics",
    "Estimate": "bias_suite.metrics",
    "attention_rows": "bias_suite.metrics",
    "row_shares": "bias_suite.metrics",
    "query_positions": "bias_suite.metrics",
    "summarise_attention": "bias_suite.metrics",
    "AttentionResult": "bias_suite.metrics",
    # measuring as the gate does
    "ModelUnderTest": "bias_suite.measure",
    "RunSettings": "bias_suite.options",
    # errors
    "BiasSuiteError": "bias_suite.errors",
    "BiasSuiteWarning": "bias_suite.errors",
}

__all__ = [
    "AttentionResult",
    "Benchmark",
    "BiasSuiteError",
    "BiasSuiteWarning",
    "CaptureConfig",
    "Estimate",
    "KeySpaceConfig",
    "KeySpaceResult",
    "LayerCapture",
    "LoadedModel",
    "ModelUnderTest",
    "RunSettings",
    "Sample",
    "SampleCapture",
    "__version__",
    "attention_rows",
    "capture_batch",
    "extract",
    "keyspace_metrics",
    "keyspace_metrics_by_layer",
    "load_benchmark",
    "load_model",
    "query_positions",
    "row_shares",
    "summarise_attention",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bias_suite' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from bias_suite.benchmarks import Benchmark, Sample, load_benchmark
    from bias_suite.capture import CaptureConfig, LayerCapture, SampleCapture, capture_batch, extract
    from bias_suite.errors import BiasSuiteError, BiasSuiteWarning
    from bias_suite.measure import ModelUnderTest
    from bias_suite.metrics import (
        AttentionResult,
        Estimate,
        KeySpaceConfig,
        KeySpaceResult,
        attention_rows,
        keyspace_metrics,
        keyspace_metrics_by_layer,
        query_positions,
        row_shares,
        summarise_attention,
    )
    from bias_suite.models import LoadedModel, load_model
    from bias_suite.options import RunSettings
