"""Capture is exact on every image-text-to-text family whose images enter the decoder as tokens, and says
why on the families that cannot fit the method.

Each family is a tiny random-init model built from transformers' own config classes
(:mod:`tests.capture.family_catalog`), run on a left-padded batch of two samples. Every check compares
capture with an oracle that does not use capture's code:

* logits with capture attached equal logits without it;
* captured post-RoPE keys equal the model's KV cache;
* the image mask equals where the model scattered its visual features;
* attention rows recomputed from the capture (with the captured mask) equal eager ``output_attentions``,
  and the on-device summaries equal the summaries of those eager rows;
* captured positions equal those of a plain ``model(**inputs)`` forward (the model's own scheme);
* captured pre-RoPE keys equal the key tensor entering the model's own rotary function.
"""

from __future__ import annotations

import copy
import sys
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from bias_suite.capture.batch import CaptureConfig, capture_batch, plan_batch
from bias_suite.capture.recorder import attach_capture
from bias_suite.errors import CaptureError, CaptureSelfCheckError
from bias_suite.metrics.attention_rows import attention_rows
from bias_suite.models.decoder import decoder_geometry, prefill_kwargs, text_decoder
from tests.capture.family_catalog import CATALOG, EXPECTED_UNSUPPORTED, FamilyModel

SUPPORTED = [name for name in CATALOG if name not in EXPECTED_UNSUPPORTED]
SAMPLE_IDS = ("first", "second")
ROW_TOLERANCE = 1e-4
KEY_TOLERANCE = 1e-5

# What each refusal must say: the family's cause, in words a user can act on.
REFUSAL_WORDS = {
    "mllama": "cross-attention",
    "blip-2": "rotary",
    "kosmos-2": "image token id",
    "florence2": "encoder-decoder",
    "fuyu": "fused query/key/value",
}


@pytest.fixture(scope="module", params=SUPPORTED)
def family(request) -> FamilyModel:
    torch.manual_seed(0)
    return CATALOG[request.param](seed=0)


@pytest.fixture(scope="module")
def captured(family):
    layers = decoder_geometry(family.model).attention_layers
    config = CaptureConfig(layers=layers, query_rows="all", keep_post_rope=True, self_check=True)
    return capture_batch(family.model, family.inputs, SAMPLE_IDS, config)


def real_tokens(family: FamilyModel, b: int) -> torch.Tensor:
    return family.inputs["attention_mask"][b].bool().nonzero().flatten()


def kv_cache(outputs):
    inner = getattr(outputs, "language_model_outputs", None)  # InstructBLIP
    holder = inner if inner is not None else outputs
    return holder.get("cache") or holder.get("past_key_values")


@contextmanager
def recording_scatters(batch: int, seq: int):
    """Masks of every ``masked_scatter`` into a ``[batch, seq, hidden]`` tensor during the block."""
    original, masks = torch.Tensor.masked_scatter, []

    def recording(self, mask, source):
        if self.ndim == 3 and tuple(self.shape[:2]) == (batch, seq):
            masks.append((mask.expand_as(self).any(-1) if mask.ndim == 3 else mask).bool())
        return original(self, mask, source)

    torch.Tensor.masked_scatter = recording
    try:
        yield masks
    finally:
        torch.Tensor.masked_scatter = original


def pixel_dependent_rows(family: FamilyModel) -> torch.Tensor:
    """``[B, S]`` rows of the first decoder layer's input that change when every floating-point input
    (pixels) is redrawn: where visual features entered, for families that merge without masked_scatter."""
    decoder = text_decoder(family.model)
    seen = []
    handle = decoder.layers[0].register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).detach()), with_kwargs=True)
    generator = torch.Generator().manual_seed(1234)
    redrawn = {k: torch.randn(v.shape, generator=generator) * 3 if v.is_floating_point() else v
               for k, v in family.inputs.items()}
    try:
        with torch.no_grad():
            family.model(**family.inputs)
            family.model(**redrawn)
    finally:
        handle.remove()
    return (seen[0] != seen[1]).any(-1)


