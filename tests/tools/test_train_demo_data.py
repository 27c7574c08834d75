"""The demonstrator's training data: seeded, disjoint from the evaluation scenes, formatted exactly as
evaluation prompts are, with the loss where the recipe says; both arms take the same batches."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
import torch

from bias_suite.benchmarks import load_benchmark
from bias_suite.models.prompts import format_prompt
from bias_suite.tools.train_demo.data import build_training_data
from bias_suite.tools.train_demo.recipe import QUICK_RECIPE, Recipe, build_demo_llava, joint_stages, text_first_stages
from bias_suite.tools.train_demo.sequences import IGNORE_INDEX, chat_text, collate, encode_training_data

RECIPE = Recipe(batch_size=4, text_steps=3, align_steps=3, instruct_steps=2, n_scenes=6)


@pytest.fixture(scope="module")
def data():
    return build_training_data(0, RECIPE.n_texts, RECIPE.n_captions, RECIPE.n_questions, RECIPE.n_scenes)


@pytest.fixture(scope="module")
def processor():
    return build_demo_llava(RECIPE.shape)[1]


@pytest.fixture(scope="module")
def encoded(processor, data):
    return encode_training_data(processor, data)


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data(data):
    again = build_training_data(0, RECIPE.n_texts, RECIPE.n_captions, RECIPE.n_questions, RECIPE.n_scenes)
    other = build_training_data(1, RECIPE.n_texts, RECIPE.n_captions, RECIPE.n_questions, RECIPE.n_scenes)
    assert again == data
    assert other.examples != data.examples


def test_training_scenes_are_never_evaluation_scenes():
    quick = build_training_data(0, 0, 0, 0, QUICK_RECIPE.n_scenes)
    training = {scene.render().tobytes() for scene in quick.scenes}
    for name in ("shapes", "conflict"):
        evaluation = {sample.image.tobytes() for sample in load_benchmark(name).samples}
        assert not training & evaluation, f"a training scene is a {name} scene"


def test_image_examples_are_token_for_token_what_the_processor_gives_at_evaluation(processor, data, encoded):
    for index in [*data.indices("caption")[:2], *data.indices("question")[:2]]:
        example = data.examples[index]
        image = data.scenes[example.scene_index].render()
        prompt = format_prompt(processor, example.user_text)
        assert chat_text(processor, example).startswith(prompt)
        reference = processor(images=[image], text=[chat_text(processor, example)], return_tensors="pt")
        assert encoded.input_ids[index].tolist() == reference["input_ids"][0].tolist()
        torch.testing.assert_close(encoded.pixel_values[example.scene_index], reference["pixel_values"][0])


def test_image_examples_train_only_their_answer_and_text_examples_every_token(processor, data, encoded):
    tokenizer = processor.tokenizer
    for index in [data.indices("question")[0], data.indices("caption")[0]]:
        trained = encoded.labels[index][encoded.labels[index] != IGNORE_INDEX]
        assert tokenizer.decode(trained) == f" {data.examples[index].answer}</s>"
    text = data.indices("text")[0]
    assert torch.equal(encoded.labels[text], encoded.input_ids[text])


def test_a_batch_is_right_padded_with_one_image_per_image_example(processor, data, encoded):
    indices = [data.indices("text")[0], data.indices("question")[0], data.indices("caption")[0]]
    batch = collate(encoded, indices, processor.tokenizer.pad_token_id)
    lengths = [len(encoded.input_ids[i]) for i in indices]
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert batch["attention_mask"][:, 0].all()
    assert batch["pixel_values"].shape[0] == 2


def test_both_arms_take_the_same_batches_for_the_same_number_of_steps(data):
    text_first = [batch for stage in text_first_stages(RECIPE, data) for batch in stage.batches]
    joint = [batch for stage in joint_stages(RECIPE, data) for batch in stage.batches]
    assert len(text_first) == len(joint) == RECIPE.total_steps
    assert Counter(text_first) == Counter(joint)
    assert joint != text_first  # the control interleaves them
    every_example = sorted(i for batch in text_first for i in batch)
    assert every_example == list(range(len(data.examples)))


def test_text_first_freezes_the_decoder_while_the_projector_aligns(data):
    stages = text_first_stages(RECIPE, data)
    assert [(stage.name, stage.trainable) for stage in stages] == [
        ("text", "decoder"), ("align", "projector"), ("instruct", "decoder+projector")
    ]
    text_examples = set(data.indices("text"))
    assert all(set(batch) <= text_examples for batch in stages[0].batches)
    assert not any(set(batch) & text_examples for stage in stages[1:] for batch in stage.batches)
    assert [stage.trainable for stage in joint_stages(RECIPE, data)] == ["decoder+projector"]


def test_an_odd_recipe_still_uses_every_example_once():
    recipe = dataclasses.replace(RECIPE, batch_size=5)
    data = build_training_data(0, recipe.n_texts, recipe.n_captions, recipe.n_questions, recipe.n_scenes)
    used = sorted(i for stage in text_first_stages(recipe, data) for batch in stage.batches for i in batch)
    assert used == list(range(len(data.examples)))
