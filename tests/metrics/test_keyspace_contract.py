"""Determinism, result shape and bad input of keyspace_metrics."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bias_suite.errors import NonFiniteKeysError
from bias_suite.metrics import KEYSPACE_METRICS, KeySpaceConfig, keyspace_metrics, keyspace_metrics_by_layer
from tests.metrics.keysets import FAST, make_keysets


def test_same_inputs_and_seed_give_bit_identical_results():
    sets = make_keysets(3, heads=2, shift=0.5)
    assert sets.metrics() == sets.metrics()


def test_results_do_not_depend_on_the_number_of_cpu_threads():
    sets = make_keysets(8, heads=7, shift=0.5)  # 7 heads: two chunks of different sizes
    assert sets.metrics(threads=1) == sets.metrics(threads=2) == sets.metrics(threads=5)


def test_a_layer_computed_alone_equals_the_same_layer_computed_with_others():
    first, second = make_keysets(1, heads=5, shift=0.5), make_keysets(2, heads=5, shift=2.0)
    together = keyspace_metrics_by_layer({3: (first.image, first.text), 7: (second.image, second.text)},
                                         first.image_ids, first.text_ids, FAST)
    assert together[3] == keyspace_metrics(first.image, first.image_ids, first.text, first.text_ids, FAST, layer=3)
    assert together[7] == keyspace_metrics(second.image, second.image_ids, second.text, second.text_ids, FAST, layer=7)


def test_a_different_seed_stays_within_the_bootstrap_interval():
    sets = make_keysets(4, n_samples=16, per_sample=(16, 16), shift=1.0, shared_offset=True)
    first = sets.pooled(FAST)
    second = sets.pooled(dataclasses.replace(FAST, seed=1))
    for name in ("jsd", "auroc", "mmd2", "ratio", "centroid_cosine", "norm_ratio"):
        low, high = first[name].ci
        assert low <= second[name].value <= high, name


def test_one_result_per_head_then_the_pooled_mean_over_heads():
    results = make_keysets(5, heads=3, shift=1.0).metrics()
    assert [r.head for r in results] == [0, 1, 2, None]
    pooled_jsd = sum(r.metrics["jsd"].value for r in results[:3]) / 3
    assert results[-1].metrics["jsd"].value == pytest.approx(pooled_jsd)
    assert set(results[-1].metrics) == set(KEYSPACE_METRICS)
    assert "grouped by sample" in results[-1].estimators["jsd"]
    assert "delta method" in results[-1].estimators["frechet"]


def test_every_interval_contains_its_point_estimate():
    for result in make_keysets(6, heads=2, shift=0.8).metrics():
        for name, estimate in result.metrics.items():
            if estimate.ci is not None:
                assert estimate.ci_low <= estimate.value <= estimate.ci_high, name


def test_non_finite_keys_are_refused_naming_the_modality():
    sets = make_keysets(0)
    image = sets.image.clone()
    image[3, 0, 1] = float("nan")
    with pytest.raises(NonFiniteKeysError, match="image keys"):
        keyspace_metrics(image, sets.image_ids, sets.text, sets.text_ids, FAST)


def test_keys_from_fewer_than_three_samples_are_refused():
    keys = torch.randn(10, 4)
    with pytest.raises(ValueError, match="at least 3 samples"):
        keyspace_metrics(keys, ["a"] * 5 + ["b"] * 5, keys, ["a"] * 5 + ["b"] * 5, FAST)


def test_one_sample_id_per_token_is_required():
    sets = make_keysets(0)
    with pytest.raises(ValueError, match="one sample id per token"):
        keyspace_metrics(sets.image, sets.image_ids[:-1], sets.text, sets.text_ids, FAST)


def test_config_refuses_fewer_than_three_folds():
    with pytest.raises(ValueError, match="n_folds"):
        KeySpaceConfig(n_folds=2)