# --------------------------------------------------------------------------- the checks


def test_capture_covers_every_attention_layer_of_every_sample(family, captured):
    layers = decoder_geometry(family.model).attention_layers
    assert [s.sample_id for s in captured.samples] == list(SAMPLE_IDS)
    for b, sample in enumerate(captured.samples):
        assert sample.n_tokens == real_tokens(family, b).numel()
        assert sorted(sample.layers) == list(layers)
        assert int(sample.image_mask.sum()) == family.n_image_tokens_per_sample[b]


def test_logits_with_capture_equal_logits_without(family):
    model, inputs = family.model, family.inputs
    layers = decoder_geometry(model).attention_layers
    plan, *_ = plan_batch(model, inputs, SAMPLE_IDS, CaptureConfig(layers=layers, query_rows="all"))
    kwargs = prefill_kwargs(model, inputs)
    with torch.no_grad():
        without = model(**kwargs).logits
        with attach_capture(model, plan):
            with_capture = model(**kwargs).logits
    valid = inputs["attention_mask"].bool()
    assert torch.equal(with_capture[valid], without[valid])


def test_post_rope_keys_equal_the_kv_cache(family, captured):
    with torch.no_grad():
        outputs = family.model(**{**prefill_kwargs(family.model, family.inputs), "use_cache": True})
    cache, width = kv_cache(outputs), family.inputs["input_ids"].shape[1]
    for b, sample in enumerate(captured.samples):
        tokens = real_tokens(family, b)
        for layer, capture in sample.layers.items():
            keys = cache.layers[layer].keys[b]  # [kv, cached, D]; a sliding layer keeps only the last ones
            first = width - keys.shape[1]
            kept = tokens >= first
            expected = keys[:, tokens[kept] - first].transpose(0, 1)
            torch.testing.assert_close(capture.post_rope_keys[kept], expected, rtol=0, atol=0)


def test_image_mask_is_where_the_model_put_visual_features(family, captured):
    batch, seq = family.inputs["input_ids"].shape
    with recording_scatters(batch, seq) as masks, torch.no_grad():
        family.model(**family.inputs)
    # without masked_scatter (index assignment, a merger module): the rows that depend on the pixels
    where = torch.stack(masks).any(0) if masks else pixel_dependent_rows(family)
    for b, sample in enumerate(captured.samples):
        assert torch.equal(sample.image_mask, where[b][real_tokens(family, b)])


def test_attention_rows_equal_eager_output_attentions(family, captured):
    eager = copy.deepcopy(family.model)
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        outputs = eager(**prefill_kwargs(eager, family.inputs), output_attentions=True)
    attentions = getattr(outputs, "language_model_outputs", None) or outputs
    attentions = attentions.attentions
    layers = decoder_geometry(family.model).attention_layers
    n_layers = len(text_decoder(family.model).layers)
    for b, sample in enumerate(captured.samples):
        tokens = real_tokens(family, b)
        for layer, capture in sample.layers.items():
            probabilities = attentions[layer if len(attentions) == n_layers else layers.index(layer)]
            expected = probabilities[b][:, tokens][:, :, tokens].transpose(0, 1)[sample.query_positions]  # [R, H, n]
            rows = attention_rows(capture.post_rope_queries, capture.post_rope_keys, sample.query_positions,
                                  captured.geometry.scaling, visible=capture.visible)
            torch.testing.assert_close(rows, expected, rtol=0, atol=ROW_TOLERANCE)
            on_image = (expected * sample.image_mask.float()).sum(-1)  # [R, H]
            torch.testing.assert_close(capture.row_shares.visual_share, on_image, rtol=0, atol=ROW_TOLERANCE)


