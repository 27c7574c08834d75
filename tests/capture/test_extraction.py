"""extract() runs capture batch by batch and returns the same tensors as one batch would."""

from __future__ import annotations

import pytest
import torch

from bias_suite.benchmarks.sample import Sample
from bias_suite.capture.batch import CaptureConfig
from bias_suite.capture.extract import extract
from tests.samples import make_samples


def test_extract_in_batches_equals_one_batch(load_tiny, tolerance):
    loaded = load_tiny("tiny-qwen2.5-vl")
    samples = make_samples(5)
    config = CaptureConfig(layers=(0, 3), max_tokens_per_modality=6)
    in_pairs = extract(loaded, samples, config, batch_size=2)
    at_once = extract(loaded, samples, config, batch_size=5)
    assert [s.sample_id for s in in_pairs] == [s.sample_id for s in samples]
    for a, b in zip(in_pairs, at_once):
        assert torch.equal(a.key_positions, b.key_positions)
        torch.testing.assert_close(a.layers[3].pre_rope_keys, b.layers[3].pre_rope_keys, **tolerance)


def test_extract_refuses_duplicate_sample_ids(load_tiny):
    first, second = make_samples(2)
    clash = Sample(first.sample_id, second.image, second.prompt)
    with pytest.raises(ValueError, match="used more than once: \\['sample-0'\\]"):
        extract(load_tiny("tiny-llava"), [first, clash], CaptureConfig(layers=(0,)))


def test_the_decoder_geometry_is_worked_out_once_at_load_and_carried_through_every_batch(load_tiny, monkeypatch):
    """Issue 18: the geometry was computed again in every batch (layer resolution, prefill arguments);
    the loaded model carries it, and capture uses what it is given."""
    from bias_suite.models import decoder

    loaded = load_tiny("tiny-llava")
    calls = []
    original = decoder.decoder_geometry

    def counted(model):
        calls.append(model)
        return original(model)

    for module in ("bias_suite.models.decoder", "bias_suite.capture.batch"):
        monkeypatch.setattr(f"{module}.decoder_geometry", counted)
    extract(loaded, make_samples(4), CaptureConfig(layers=(0, 3)), batch_size=2)
    assert calls == []
