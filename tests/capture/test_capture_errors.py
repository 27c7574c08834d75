"""Bad input gets an error that names the culprit, never a silent result."""

from __future__ import annotations

import copy

import pytest
import torch

from bias_suite.capture.batch import CaptureConfig, capture_batch
from bias_suite.errors import (
    ImageTokenMismatchError,
    LayerSelectionError,
    MissingImageTokensError,
    NonFiniteKeysError,
)
from bias_suite.models.decoder import image_token_id
from bias_suite.models.prompts import encode_batch


def _inputs(loaded, samples):
    return encode_batch(loaded.processor, samples, loaded.model.device, loaded.model.dtype)


def _ids(samples):
    return [s.sample_id for s in samples]


def test_prompt_without_image_tokens_is_refused_naming_the_sample(alias, load_tiny, samples):
    loaded = load_tiny(alias)
    inputs = _inputs(loaded, samples)
    row = inputs["input_ids"][1]
    row[row == image_token_id(loaded.model)] = loaded.processor.tokenizer.pad_token_id
    with pytest.raises(MissingImageTokensError, match=r"sample-1.*no image token"):
        capture_batch(loaded.model, inputs, _ids(samples), CaptureConfig(layers=(0,)))


def test_image_token_count_differing_from_visual_features_is_refused(alias, load_tiny, samples):
    loaded = load_tiny(alias)
    inputs = _inputs(loaded, samples)
    token_id = image_token_id(loaded.model)
    row = inputs["input_ids"][0]
    first_image = int((row == token_id).nonzero()[0])
    row[first_image] = loaded.processor.tokenizer.pad_token_id  # one placeholder fewer than features
    with pytest.raises(ImageTokenMismatchError, match=r"image tokens but .*produced .*visual features"):
        capture_batch(loaded.model, inputs, _ids(samples), CaptureConfig(layers=(0,)))


@pytest.mark.parametrize("layer", [4, 40, -5])
def test_layer_out_of_range_is_refused_with_the_valid_range(load_tiny, samples, layer):
    loaded = load_tiny("tiny-llava")
    with pytest.raises(LayerSelectionError, match=rf"layer {layer} out of range: .* has 4 decoder layers \(0–3\)"):
        capture_batch(loaded.model, _inputs(loaded, samples), _ids(samples), CaptureConfig(layers=(0, layer)))


def test_negative_layers_count_from_the_end(load_tiny, samples):
    loaded = load_tiny("tiny-llava")
    result = capture_batch(loaded.model, _inputs(loaded, samples), _ids(samples), CaptureConfig(layers=(-1,)))
    assert set(result.samples[0].layers) == {3}


def test_nan_keys_are_refused_naming_layer_and_sample(load_tiny, samples):
    broken = copy.deepcopy(load_tiny("tiny-llava"))
    with torch.no_grad():
        broken.model.get_decoder().layers[2].self_attn.k_proj.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteKeysError, match=r"sample 'sample-0', layer 2: \d+ of \d+ pre-RoPE keys"):
        capture_batch(broken.model, _inputs(broken, samples), _ids(samples), CaptureConfig(layers=(0, 2)))


def test_sample_ids_must_match_the_batch(load_tiny, samples):
    loaded = load_tiny("tiny-llava")
    with pytest.raises(ValueError, match="2 sample ids for a batch of 3"):
        capture_batch(loaded.model, _inputs(loaded, samples), ["a", "b"], CaptureConfig(layers=(0,)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(layers=()), "layers is empty"),
        (dict(layers=(0,), query_rows="first"), "query_rows must be"),
        (dict(layers=(0,), max_tokens_per_modality=0), "max_tokens_per_modality must be >= 1"),
    ],
)
def test_capture_config_rejects_nonsense(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CaptureConfig(**kwargs)