def test_positions_are_those_of_the_models_own_forward(family, captured):
    decoder = text_decoder(family.model)
    seen = []
    handle = decoder.rotary_emb.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(kwargs.get("position_ids", args[1] if len(args) > 1 else None)),
        with_kwargs=True)
    try:
        with torch.no_grad():
            family.model(**family.inputs)
    finally:
        handle.remove()
    natural = seen[0] if seen[0].ndim == 3 else seen[0].unsqueeze(0)
    b = int(family.inputs["attention_mask"].sum(-1).argmax())  # the unpadded row: padding-free positions
    natural = natural[:, 0 if natural.shape[1] == 1 else b][:, real_tokens(family, b)]
    assert torch.equal(captured.samples[b].position_ids, natural)


def _rotary_function(attention: nn.Module) -> tuple[object, str]:
    module = sys.modules[type(attention).__module__]
    for name in ("apply_rotary_pos_emb", "apply_rotary_emb"):
        if hasattr(module, name):
            return module, name
    raise LookupError(f"{module.__name__} has no rotary function")


def test_pre_rope_keys_are_the_keys_entering_the_models_rotary_function(family, captured):
    decoder = text_decoder(family.model)
    layers = decoder_geometry(family.model).attention_layers
    module, name = _rotary_function(decoder.layers[layers[0]].self_attn)
    original, current, entering = getattr(module, name), {}, {}

    def recording(q, k, *args, **kwargs):
        entering.setdefault(current["layer"], k.detach().clone())
        return original(q, k, *args, **kwargs)

    handles = [decoder.layers[i].self_attn.register_forward_pre_hook(lambda *_, i=i: current.update(layer=i))
               for i in layers]
    setattr(module, name, recording)
    try:
        with torch.no_grad():
            family.model(**prefill_kwargs(family.model, family.inputs))
    finally:
        setattr(module, name, original)
        for handle in handles:
            handle.remove()
    seq = family.inputs["input_ids"].shape[1]
    n_kv = captured.geometry.n_kv_heads
    for b, sample in enumerate(captured.samples):
        rows = real_tokens(family, b)[sample.key_positions]
        for layer, capture in sample.layers.items():
            if layer not in entering:  # a NoPE layer: its keys are never rotated
                torch.testing.assert_close(capture.pre_rope_keys.float(), capture.post_rope_keys[sample.key_positions])
                continue
            keys = entering[layer]
            keys = keys if keys.shape[1] == n_kv and keys.shape[2] == seq else keys.transpose(1, 2)  # → [B, kv, S, D]
            expected = keys[b][:, rows].transpose(0, 1)
            torch.testing.assert_close(capture.pre_rope_keys, expected, rtol=0, atol=KEY_TOLERANCE)


# --------------------------------------------------------------------------- refusals and the self-check


@pytest.mark.parametrize("name", list(EXPECTED_UNSUPPORTED))
def test_families_that_cannot_fit_the_method_are_refused_with_their_cause(name):
    family = CATALOG[name](seed=0)
    with pytest.raises(CaptureError) as refusal:
        capture_batch(family.model, family.inputs, SAMPLE_IDS, CaptureConfig(layers=(-1,)))
    assert str(refusal.value).startswith(f"{family.model.config.model_type}: ")
    assert REFUSAL_WORDS[name] in str(refusal.value)


def _zero_based_1d_positions(model, inputs, geometry=None):
    kwargs = prefill_kwargs(model, inputs, geometry)
    kwargs["position_ids"] = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)  # 0-based, 1-D
    return kwargs


@pytest.mark.parametrize("name", ["paligemma", "qwen3_vl"])
def test_self_check_names_the_family_when_positions_are_not_the_models_own(name, monkeypatch):
    """PaliGemma counts from 1 and Qwen3-VL uses 3-D positions: a capture that ran with 0-based 1-D
    positions would be silently wrong, so the self-check refuses it."""
    import bias_suite.capture.batch

    monkeypatch.setattr(bias_suite.capture.batch, "prefill_kwargs", _zero_based_1d_positions)
    family = CATALOG[name](seed=0)
    layers = decoder_geometry(family.model).attention_layers
    with pytest.raises(CaptureSelfCheckError, match=rf"^{name}: .*positions"):
        capture_batch(family.model, family.inputs, SAMPLE_IDS, CaptureConfig(layers=layers, self_check=True))
