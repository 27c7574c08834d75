"""--bias-shard=K/N deals a run's (model × benchmark) cells deterministically, and its manifest is hashed."""

from __future__ import annotations

import itertools
import random

import pytest

from bias_suite.errors import ShardError
from bias_suite.options import RunSettings, parse_shard
from bias_suite.run.records import Case
from bias_suite.run.shards import GateOptions, ModelPlan, ShardManifest, run_cells, shard_cells
from bias_suite.vocabulary import CaseKind


@pytest.mark.parametrize(("n_models", "n_benchmarks", "count"),
                         list(itertools.product(range(1, 4), range(1, 5), range(1, 7))))
def test_shards_hold_every_cell_once_balanced_whatever_the_order_of_the_options(n_models, n_benchmarks, count):
    models = [f"model-{index}" for index in range(n_models)]
    benchmarks = [f"bench-{index}" for index in range(n_benchmarks)]
    shards = [shard_cells(run_cells(models, benchmarks), index, count) for index in range(1, count + 1)]
    dealt = [cell for shard in shards for cell in shard]
    assert sorted(dealt) == sorted(itertools.product(models, benchmarks))  # every cell, once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    shuffled = random.Random(count).sample(models, len(models)), random.Random(-count).sample(benchmarks,
                                                                                              len(benchmarks))
    assert shards == [shard_cells(run_cells(*shuffled), index, count) for index in range(1, count + 1)]


@pytest.mark.parametrize("value", ["0/4", "5/4", "2", "a/b", "1/0", "-1/2"])
def test_a_shard_outside_1_to_n_is_refused(value):
    with pytest.raises(ValueError, match="give K/N with 1 <= K <= N"):
        parse_shard(value)


def manifest(models=("a", "b"), layers="0") -> ShardManifest:
    cases = tuple(Case(model, "shapes", 0, kind) for kind in (CaseKind.KEYSPACE, CaseKind.ATTENTION)
                  for model in models)
    options = GateOptions(tuple(models), ("shapes",), RunSettings(layers=layers), "thresholds")
    return ShardManifest(2, run_cells(models, ("shapes",)), cases, options, {"shapes": "88c0"},
                         tuple(ModelPlan(model, "llava", 4, (0, 1, 2, 3)) for model in models))


def test_the_manifest_hash_ignores_the_order_of_options_and_sees_everything_else():
    assert manifest(("a", "b")).digest == manifest(("b", "a")).digest
    assert manifest(layers="0").digest != manifest(layers="1").digest
    assert manifest(layers="1").differences(manifest(layers="0"))[0].startswith("settings: ")


def test_an_edited_manifest_no_longer_matches_its_hash():
    data = manifest().to_json()
    assert ShardManifest.from_json(data) == manifest()
    data["options"]["settings"]["n_samples"] = 4
    with pytest.raises(ShardError, match="does not match its hash"):
        ShardManifest.from_json(data, "shard-1.json")
