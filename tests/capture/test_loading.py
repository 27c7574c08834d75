"""Model specs resolve to checkpoints that load through the Auto* path; bad specs fail clearly."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from bias_suite.errors import ModelNotFoundError, NotImageTextToTextError
from bias_suite.loading import load_model, resolve_device, resolve_spec
from bias_suite.tiny import TINY_FAMILIES, ensure_checkpoint

EXPECTED_CLASSES = {
    "tiny-llava": ("LlavaForConditionalGeneration", "LlavaProcessor", "llava"),
    "tiny-qwen2.5-vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", "qwen2_5_vl"),
    "tiny-qwen2-vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", "qwen2_vl"),
}


def test_every_family_has_expectations():
    assert set(EXPECTED_CLASSES) == set(TINY_FAMILIES)


def test_alias_loads_the_real_architecture_and_processor(alias, load_tiny):
    loaded = load_tiny(alias)
    model_class, processor_class, model_type = EXPECTED_CLASSES[alias]
    assert type(loaded.model).__name__ == model_class
    assert type(loaded.processor).__name__ == processor_class
    assert loaded.info.model_type == model_type
    assert loaded.info.source == "alias"
    assert loaded.info.attn_implementation == "sdpa"
    assert loaded.info.n_layers == 4
    assert len(loaded.info.config_hash) == 16
    assert not loaded.model.training


def test_local_directory_loads_like_the_alias(alias, load_tiny):
    directory = ensure_checkpoint(alias)
    loaded = load_model(str(directory), device="cpu", dtype="float32")
    assert loaded.info.source == "local"
    assert loaded.info.config_hash == load_tiny(alias).info.config_hash


def test_tiny_checkpoints_are_saved_as_safetensors_with_tokenizer_and_processor(alias):
    files = {path.name for path in ensure_checkpoint(alias).iterdir()}
    assert "model.safetensors" in files and "pytorch_model.bin" not in files
    assert {"tokenizer.json", "tokenizer_config.json", "processor_config.json"} <= files


def test_tiny_checkpoints_are_deterministic_from_the_seed(tmp_path: Path):
    first = load_file(ensure_checkpoint("tiny-llava", tmp_path / "a", seed=3) / "model.safetensors")
    second = load_file(ensure_checkpoint("tiny-llava", tmp_path / "b", seed=3) / "model.safetensors")
    other = load_file(ensure_checkpoint("tiny-llava", tmp_path / "c", seed=4) / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_missing_directory_is_named(tmp_path: Path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(ModelNotFoundError, match=r"no-such-checkpoint: no such directory"):
        resolve_spec(str(missing))


def test_unknown_alias_lists_the_built_in_ones():
    with pytest.raises(ModelNotFoundError, match=r"tiny-gpt.*tiny-llava, tiny-qwen2.5-vl"):
        resolve_spec("tiny-gpt")


def test_directory_without_config_is_refused(tmp_path: Path):
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        resolve_spec(str(tmp_path))


def test_text_only_checkpoint_is_not_image_text_to_text(tmp_path: Path):
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    with pytest.raises(NotImageTextToTextError, match=r"model_type 'llama' is not an image-text-to-text"):
        load_model(str(tmp_path), device="cpu")


def test_unreachable_hub_id_says_what_to_do(monkeypatch):
    # The hub library reads HF_HUB_OFFLINE at import time, so patch the constant it consults.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match=r"bias-suite-test/does-not-exist: .*pass the local directory"):
        load_model("bias-suite-test/does-not-exist", device="cpu")


def test_auto_device_is_cuda_bfloat16_when_present_else_cpu_float32():
    device, dtype = resolve_device("auto", "auto")
    if torch.cuda.is_available():
        assert (device.type, dtype) == ("cuda", torch.bfloat16)
    else:
        assert (device.type, dtype) == ("cpu", torch.float32)


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        resolve_device("cpu", "float8")


def test_remote_code_is_not_trusted_unless_asked(alias, monkeypatch):
    from transformers import AutoModelForImageTextToText

    seen = {}
    original = AutoModelForImageTextToText.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", spy)
    load_model(alias, device="cpu")
    assert seen["trust_remote_code"] is False


def test_device_map_auto_is_accepted(alias):
    loaded = load_model(alias, device_map="auto", dtype="float32")
    assert loaded.info.device in {"cpu"} | {f"cuda:{i}" for i in range(torch.cuda.device_count())}
