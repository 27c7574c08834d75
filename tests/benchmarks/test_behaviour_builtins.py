"""The behaviour built-ins: answers that match the pixels, whole items per subset, and each suite's design."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from PIL import Image

from bias_suite.benchmarks import BenchmarkError, Sample, load_benchmark
from bias_suite.benchmarks.layouts import COLOURS, COUNTS, SLOTS, TYPICAL_COLOUR
from bias_suite.benchmarks.sample import Query
from bias_suite.vocabulary import BehaviourKind
from tests.benchmarks.scene_reader import answer_from_pixels, read_scene

SUITES = ("language-prior", "conflict-levels", "caption-variants", "paired-images")
ROLES = {
    "language-prior": ["prior", "knowledge", "perception", "perception-where", "bias", "prior-factual", "prior-blank"],
    "conflict-levels": ["L3", "L0", "L1", "L2"],
    "caption-variants": ["corrupted", "none", "matching", "irrelevant", "blank-matching", "blank-corrupted",
                         "blank-irrelevant"],
    "paired-images": ["a", "b"],
}
TEXT_ONLY = ("knowledge", "prior-blank", "blank-matching", "blank-corrupted", "blank-irrelevant")


def question_of(prompt: str) -> str:
    """The question at the end of a prompt (captions and instructions are sentences before it)."""
    return re.sub(r"^.*\. ", "", prompt)


@pytest.fixture(params=SUITES)
def suite(request) -> str:
    return request.param


@pytest.mark.parametrize("seed, n_samples", [(0, None), (1, 30)])
def test_every_visual_query_is_answered_by_its_own_pixels(suite, seed, n_samples):
    for sample in load_benchmark(suite, n_samples=n_samples, seed=seed).samples:
        for query in sample.queries:
            if query.role in TEXT_ONLY:
                assert read_scene(sample.query_image(query)) == [], (sample.sample_id, query.role)  # blank canvas
                continue
            image = sample.query_image(query)
            assert answer_from_pixels(question_of(query.prompt), image) == query.answer, (sample.sample_id, query.role)


def test_every_item_has_its_suite_and_all_its_roles_probe_first(suite):
    benchmark = load_benchmark(suite, n_samples=16)
    assert benchmark.behaviour is BehaviourKind(suite) and benchmark.has_behaviour
    for sample in benchmark.samples:
        assert [query.role for query in sample.queries] == ROLES[suite]
        probe = sample.queries[0]
        assert (probe.image, probe.prompt, probe.answer) == (None, sample.prompt, sample.answer)


def test_samples_picks_whole_items_seeded(suite):
    whole = {s.sample_id: s for s in load_benchmark(suite).samples}
    subset = load_benchmark(suite, n_samples=10, seed=0)
    assert subset.size == 10 and subset.content_hash == load_benchmark(suite, n_samples=10, seed=0).content_hash
    for sample in subset.samples:
        assert [q.prompt for q in sample.queries] == [q.prompt for q in whole[sample.sample_id].queries]


def test_the_content_hash_covers_the_queries():
    sample = load_benchmark("paired-images", n_samples=1).samples[0]
    changed_candidate = dataclasses.replace(sample.queries[1], candidates=sample.queries[1].candidates[::-1])
    changed_image = dataclasses.replace(sample.queries[1], image=Image.new("RGB", (224, 224), "white"))
    hashes = {load_benchmark("paired-images", n_samples=1).content_hash}
    from bias_suite.benchmarks import content_hash

    for query in (changed_candidate, changed_image):
        hashes.add(content_hash([dataclasses.replace(sample, queries=(sample.queries[0], query))]))
    assert len(hashes) == 3


def test_language_prior_never_shows_the_typical_colour_and_the_factual_image_changes_only_the_target():
    for sample in load_benchmark("language-prior").samples:
        info = sample.queries[0].info
        seen = read_scene(sample.image)
        assert TYPICAL_COLOUR[info["kind"]] not in {shape.colour for shape in seen}
        factual = read_scene(sample.query_image(sample.queries[5]))
        changed = {(s.kind, s.colour, s.position) for s in seen} ^ {(s.kind, s.colour, s.position) for s in factual}
        assert {colour for _, colour, _ in changed} == {info["colour"], info["typical"]}
        assert sample.queries[0].trap == info["typical"] != sample.answer


def test_conflict_levels_pair_images_and_traps_as_designed():
    for sample in load_benchmark("conflict-levels").samples:
        l3, l0, l1, l2 = sample.queries
        assert l0.image is l2.image and l1.image is None  # L0/L2 the typical image, L1/L3 the atypical one
        typical = l0.info["typical"]
        assert l0.answer == l2.answer == typical and l1.trap == l3.trap == typical
        assert l2.trap not in (typical, l1.answer) and l2.prompt.startswith(f"The {l0.info['kind']} is {l2.trap}.")
        assert all(query.candidates == COLOURS for query in sample.queries)


def test_an_irrelevant_caption_names_no_word_of_the_answer_group():
    groups = {"colour": COLOURS, "count": COUNTS, "position": SLOTS}
    for sample in load_benchmark("caption-variants").samples:
        irrelevant = next(q for q in sample.queries if q.role == "irrelevant")
        caption = irrelevant.prompt.removesuffix(question_of(irrelevant.prompt))
        words = set(re.findall(r"[a-z]+", caption.lower()))
        assert not words & set(groups[irrelevant.info["question_kind"]]), (sample.sample_id, caption)


def test_pairs_differ_in_their_answer_and_in_one_shape_only():
    for sample in load_benchmark("paired-images").samples:
        a, b = sample.queries
        assert a.answer != b.answer and a.candidates == b.candidates and a.prompt == b.prompt
        first, second = ({(s.kind, s.colour, s.position) for s in read_scene(image)}
                         for image in (sample.image, b.image))
        assert len(first - second) <= 1 and len(second - first) <= 1 and first != second


def test_a_query_must_have_its_answer_among_different_candidates():
    with pytest.raises(BenchmarkError, match="answer 'green' is not one of its candidates"):
        Query("a", "What colour?", ("red", "blue"), "green")
    with pytest.raises(BenchmarkError, match="at least two different"):
        Query("a", "What colour?", ("red", "red"), "red")
    with pytest.raises(BenchmarkError, match="trap 'red' must be another"):
        Query("a", "What colour?", ("red", "blue"), "red", trap="red")


def test_the_first_query_is_the_sample_itself():
    image = Image.new("RGB", (8, 8))
    with pytest.raises(BenchmarkError, match=r"first query .* is its probe"):
        Sample("s", image, "Where?", answer="left",
               queries=(Query("a", "What?", ("left", "right"), "left"),))
    rendered = np.asarray(load_benchmark("paired-images", n_samples=1).samples[0].image)
    assert rendered.shape == (224, 224, 3)
