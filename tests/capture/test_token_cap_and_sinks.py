"""Seeded per-modality token caps bound memory without depending on batch composition; sinks are found
within each modality; what a layer keeps does not grow with the sequence."""

from __future__ import annotations

import torch

from bias_suite.benchmarks.sample import Sample
from bias_suite.capture.batch import CaptureConfig, capture_batch
from bias_suite.metrics.attention_rows import sink_mask
from bias_suite.models.prompts import encode_batch
from tests.samples import make_samples

CAP = 5


def _capture(loaded, samples, **config):
    inputs = encode_batch(loaded.processor, samples, loaded.model.device, loaded.model.dtype)
    config = {"layers": (1,), **config}
    return capture_batch(loaded.model, inputs, [s.sample_id for s in samples], CaptureConfig(**config))


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
        assert sample.layers[1].row_shares.visual_share.shape == (sample.query_positions.numel(), 4)


def test_by_default_only_capped_keys_and_row_summaries_are_kept(load_tiny, samples):
    result = _capture(load_tiny("tiny-llava"), samples, query_rows="last")
    layer = result.samples[0].layers[1]
    assert layer.post_rope_keys is None and layer.post_rope_queries is None and layer.hidden_max_abs is None
    assert layer.row_shares.visual_share.shape == (1, 4)


def test_kept_bytes_per_sample_and_layer_do_not_grow_with_the_sequence(load_tiny):
    """The question is 10× longer in the second batch; what a layer keeps is the same size."""
    loaded = load_tiny("tiny-llava")
    short, long = make_samples(1)[0], make_samples(1)[0]
    long = Sample(long.sample_id, long.image, " ".join([long.prompt] * 10))
    sizes, lengths = [], []
    for sample in (short, long):
        result = _capture(loaded, [sample], max_tokens_per_modality=CAP, query_rows="last")
        sizes.append(result.samples[0].layers[1].retained_bytes)
        lengths.append(result.samples[0].n_tokens)
    assert lengths[1] > 3 * lengths[0]
    assert sizes[0] == sizes[1]


def test_sinks_are_found_within_each_modality():
    """Image inputs 100× larger than text embeddings (layer 0 of LLaVA) are not sinks; a text token and an
    image token that stand out from their own modality are, and so is the first real token."""
    max_abs = torch.tensor([[0.0, 1.0, 1.1, 100.0, 101.0, 99.0, 5000.0, 0.9, 40.0, 1.0]])
    image = torch.tensor([[False, False, False, True, True, True, True, False, False, False]])
    valid = torch.tensor([[False, True, True, True, True, True, True, True, True, True]])  # position 0 is padding
    sinks = sink_mask(max_abs, image, valid, first_token=torch.tensor([1]), massive_ratio=20.0)
    assert sinks[0].nonzero().flatten().tolist() == [1, 6, 8]


def test_layer_zero_of_a_llava_model_keeps_attention_after_removing_sinks(load_tiny, samples):
    """Before sinks were found per modality, every image token of layer 0 was a sink on conflict
    (256/256) and visual_share_nosink was exactly 0 for the demo models."""
    result = _capture(load_tiny("tiny-llava"), samples, layers=(0,))
    for sample in result.samples:
        layer = sample.layers[0]
        assert not sample.image_mask[layer.sink_positions].any()
        assert float(layer.row_shares.visual_share_nosink.mean()) > 0
