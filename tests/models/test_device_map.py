"""A model spread by accelerate (``device_map``, ``max_memory``) measures exactly what the plain load measures.

On a CPU-only machine the only split is CPU + disk: ``max_memory={"cpu": "300KB"}`` sends tiny-llava's whole
language model to disk, while its vision tower — and so its first parameter — stays in memory; an explicit map
puts the vision tower on disk too, so ``model.device`` (the first parameter's) is ``meta``. Every forward
still executes on the CPU, so the captures must be identical, bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from bias_suite.benchmarks import load_benchmark
from bias_suite.capture.batch import CaptureConfig
from bias_suite.capture.extract import extract
from bias_suite.capture.scoring import answer_log_likelihoods
from bias_suite.models.loading import load_model
from bias_suite.models.placement import describe_placement, dispatch, input_device
from bias_suite.options import max_memory, parse_device_map, parse_max_memory

pytest.importorskip("accelerate")

CONFIG = CaptureConfig(layers=(0, 3), max_tokens_per_modality=16)


@pytest.fixture(scope="module")
def samples():
    return load_benchmark("shapes", n_samples=4, seed=0).samples


@pytest.fixture(scope="module")
def plain():
    return load_model("tiny-llava", device="cpu", dtype="float32")


def assert_same_captures(ours, theirs):
    for a, b in zip(ours, theirs, strict=True):
        for layer in CONFIG.layers:
            assert torch.equal(a.layers[layer].pre_rope_keys, b.layers[layer].pre_rope_keys), layer
            assert torch.equal(a.layers[layer].row_shares.visual_share, b.layers[layer].row_shares.visual_share)


def test_a_model_offloaded_to_disk_captures_what_the_plain_load_captures(plain, samples):
    split = load_model("tiny-llava", device="cpu", dtype="float32", device_map="auto", max_memory="cpu=300KB")
    assert "disk" in set(split.model.hf_device_map.values())
    assert split.input_device == torch.device("cpu")
    assert "device map:" in split.info.device and "disk" in split.info.device
    assert_same_captures(extract(split, samples, CONFIG), extract(plain, samples, CONFIG))
    answers = [sample.answer or "red" for sample in samples]
    assert torch.equal(answer_log_likelihoods(split, samples, answers), answer_log_likelihoods(plain, samples, answers))


def test_inputs_go_to_the_embeddings_device_when_the_first_parameter_is_offloaded(plain, samples, tmp_path):
    from transformers import AutoModelForImageTextToText

    layers = {f"model.language_model.layers.{index}": "disk" for index in range(1, 4)}
    device_map = {"model.vision_tower": "disk", "model.multi_modal_projector": "cpu",
                  "model.language_model.embed_tokens": "cpu", "model.language_model.layers.0": "cpu", **layers,
                  "model.language_model.norm": "cpu", "model.language_model.rotary_emb": "cpu", "lm_head": "cpu"}
    model = AutoModelForImageTextToText.from_pretrained(
        plain.info.path, dtype=torch.float32, device_map=device_map, offload_folder=str(tmp_path)).eval()
    assert model.device.type == "meta"  # what extract() used to send inputs to
    assert input_device(model) == torch.device("cpu")
    split = type(plain)(model, plain.processor, plain.info, plain.geometry)
    assert_same_captures(extract(split, samples, CONFIG), extract(plain, samples, CONFIG))


def test_a_model_built_in_memory_is_dispatched_like_a_checkpoint(plain):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_config(plain.model.config, dtype=torch.float32).eval()
    model.load_state_dict(plain.model.state_dict())
    ids = torch.tensor([[1, 5, 7, 9, 11, 3]])
    with torch.no_grad():
        expected = plain.model(input_ids=ids).logits
        dispatched = dispatch(model, "sequential", {"cpu": "300KB"})
        assert "disk" in describe_placement(dispatched)
        assert torch.equal(dispatched(input_ids=ids).logits, expected)


def test_max_memory_reads_gpu_indices_as_accelerate_wants_them():
    assert max_memory("0=20GiB, cuda:1=20GB,cpu=60GiB") == {0: "20GiB", 1: "20GB", "cpu": "60GiB"}
    assert parse_max_memory("cuda:0=1GB,disk=1TB") == "0=1GB,disk=1TB"
    budget = max_memory("cpu=1GB")
    budget["cpu"] = 5
    assert max_memory("cpu=1GB") == {"cpu": "1GB"}  # a fresh dict each time: accelerate rewrites its argument


@pytest.mark.parametrize(("value", "culprit"), [("gpu=1GB", "'gpu' is not a device"), ("0=lots", "'lots' is not"),
                                                ("", "give DEVICE=AMOUNT"), ("0=1GB,cuda:0=2GB", "given twice")])
def test_a_bad_max_memory_names_the_culprit(value, culprit):
    with pytest.raises(ValueError, match=culprit):
        max_memory(value)


def test_an_unknown_device_map_lists_the_strategies():
    with pytest.raises(ValueError, match="auto, balanced, balanced_low_0, sequential"):
        parse_device_map("everywhere")
    with pytest.raises(ValueError, match="device_map"):
        load_model("tiny-llava", device="cpu", max_memory="cpu=1GB")
