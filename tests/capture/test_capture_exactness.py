"""Captured tensors equal independent computations of the same quantities, for every tiny family."""

from __future__ import annotations

import torch

from bias_suite.capture.batch import CaptureConfig, capture_batch, plan_batch
from bias_suite.capture.recorder import attach_capture
from bias_suite.metrics.attention_rows import attention_rows
from bias_suite.models.decoder import image_token_id, prefill_kwargs, text_decoder
from bias_suite.models.prompts import encode_batch

ALL_LAYERS = (0, 1, 2, 3)


def _encode(loaded, samples):
    return encode_batch(loaded.processor, samples, loaded.model.device, loaded.model.dtype)


def _capture(loaded, samples, **config):
    inputs = _encode(loaded, samples)
    config = {"keep_post_rope": True, **config}
    result = capture_batch(
        loaded.model, inputs, [s.sample_id for s in samples], CaptureConfig(layers=ALL_LAYERS, **config)
    )
    return inputs, result


def _valid_index(inputs, b):
    return inputs["attention_mask"][b].bool().nonzero().flatten()


def test_batch_is_left_padded(alias, load_tiny, samples):
    inputs = _encode(load_tiny(alias), samples)
    mask = inputs["attention_mask"]
    assert not mask.all(), "the fixture samples must produce a padded batch"
    assert mask[:, -1].all(), "padding is expected on the left"


def test_logits_with_capture_equal_logits_without(alias, load_tiny, samples):
    loaded = load_tiny(alias)
    inputs = _encode(loaded, samples)
    kwargs = prefill_kwargs(loaded.model, inputs)
    plan, *_ = plan_batch(loaded.model, inputs, [s.sample_id for s in samples],
                          CaptureConfig(layers=ALL_LAYERS, query_rows="all", keep_post_rope=True))
    with torch.no_grad():
        without = loaded.model(**kwargs).logits
        with attach_capture(loaded.model, plan):
            with_capture = loaded.model(**kwargs).logits
    valid = inputs["attention_mask"].bool()
    torch.testing.assert_close(with_capture[valid], without[valid], atol=0, rtol=0)


def test_capture_leaves_the_model_as_it_was(alias, load_tiny, samples):
    loaded = load_tiny(alias)
    decoder = text_decoder(loaded.model)
    before = decoder.config._attn_implementation
    _capture(loaded, samples)
    assert decoder.config._attn_implementation == before
    assert not decoder._forward_pre_hooks and not decoder.rotary_emb._forward_pre_hooks
    for layer in decoder.layers:
        assert not hasattr(layer.self_attn, "_bias_suite_capture")
        assert not layer.self_attn.k_proj._forward_hooks
        assert not getattr(layer.self_attn, "k_norm", torch.nn.Identity())._forward_hooks
        assert not layer._forward_pre_hooks


def test_post_rope_keys_equal_kv_cache_keys(alias, load_tiny, samples):
    loaded = load_tiny(alias)
    inputs, result = _capture(loaded, samples)
    with torch.no_grad():
        outputs = loaded.model(**{**prefill_kwargs(loaded.model, inputs), "use_cache": True})
    cache = outputs.get("cache") or outputs.get("past_key_values")
    width = inputs["input_ids"].shape[1]
    for b, sample in enumerate(result.samples):
        index = _valid_index(inputs, b)
        for layer, captured in sample.layers.items():
            keys = cache.layers[layer].keys[b]  # [kv, cached, D]: a sliding-window layer keeps only the last keys
            kept = index >= width - keys.shape[1]
            cache_keys = keys[:, index[kept] - (width - keys.shape[1])].transpose(0, 1).float().cpu()
            torch.testing.assert_close(captured.post_rope_keys[kept.cpu()], cache_keys, atol=0, rtol=0)


def test_pre_rope_keys_equal_k_proj_of_normed_input(alias, load_tiny, samples, tolerance):
    """k_proj (then k_norm, where the family normalises keys per head) of the layer's normed input."""
    loaded = load_tiny(alias)
    decoder = text_decoder(loaded.model)
    normed_inputs = {}
    handles = [
        layer.input_layernorm.register_forward_hook(lambda _m, _a, out, i=i: normed_inputs.__setitem__(i, out))
        for i, layer in enumerate(decoder.layers)
    ]
    try:
        inputs, result = _capture(loaded, samples)
    finally:
        for handle in handles:
            handle.remove()
    geometry = result.geometry
    for b, sample in enumerate(result.samples):
        index = _valid_index(inputs, b)[sample.key_positions.to(inputs["input_ids"].device)]
        for layer, captured in sample.layers.items():
            attention = decoder.layers[layer].self_attn
            with torch.no_grad():
                expected = attention.k_proj(normed_inputs[layer][b][index]).reshape(-1, geometry.n_kv_heads,
                                                                                    geometry.head_dim)
                if hasattr(attention, "k_norm"):
                    expected = attention.k_norm(expected)
            expected = expected.float().cpu()
            assert captured.pre_rope_keys.dtype == loaded.model.dtype  # kept in the model's dtype
            # The oracle's matmul has another shape than the batched one: equal up to rounding.
            torch.testing.assert_close(captured.pre_rope_keys.float(), expected, **tolerance)


