"""Benchmark records: seeded subsets, and a content hash that changes exactly when the content does."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bias_suite.benchmarks import Benchmark, BenchmarkError, load_benchmark
from bias_suite.benchmarks.benchmark import subsample_indices


def ids(benchmark: Benchmark) -> list[str]:
    return [s.sample_id for s in benchmark.samples]


def test_same_seed_gives_the_same_subset():
    assert ids(load_benchmark("photos", n_samples=5, seed=7)) == ids(load_benchmark("photos", n_samples=5, seed=7))


def test_different_seeds_give_different_subsets():
    assert ids(load_benchmark("photos", n_samples=5, seed=0)) != ids(load_benchmark("photos", n_samples=5, seed=1))


def test_subset_keeps_benchmark_order():
    everything = ids(load_benchmark("photos", seed=2))
    subset = ids(load_benchmark("photos", n_samples=6, seed=2))
    assert subset == [sample_id for sample_id in everything if sample_id in subset]


@given(size=st.integers(1, 200), n_samples=st.integers(1, 250), seed=st.integers(0, 2**32 - 1))
def test_subsample_indices_are_distinct_sorted_in_range_and_as_many_as_asked(size, n_samples, seed):
    picked = subsample_indices(size, n_samples, seed)
    assert picked == sorted(set(picked))
    assert len(picked) == min(size, n_samples)
    assert all(0 <= i < size for i in picked)


def test_subset_has_the_requested_size_and_hash_of_what_it_yields():
    subset = load_benchmark("shapes", n_samples=4)
    assert subset.size == len(subset) == 4
    assert subset.content_hash != load_benchmark("shapes").content_hash


def test_more_samples_than_exist_yields_all():
    assert ids(load_benchmark("conflict", n_samples=1000)) == ids(load_benchmark("conflict"))


@pytest.mark.parametrize("n_samples", [0, -3])
def test_fewer_than_one_sample_is_refused(n_samples):
    with pytest.raises(BenchmarkError, match=f"n_samples must be >= 1.*not {n_samples}"):
        load_benchmark("shapes", n_samples=n_samples)


def test_content_hash_is_16_hex_digits_and_ignores_name_and_source():
    samples = load_benchmark("shapes", n_samples=3).samples
    a, b = Benchmark("a", "builtin", samples), Benchmark("b.tsv", "tsv", samples)
    assert a.content_hash == b.content_hash
    assert len(a.content_hash) == 16 and int(a.content_hash, 16) >= 0


def test_content_hash_changes_with_one_pixel():
    samples = list(load_benchmark("shapes", n_samples=3).samples)
    image = samples[1].image.copy()
    image.putpixel((0, 0), (0, 0, 1))
    changed = [*samples[:1], replace(samples[1], image=image), *samples[2:]]
    before, after = Benchmark("x", "builtin", tuple(samples)), Benchmark("x", "builtin", tuple(changed))
    assert after.content_hash != before.content_hash


@pytest.mark.parametrize("field", ["prompt", "answer", "conflicting_caption", "caption_answer"])
def test_content_hash_changes_with_each_text_field(field):
    samples = load_benchmark("conflict", n_samples=2).samples
    changed = (replace(samples[0], **{field: "something else"}), samples[1])
    assert Benchmark("x", "builtin", changed).content_hash != Benchmark("x", "builtin", samples).content_hash


def test_content_hash_tells_a_missing_answer_from_an_empty_one():
    (sample,) = load_benchmark("shapes", n_samples=1).samples
    no_answer, empty = replace(sample, answer=None), replace(sample, answer="")
    assert Benchmark("x", "builtin", (no_answer,)).content_hash != Benchmark("x", "builtin", (empty,)).content_hash


def test_benchmark_refuses_a_sample_id_used_twice():
    first, second = load_benchmark("shapes", n_samples=2).samples
    with pytest.raises(BenchmarkError, match=rf"'{first.sample_id}' at samples\[0\], samples\[1\]"):
        Benchmark("x", "builtin", (first, replace(second, sample_id=first.sample_id)))


def test_benchmark_refuses_no_samples():
    with pytest.raises(BenchmarkError, match="'x' has no samples"):
        Benchmark("x", "builtin", ())


def test_summary_records_name_source_size_seed_and_hash():
    benchmark = load_benchmark("text-in-image", n_samples=3, seed=5)
    assert benchmark.summary() == {"name": "text-in-image", "source": "builtin", "size": 3, "seed": 5,
                                   "content_hash": benchmark.content_hash, "n_rows": 16}

