"""Seeded per-modality token caps bound memory without depending on batch composition; sinks are found."""

from __future__ import annotations

import torch

from bias_suite.capture import CaptureConfig, LayerCapture, SampleCapture, capture_batch
from bias_suite.inputs import encode_batch

CAP = 5


def _capture(loaded, samples, **config):
    inputs = encode_batch(loaded.processor, samples, loaded.model.device, loaded.model.dtype)
    return capture_batch(loaded.model, inputs, [s.sample_id for s in samples], CaptureConfig(layers=(1,), **config))


def test_cap_keeps_at_most_cap_tokens_per_modality(load_tiny, samples):
    result = _capture(load_tiny("tiny-llava"), samples, max_tokens_per_modality=CAP)
    for sample in result.samples:
        kept_image = sample.image_mask[sample.key_positions]
        assert int(kept_image.sum()) == min(CAP, int(sample.image_mask.sum()))
        assert int((~kept_image).sum()) == min(CAP, int(sample.text_mask.sum()))
        assert sample.layers[1].pre_rope_keys.shape[0] == sample.key_positions.numel()
        assert torch.equal(sample.key_positions, sample.key_positions.sort().values)


def test_capped_keys_are_the_uncapped_keys_at_the_kept_positions(load_tiny, samples):
    loaded = load_tiny("tiny-llava")
    capped = _capture(loaded, samples, max_tokens_per_modality=CAP)
    full = _capture(loaded, samples)
    for few, every in zip(capped.samples, full.samples):
        torch.testing.assert_close(few.layers[1].pre_rope_keys, every.layers[1].pre_rope_keys[few.key_positions])


def test_cap_selection_depends_on_seed_and_sample_not_on_batch(load_tiny, samples):
    loaded = load_tiny("tiny-llava")
    batched = _capture(loaded, samples, max_tokens_per_modality=CAP, seed=7)
    alone = _capture(loaded, samples[2:], max_tokens_per_modality=CAP, seed=7)
    reseeded = _capture(loaded, samples, max_tokens_per_modality=CAP, seed=8)
    assert torch.equal(batched.samples[2].key_positions, alone.samples[0].key_positions)
    assert any(
        not torch.equal(a.key_positions, b.key_positions) for a, b in zip(batched.samples, reseeded.samples)
    )


def test_query_rows_after_image_cover_the_question_and_the_last_position(load_tiny, samples):
    result = _capture(load_tiny("tiny-llava"), samples)
    for sample in result.samples:
        last_image = int(sample.image_mask.nonzero().max())
        assert torch.equal(sample.query_positions, torch.arange(last_image + 1, sample.n_tokens))
        assert sample.layers[1].post_rope_queries.shape[0] == sample.query_positions.numel()


def test_without_post_rope_keys_only_the_key_space_view_is_kept(load_tiny, samples):
    result = _capture(load_tiny("tiny-llava"), samples, keep_post_rope_keys=False, query_rows="last")
    layer = result.samples[0].layers[1]
    assert layer.post_rope_keys is None
    assert layer.post_rope_queries.shape[0] == 1


def _sample_with_hidden_max_abs(values: list[float]) -> SampleCapture:
    n_tokens = len(values)
    layer = LayerCapture(
        layer=0, pre_rope_keys=torch.zeros(n_tokens, 1, 2), post_rope_keys=None,
        post_rope_queries=torch.zeros(1, 1, 2), hidden_max_abs=torch.tensor(values), sliding_window=None,
    )
    return SampleCapture(
        sample_id="s", input_ids=torch.zeros(n_tokens, dtype=torch.long), image_mask=torch.zeros(n_tokens, dtype=torch.bool),
        position_ids=torch.arange(n_tokens)[None], key_positions=torch.arange(n_tokens),
        query_positions=torch.tensor([n_tokens - 1]), layers={0: layer},
    )


def test_sinks_are_the_first_token_and_massive_activations():
    sample = _sample_with_hidden_max_abs([1.0, 1.2, 0.9, 500.0, 1.1, 1.0])
    assert sample.sink_positions(0).tolist() == [0, 3]


def test_without_massive_activations_the_first_token_is_the_only_sink():
    sample = _sample_with_hidden_max_abs([1.0, 1.2, 0.9, 1.5, 1.1])
    assert sample.sink_positions(0).tolist() == [0]
