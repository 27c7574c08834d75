"""Qwen2-VL family: image tokens get 3-D (temporal, height, width) rotary positions."""

from __future__ import annotations

import pytest
import torch

from bias_suite.capture.batch import CaptureConfig, capture_batch
from bias_suite.errors import CaptureError
from bias_suite.models.prompts import encode_batch

MROPE_FAMILIES = ("tiny-qwen2.5-vl", "tiny-qwen2-vl")


@pytest.mark.parametrize("alias", MROPE_FAMILIES)
def test_image_tokens_get_3d_positions(alias, load_tiny, samples):
    loaded = load_tiny(alias)
    inputs = encode_batch(loaded.processor, samples, loaded.model.device, loaded.model.dtype)
    result = capture_batch(loaded.model, inputs, [s.sample_id for s in samples], CaptureConfig(layers=(0,)))
    for sample in result.samples:
        positions = sample.position_ids
        assert positions.shape == (3, sample.n_tokens)
        image = positions[:, sample.image_mask]
        # Height and width axes vary across the image grid while the temporal axis stays put;
        # 1-D fallback positions would make all three rows equal.
        assert not torch.equal(image[1], image[2])
        assert image[0].unique().numel() == 1
        assert image[1].unique().numel() > 1 and image[2].unique().numel() > 1
        text = positions[:, sample.text_mask]
        assert torch.equal(text[0], text[1]) and torch.equal(text[1], text[2])


@pytest.mark.parametrize("alias", MROPE_FAMILIES)
def test_capture_refuses_inputs_without_mm_token_type_ids(alias, load_tiny, samples):
    loaded = load_tiny(alias)
    inputs = encode_batch(loaded.processor, samples, loaded.model.device, loaded.model.dtype)
    del inputs["mm_token_type_ids"]
    with pytest.raises(CaptureError, match="mm_token_type_ids"):
        capture_batch(loaded.model, inputs, [s.sample_id for s in samples], CaptureConfig(layers=(0,)))