def test_attention_rows_equal_eager_output_attentions(alias, load_tiny, samples, tolerance):
    inputs, result = _capture(load_tiny(alias), samples, query_rows="all")
    eager = load_tiny(alias, attn_implementation="eager")
    with torch.no_grad():
        outputs = eager.model(**prefill_kwargs(eager.model, inputs), output_attentions=True)
    geometry = result.geometry
    assert geometry.n_kv_heads < geometry.n_heads, "tiny families are built with GQA"
    for b, sample in enumerate(result.samples):
        index = _valid_index(inputs, b)
        for layer, captured in sample.layers.items():
            expected = outputs.attentions[layer][b][:, index][:, :, index].transpose(0, 1).float().cpu()
            rows = attention_rows(captured.post_rope_queries, captured.post_rope_keys, sample.query_positions,
                                  geometry.scaling, visible=captured.visible)
            torch.testing.assert_close(rows, expected[sample.query_positions], **tolerance)


def test_summaries_reduced_on_the_device_equal_those_of_eager_attention_rows(alias, load_tiny, samples, tolerance):
    """What capture keeps per row (visual share, share without sinks, logit gap) equals the same
    statistics of the rows eager attention materialises (``output_attentions``), for every query row."""
    inputs, result = _capture(load_tiny(alias), samples, query_rows="all", keep_post_rope=False)
    eager = load_tiny(alias, attn_implementation="eager")
    with torch.no_grad():
        outputs = eager.model(**prefill_kwargs(eager.model, inputs), output_attentions=True)
    for b, sample in enumerate(result.samples):
        index = _valid_index(inputs, b)
        for layer, captured in sample.layers.items():
            # [R, H, n]
            probabilities = outputs.attentions[layer][b][:, index][:, :, index].transpose(0, 1).float().cpu()
            sinks = torch.zeros(sample.n_tokens, dtype=torch.bool)
            sinks[captured.sink_positions] = True
            image = sample.image_mask
            share = (probabilities * image).sum(-1)
            torch.testing.assert_close(captured.row_shares.visual_share, share, **tolerance)
            kept = probabilities * ~sinks
            nosink = (kept * image).sum(-1) / kept.sum(-1)
            torch.testing.assert_close(captured.row_shares.visual_share_nosink, nosink, equal_nan=True, **tolerance)
            # logit gap: log-probabilities differ from scaled scores by a per-row constant, which cancels
            visible = probabilities > 0
            log_p = probabilities.clamp_min(1e-30).log()
            gap = ((log_p * (visible & ~image)).sum(-1) / (visible & ~image).sum(-1)
                   - (log_p * (visible & image)).sum(-1) / (visible & image).sum(-1))
            defined = torch.isfinite(gap)
            torch.testing.assert_close(captured.row_shares.logit_gap[defined], gap[defined], atol=1e-3, rtol=1e-3)


def test_batch_of_one_and_batch_of_n_give_the_same_keys(alias, load_tiny, samples, tolerance):
    loaded = load_tiny(alias)
    _, batched = _capture(loaded, samples)
    for b, sample in enumerate(samples):
        _, alone = _capture(loaded, [sample])
        for layer in ALL_LAYERS:
            together, single = batched.samples[b].layers[layer], alone.samples[0].layers[layer]
            torch.testing.assert_close(together.pre_rope_keys, single.pre_rope_keys, **tolerance)
            torch.testing.assert_close(together.post_rope_keys, single.post_rope_keys, **tolerance)
            torch.testing.assert_close(together.post_rope_queries, single.post_rope_queries, **tolerance)
        assert torch.equal(batched.samples[b].position_ids, alone.samples[0].position_ids)


def test_image_mask_marks_exactly_the_image_placeholder_tokens(alias, load_tiny, samples):
    loaded = load_tiny(alias)
    _, result = _capture(loaded, samples)
    token_id = image_token_id(loaded.model)
    for sample in result.samples:
        assert torch.equal(sample.image_mask, sample.input_ids == token_id)
        assert sample.image_mask.sum() > 0


def test_right_padding_gives_the_same_capture_as_left_padding(load_tiny, samples, tolerance):
    loaded = load_tiny("tiny-llava")
    tokenizer = loaded.processor.tokenizer
    _, left = _capture(loaded, samples)
    tokenizer.padding_side = "right"
    try:
        right_inputs, right = _capture(loaded, samples)
    finally:
        tokenizer.padding_side = "left"
    assert not right_inputs["attention_mask"][:, -1].all(), "the batch must actually be right-padded"
    torch.testing.assert_close(right.last_logits, left.last_logits, **tolerance)
    for a, b in zip(left.samples, right.samples):
        assert torch.equal(a.input_ids, b.input_ids)
        torch.testing.assert_close(a.layers[3].post_rope_keys, b.layers[3].post_rope_keys, **tolerance)
        torch.testing.assert_close(a.layers[3].post_rope_queries, b.layers[3].post_rope_queries, **tolerance)


def test_capture_delegates_to_the_eager_backend_with_the_same_result(alias, load_tiny, samples, tolerance):
    _, with_sdpa = _capture(load_tiny(alias), samples)
    _, with_eager = _capture(load_tiny(alias, attn_implementation="eager"), samples)
    assert with_eager.geometry.attn_implementation == "eager"
    torch.testing.assert_close(with_eager.last_logits, with_sdpa.last_logits, **tolerance)
    for a, b in zip(with_sdpa.samples, with_eager.samples):
        torch.testing.assert_close(a.layers[2].post_rope_keys, b.layers[2].post_rope_keys, **tolerance)
