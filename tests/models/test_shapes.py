"""Full-size shape checkpoints: the public architectures at full size, with random weights, no download."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

from bias_suite.benchmarks.sample import Sample
from bias_suite.capture.batch import CaptureConfig, capture_batch
from bias_suite.errors import ModelNotFoundError
from bias_suite.models import shapes
from bias_suite.models.decoder import decoder_geometry
from bias_suite.models.loading import describe_spec, load_model
from bias_suite.models.prompts import encode_batch
from bias_suite.models.tiny.families import TextSize, build_llava

# Parameter counts and decoder geometry of the public checkpoints (config.json of each hub id).
PUBLISHED = {
    "llava-1.5-7b": dict(parameters=7.06e9, layers=32, heads=32, kv_heads=32, head_dim=128, image_tokens=576,
                         architecture="LlavaForConditionalGeneration"),
    "llava-1.5-13b": dict(parameters=13.35e9, layers=40, heads=40, kv_heads=40, head_dim=128, image_tokens=576,
                          architecture="LlavaForConditionalGeneration"),
    "qwen2.5-vl-7b": dict(parameters=8.29e9, layers=28, heads=28, kv_heads=4, head_dim=128, image_tokens=None,
                          architecture="Qwen2_5_VLForConditionalGeneration"),
    "qwen2-vl-2b": dict(parameters=2.21e9, layers=28, heads=12, kv_heads=2, head_dim=128, image_tokens=None,
                        architecture="Qwen2VLForConditionalGeneration"),
}


def test_every_shape_has_published_numbers():
    assert set(PUBLISHED) == set(shapes.SHAPES)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shape_checkpoints_have_the_public_architecture(name):
    model, processor = shapes.build_shape(f"shape:{name}", "meta", torch.bfloat16)  # no memory allocated
    expected = PUBLISHED[name]
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(expected["parameters"], rel=5e-3)
    geometry = decoder_geometry(model)
    assert (geometry.n_layers, geometry.n_heads, geometry.n_kv_heads, geometry.head_dim) == (
        expected["layers"], expected["heads"], expected["kv_heads"], expected["head_dim"])
    assert next(model.parameters()).dtype == torch.bfloat16
    assert type(model).__name__ == expected["architecture"]
    if expected["image_tokens"]:
        encoded = processor(images=[Image.new("RGB", (500, 400))], text=["<image>\nWhat is it?"], return_tensors="pt")
        assert int((encoded["input_ids"] == model.config.image_token_id).sum()) == expected["image_tokens"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_describing_a_shape_reads_its_config_only(name):
    described = describe_spec(f"shape:{name}")
    model_type, n_layers = described.model_type, described.n_layers
    assert (model_type, n_layers) == (shapes.SHAPES[name].model_type, PUBLISHED[name]["layers"])


def test_unknown_shape_lists_the_built_in_ones():
    with pytest.raises(ModelNotFoundError, match=r"shape:llava-1.5-70b: unknown shape.*shape:llava-1.5-7b"):
        load_model("shape:llava-1.5-70b", device="cpu")


def test_a_shape_loads_and_captures_like_any_model(monkeypatch):
    """The load path of a shape spec (built on the device, in the dtype, with its processor), run with a
    small stand-in config so it fits a test."""
    small_model, small_processor = build_llava(TextSize(layers=2), image_size=56)
    small = dataclasses.replace(shapes.SHAPES["llava-1.5-7b"], config=lambda processor: small_model.config,
                                processor=lambda: small_processor)
    monkeypatch.setitem(shapes.SHAPES, "llava-1.5-7b", small)
    loaded = load_model("shape:llava-1.5-7b", device="cpu", dtype="bfloat16")
    assert (loaded.info.source, loaded.info.dtype, loaded.info.device) == ("shape", "bfloat16", "cpu")
    samples = [Sample("a", Image.new("RGB", (64, 48), (200, 10, 10)), "What colour is it?")]
    inputs = encode_batch(loaded.processor, samples, "cpu", torch.bfloat16)
    result = capture_batch(loaded.model, inputs, ["a"], CaptureConfig(layers=(0, 1)))
    assert result.samples[0].layers[1].pre_rope_keys.dtype == torch.bfloat16
