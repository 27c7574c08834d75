"""The built-in benchmarks: offline, deterministic, readable ids, and answers that match the pixels."""

from __future__ import annotations

import hashlib
import re
import sys

import pytest

from bias_suite.benchmarks import BUILTIN_BENCHMARKS, load_benchmark
from bias_suite.benchmarks.photos import MAX_SIDE, PHOTOS, photo_thumbnail
from bias_suite.benchmarks.scenes import COLOUR_RGB, SHAPE_KINDS, SLOT_CENTRES
from bias_suite.benchmarks.vocabulary import COLOURS, NUMBERS, OBJECTS, POSITIONS
from tests.benchmarks.scene_reader import answer_from_pixels

EXPECTED_SIZES = {"photos": 36, "shapes": 24, "text-in-image": 16, "conflict": 16, "language-prior": 120,
                  "conflict-levels": 120, "caption-variants": 120, "paired-images": 120}


@pytest.fixture(params=list(BUILTIN_BENCHMARKS))
def builtin(request) -> str:
    """Every built-in benchmark name in turn."""
    return request.param


def image_hashes(benchmark) -> list[str]:
    return [hashlib.sha256(s.image.tobytes()).hexdigest() for s in benchmark.samples]


def test_same_seed_gives_same_ids_images_and_content_hash(builtin):
    first, second = load_benchmark(builtin, seed=3), load_benchmark(builtin, seed=3)
    assert [s.sample_id for s in first.samples] == [s.sample_id for s in second.samples]
    assert image_hashes(first) == image_hashes(second)
    assert first.content_hash == second.content_hash


def test_builtin_reports_name_source_and_size(builtin):
    benchmark = load_benchmark(builtin)
    assert (benchmark.name, benchmark.source, benchmark.size) == (builtin, "builtin", EXPECTED_SIZES[builtin])


def test_sample_ids_are_unique_and_start_with_the_benchmark_name(builtin):
    ids = [s.sample_id for s in load_benchmark(builtin).samples]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(rf"{builtin}/[a-z0-9_/-]+", sample_id) for sample_id in ids)


def test_images_are_rgb_and_at_most_256_pixels_a_side(builtin):
    for sample in load_benchmark(builtin).samples:
        assert sample.image.mode == "RGB"
        assert max(sample.image.size) <= MAX_SIDE


def test_builtins_load_without_the_download_helper(builtin, monkeypatch):
    monkeypatch.setitem(sys.modules, "pooch", None)  # any skimage.data download would need pooch
    photo_thumbnail.cache_clear()  # read the photos again, now without pooch
    assert load_benchmark(builtin).size == EXPECTED_SIZES[builtin]


def test_photos_cover_every_photo_with_several_prompts():
    ids = [s.sample_id for s in load_benchmark("photos").samples]
    for photo in PHOTOS:
        assert sum(sample_id.startswith(f"photos/{photo}/") for sample_id in ids) >= 2
    assert all(f"photos/{photo}/describe" in ids for photo in PHOTOS)


@pytest.mark.parametrize("seed", [0, 1])
def test_shapes_answers_match_the_rendered_pixels(seed):
    for sample in load_benchmark("shapes", seed=seed).samples:
        assert sample.answer == answer_from_pixels(sample.prompt, sample.image), sample.sample_id


@pytest.mark.parametrize("seed", [0, 1])
def test_conflict_answer_follows_the_image_and_caption_answer_the_caption(seed):
    for sample in load_benchmark("conflict", seed=seed).samples:
        assert sample.prompt.startswith(sample.conflicting_caption + " ")
        question = sample.prompt.removeprefix(sample.conflicting_caption + " ")
        assert sample.answer == answer_from_pixels(question, sample.image), sample.sample_id
        assert sample.caption_answer != sample.answer
        assert re.search(rf"\b{sample.caption_answer}\b", sample.conflicting_caption)


def test_conflict_is_the_only_builtin_with_conflicts():
    assert [name for name in BUILTIN_BENCHMARKS if load_benchmark(name).has_conflicts] == ["conflict"]


def test_rendered_builtins_have_an_answer_for_every_sample():
    assert all(load_benchmark(name).has_answers for name in ("shapes", "text-in-image", "conflict"))


def test_text_in_image_answers_are_vocabulary_words_or_numbers():
    for sample in load_benchmark("text-in-image").samples:
        assert sample.answer in OBJECTS or sample.answer.isdigit()


def test_scene_words_come_from_the_benchmark_vocabulary():
    assert set(SHAPE_KINDS) <= set(OBJECTS)
    assert set(COLOUR_RGB) <= set(COLOURS)
    assert set(SLOT_CENTRES) <= set(POSITIONS)
    answers = {s.answer for s in load_benchmark("shapes").samples}
    assert answers <= set(COLOURS) | set(POSITIONS) | set(NUMBERS)
