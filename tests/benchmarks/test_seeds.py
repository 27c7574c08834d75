"""Seeds are integers in [0, 2**32): anything else is refused by name before numpy sees it."""

from __future__ import annotations

import numpy as np
import pytest

from bias_suite.benchmarks import load_benchmark, validate_seed
from bias_suite.errors import SeedError

from .files import write_jsonl


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, np.int64(7)])
def test_seeds_in_range_are_returned_as_int(seed):
    assert validate_seed(seed) == int(seed)
    assert type(validate_seed(seed)) is int


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_seeds_out_of_range_are_named(seed):
    with pytest.raises(SeedError, match=rf"seed {seed} is out of range.*0 <= seed < 2\*\*32"):
        validate_seed(seed)


@pytest.mark.parametrize("seed", [1.5, "3", True, None])
def test_seeds_that_are_not_integers_are_named(seed):
    with pytest.raises(SeedError, match=rf"seed {seed!r} is not an integer"):
        validate_seed(seed)


@pytest.mark.parametrize("seed", [-1, 2**70])
def test_builtin_benchmark_refuses_a_bad_seed_by_name(seed):
    with pytest.raises(SeedError, match=rf"seed {seed} is out of range"):
        load_benchmark("shapes", n_samples=2, seed=seed)


@pytest.mark.parametrize("seed", [-1, 2**70])
def test_benchmark_file_refuses_a_bad_seed_by_name(tmp_path, seed):
    path = write_jsonl(tmp_path / "bench.jsonl", load_benchmark("shapes", n_samples=2).samples)
    with pytest.raises(SeedError, match=rf"seed {seed} is out of range"):
        load_benchmark(path, n_samples=1, seed=seed)
