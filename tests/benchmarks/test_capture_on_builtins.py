"""The capture core runs on every built-in benchmark with every tiny model family."""

from __future__ import annotations

import pytest
import torch

from bias_suite.benchmarks import BUILTIN_BENCHMARKS, load_benchmark
from bias_suite.capture.batch import CaptureConfig
from bias_suite.capture.extract import extract


@pytest.mark.parametrize("name", list(BUILTIN_BENCHMARKS))
def test_capture_sees_image_and_text_tokens_with_finite_keys(name, alias, load_tiny):
    benchmark = load_benchmark(name, n_samples=2, seed=0)
    captures = extract(load_tiny(alias), benchmark.samples, CaptureConfig(layers=(0, -1)), batch_size=2)
    assert [c.sample_id for c in captures] == [s.sample_id for s in benchmark.samples]
    for capture in captures:
        assert capture.image_mask.any() and capture.text_mask.any()
        assert len(capture.layers) == 2
        for layer in capture.layers.values():
            assert torch.isfinite(layer.pre_rope_keys).all()
