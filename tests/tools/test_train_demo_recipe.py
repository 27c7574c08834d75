"""The shipped demo checkpoints are what ``python -m bias_suite train-demo`` builds: each one's
``training.json`` records the tool's full recipe and stages, and its config, tokenizer and processor
files and weight layout are those of the tool's freshly built model."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors import safe_open

from bias_suite.demo import DEMO_CHECKPOINTS
from bias_suite.tools.train_demo.data import build_training_data
from bias_suite.tools.train_demo.recipe import ARMS, FULL_RECIPE, build_demo_llava, stages_for
from bias_suite.tools.train_demo.train import SAVED_DTYPE

VERSION_KEYS = ("transformers_version",)  # written by save_pretrained: the installed version, not the model's


@pytest.fixture(params=ARMS)
def arm(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def fresh_checkpoint(tmp_path_factory):
    """The tool's untrained model for the full recipe, saved as the tool saves a trained one."""
    directory = tmp_path_factory.mktemp("fresh-demo")
    torch.manual_seed(FULL_RECIPE.seed)
    model, processor = build_demo_llava(FULL_RECIPE.shape)
    model.to(SAVED_DTYPE).save_pretrained(directory, safe_serialization=True)
    processor.save_pretrained(directory)
    return directory


def without_versions(value):
    if isinstance(value, dict):
        return {key: without_versions(item) for key, item in value.items() if key not in VERSION_KEYS}
    return value


def tensor_layout(path) -> dict[str, tuple[tuple[int, ...], str]]:
    with safe_open(str(path), framework="pt") as weights:
        return {name: (tuple(weights.get_slice(name).get_shape()), weights.get_slice(name).get_dtype())
                for name in weights.keys()}  # noqa: SIM118 (safe_open is not iterable)


def test_training_json_records_the_full_recipe_and_its_stages(arm):
    record = json.loads((DEMO_CHECKPOINTS[f"demo-{arm}"] / "training.json").read_text())
    recipe = FULL_RECIPE
    data = build_training_data(recipe.seed, recipe.n_texts, recipe.n_captions, recipe.n_questions, recipe.n_scenes)
    expected_stages = [("vision", "vision tower", recipe.vision_steps, recipe.vision_lr)]
    expected_stages += [(s.name, s.trainable, len(s.batches), s.peak_lr) for s in stages_for(arm, recipe, data)]
    assert record["arm"] == arm
    assert record["recipe"] == dataclasses.asdict(recipe)
    assert [(s["name"], s["trainable"], s["steps"], s["peak_lr"]) for s in record["stages"]] == expected_stages
    assert record["saved_dtype"] == str(SAVED_DTYPE).removeprefix("torch.")


@pytest.mark.parametrize("name", ["config.json", "generation_config.json", "processor_config.json",
                                  "tokenizer.json", "tokenizer_config.json"])
def test_shipped_settings_files_are_those_of_the_tools_model(arm, name, fresh_checkpoint):
    shipped = json.loads((DEMO_CHECKPOINTS[f"demo-{arm}"] / name).read_text())
    built = json.loads((fresh_checkpoint / name).read_text())
    assert without_versions(shipped) == without_versions(built)


def test_shipped_chat_template_and_weight_layout_are_those_of_the_tools_model(arm, fresh_checkpoint):
    shipped = DEMO_CHECKPOINTS[f"demo-{arm}"]
    assert (shipped / "chat_template.jinja").read_text() == (fresh_checkpoint / "chat_template.jinja").read_text()
    assert tensor_layout(shipped / "model.safetensors") == tensor_layout(fresh_checkpoint / "model.safetensors")
