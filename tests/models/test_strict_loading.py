"""A checkpoint whose weights do not cover the model, or whose weight file is damaged, is refused by name.

transformers re-initialises missing or mis-shaped weights at random and only logs it; a bias measured on such
a model describes random numbers. bias-suite refuses it unless the caller opts in, and then records it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bias_suite.errors import CorruptCheckpointError, IncompleteCheckpointError
from bias_suite.models.loading import load_model
from bias_suite.models.tiny import ensure_checkpoint

# transformers names the parameter in the model; the file stores it under LLaVA's legacy name.
K_PROJ_PARAMETER = "model.language_model.layers.0.self_attn.k_proj.weight"
K_PROJ_IN_FILE = "language_model.model.layers.0.self_attn.k_proj.weight"


def copy_checkpoint(destination: Path) -> Path:
    """A private copy of the tiny LLaVA checkpoint that a test may damage."""
    return Path(shutil.copytree(ensure_checkpoint("tiny-llava"), destination))


def edit_weights(directory: Path, edit) -> None:
    """Rewrite ``model.safetensors`` after ``edit(tensors)`` changed the name -> tensor dict in place."""
    tensors = load_file(directory / "model.safetensors")
    edit(tensors)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})


def load_cpu(directory: Path, **kwargs):
    return load_model(str(directory), device="cpu", dtype="float32", **kwargs)


def test_intact_checkpoint_records_no_missing_or_unexpected_weights(tmp_path):
    info = load_cpu(copy_checkpoint(tmp_path / "intact")).info
    assert (info.missing_weights, info.unexpected_weights, info.mismatched_weights) == ((), (), ())


def test_missing_weight_is_refused_naming_the_tensor_and_the_checkpoint(tmp_path):
    directory = copy_checkpoint(tmp_path / "missing")
    edit_weights(directory, lambda tensors: tensors.pop(K_PROJ_IN_FILE))
    with pytest.raises(IncompleteCheckpointError) as raised:
        load_cpu(directory)
    message = str(raised.value)
    assert str(directory) in message
    assert f"1 missing weight ({K_PROJ_PARAMETER})" in message
    assert "allow_incomplete_weights=True" in message


def test_missing_weight_loads_and_is_recorded_when_allowed(tmp_path):
    directory = copy_checkpoint(tmp_path / "allowed")
    edit_weights(directory, lambda tensors: tensors.pop(K_PROJ_IN_FILE))
    info = load_cpu(directory, allow_incomplete_weights=True).info
    assert info.missing_weights == (K_PROJ_PARAMETER,)
    assert info.unexpected_weights == ()


def test_unexpected_weight_is_refused_naming_the_tensor(tmp_path):
    directory = copy_checkpoint(tmp_path / "unexpected")
    edit_weights(directory, lambda tensors: tensors.update({"extra_head.weight": torch.zeros(3)}))
    with pytest.raises(IncompleteCheckpointError, match=r"1 unexpected weight \(extra_head\.weight\)"):
        load_cpu(directory)
    assert load_cpu(directory, allow_incomplete_weights=True).info.unexpected_weights == ("extra_head.weight",)


def test_mis_shaped_weight_is_refused_naming_both_shapes(tmp_path):
    directory = copy_checkpoint(tmp_path / "mismatched")

    def widen(tensors):
        rows, columns = tensors[K_PROJ_IN_FILE].shape
        tensors[K_PROJ_IN_FILE] = torch.zeros(rows + 1, columns)

    edit_weights(directory, widen)
    with pytest.raises(IncompleteCheckpointError, match=rf"1 mis-shaped weight \({K_PROJ_PARAMETER}: checkpoint "
                                                        r"\[33, 64\], model \[32, 64\]\)"):
        load_cpu(directory)
    assert load_cpu(directory, allow_incomplete_weights=True).info.mismatched_weights == (K_PROJ_PARAMETER,)


def test_many_missing_weights_are_counted_and_the_first_few_named(tmp_path):
    directory = copy_checkpoint(tmp_path / "many")
    edit_weights(directory, lambda tensors: [tensors.pop(name) for name in list(tensors) if ".layers.1." in name])
    with pytest.raises(IncompleteCheckpointError) as raised:
        load_cpu(directory)
    message = str(raised.value)
    n_dropped = message.split(" missing weights")[0].rsplit(" ", 1)[-1]
    assert int(n_dropped) > 5
    assert "and " in message and " more" in message


def test_tied_output_embedding_absent_from_the_file_is_not_flagged(tmp_path):
    directory = copy_checkpoint(tmp_path / "tied")
    config = json.loads((directory / "config.json").read_text())
    config["tie_word_embeddings"] = True
    config["text_config"]["tie_word_embeddings"] = True
    (directory / "config.json").write_text(json.dumps(config))
    edit_weights(directory, lambda tensors: tensors.pop("language_model.lm_head.weight"))
    loaded = load_cpu(directory)
    assert loaded.info.missing_weights == ()
    assert loaded.model.lm_head.weight.data_ptr() == loaded.model.get_input_embeddings().weight.data_ptr()


def test_truncated_weight_file_is_named(tmp_path):
    directory = copy_checkpoint(tmp_path / "truncated")
    weights = directory / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    with pytest.raises(CorruptCheckpointError) as raised:
        load_cpu(directory)
    message = str(raised.value)
    assert str(weights) in message
    assert "truncated or corrupt" in message


def test_weight_file_with_garbage_header_is_named(tmp_path):
    directory = copy_checkpoint(tmp_path / "garbage")
    (directory / "model.safetensors").write_bytes(b"not a safetensors file" * 10)
    with pytest.raises(CorruptCheckpointError, match=rf"{directory / 'model.safetensors'}.*truncated or corrupt"):
        load_cpu(directory)


def test_checkpoint_without_weight_file_is_named(tmp_path):
    directory = copy_checkpoint(tmp_path / "no-weights")
    (directory / "model.safetensors").unlink()
    with pytest.raises(CorruptCheckpointError, match=rf"{directory}: .*no weight file"):
        load_cpu(directory)
