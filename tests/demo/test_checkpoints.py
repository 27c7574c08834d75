"""The shipped demo checkpoints: real LLaVA models that load through the Auto classes, fit the size
budget, and read their images well enough to answer the ``shapes`` questions well above chance."""

from __future__ import annotations

import pytest
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from bias_suite.benchmarks import load_benchmark
from bias_suite.demo import DEMO_CHECKPOINTS
from bias_suite.models.loading import LoadedModel, load_model
from bias_suite.tools.train_demo.scoring import answer_accuracy, chance_accuracy

MAX_SHIPPED_BYTES = 10_000_000
ABOVE_CHANCE_FACTOR = 2


@pytest.fixture(scope="module")
def load_demo():
    """``load_demo(alias) -> LoadedModel`` in float32 on CPU, loaded once per module; read-only."""
    loaded: dict[str, LoadedModel] = {}

    def load(alias: str) -> LoadedModel:
        if alias not in loaded:
            loaded[alias] = load_model(str(DEMO_CHECKPOINTS[alias]), device="cpu", dtype="float32")
        return loaded[alias]

    return load


@pytest.fixture(params=sorted(DEMO_CHECKPOINTS))
def demo_alias(request) -> str:
    return request.param


def test_demo_checkpoints_load_as_llava_through_the_auto_classes(demo_alias, load_demo):
    loaded = load_demo(demo_alias)
    assert isinstance(loaded.model, LlavaForConditionalGeneration)
    assert isinstance(loaded.processor, LlavaProcessor)
    assert loaded.info.source == "local"
    assert loaded.info.dtype == "float32"  # stored as float16, cast on load


def test_shipped_checkpoints_fit_in_ten_megabytes():
    files = [path for directory in DEMO_CHECKPOINTS.values() for path in directory.rglob("*") if path.is_file()]
    total = sum(path.stat().st_size for path in files)
    assert total <= MAX_SHIPPED_BYTES, f"demo checkpoints take {total:,} bytes, budget {MAX_SHIPPED_BYTES:,}"


def test_demo_models_answer_shapes_questions_well_above_chance(demo_alias, load_demo):
    samples = load_benchmark("shapes").samples
    accuracy = answer_accuracy(load_demo(demo_alias), samples)
    chance = chance_accuracy(samples)
    assert accuracy >= ABOVE_CHANCE_FACTOR * chance, (
        f"{demo_alias} answers {accuracy:.0%} of shapes questions; chance is {chance:.0%}"
    )
