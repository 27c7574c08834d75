"""The coupling's rank correlation and its cluster bootstrap: exact against scipy, and intervals that cover.

The coupling metrics are registered gateable only because the interval's coverage holds here
(``bias_suite.metrics.registry.COUPLING_COVERAGE_OK``): at the gate's default size (16 samples), on items
whose queries share the item's internal value (clustered), and on skewed outcomes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from bias_suite.metrics import METRICS
from bias_suite.metrics.coupling import rank_coupling, spearman, weighted_spearman
from bias_suite.metrics.registry import COUPLING_COVERAGE_OK, COUPLING_METRICS

COVERAGE_FLOOR = 0.90
REPETITIONS = 200


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 40).astype(float)  # many ties
    y = x + rng.integers(0, 3, 40)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y)[0], abs=1e-12)


def test_a_weighted_resample_equals_the_materialised_resample():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(12), rng.standard_normal(12)
    counts = rng.multinomial(12, np.full(12, 1 / 12), size=5)
    rho = weighted_spearman(torch.tensor(x), torch.tensor(y), torch.tensor(counts, dtype=torch.float64))
    for row, weights in enumerate(counts):
        expected = spearmanr(np.repeat(x, weights), np.repeat(y, weights))[0]
        assert float(rho[row]) == pytest.approx(expected, abs=1e-12)


def test_the_bootstrap_resamples_whole_clusters():
    """Observations of one item are drawn together: every replicate is the coupling of a resample of items."""
    x = [0.0, 0.1, 1.0, 1.1, 2.0, 2.1, 3.0, 3.1]
    y = [0.0, 0.2, 1.0, 0.9, 2.0, 2.2, 3.0, 2.9]
    items = ["a", "a", "b", "b", "c", "c", "d", "d"]
    estimate = rank_coupling(x, y, items, n_bootstrap=50, seed=0)
    assert estimate.value == pytest.approx(spearmanr(x, y)[0])
    assert len(estimate.replicates) == 50
    assert -1 <= estimate.ci_low <= estimate.value <= estimate.ci_high <= 1


def test_a_constant_measure_has_no_coupling_and_says_why():
    estimate = rank_coupling([1.0] * 10, list(range(10)))
    assert math.isnan(estimate.value) and "same for every sample" in estimate.undefined_because


def test_too_few_samples_make_the_coupling_undefined():
    estimate = rank_coupling([1.0, 2.0, float("nan"), 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, float("nan"), 4.0, 6.0])
    assert math.isnan(estimate.value) and "4 samples with both values" in estimate.undefined_because


def clustered(rng: np.random.Generator, n_items: int, per_item: int):
    """Items whose queries share the item's internal value (plus query noise), with skewed outcomes (margins)."""
    internal = rng.standard_normal(n_items)
    item_effect = rng.standard_normal(n_items)
    x = np.repeat(internal, per_item) + 0.3 * rng.standard_normal(n_items * per_item)
    y = np.exp(np.repeat(0.5 * internal + 0.7 * item_effect, per_item) + rng.standard_normal(n_items * per_item))
    return x, y, np.repeat(np.arange(n_items), per_item).astype(str)


def population_value(per_item: int) -> float:
    """The Spearman correlation of the generating process, from one very large draw."""
    x, y, _ = clustered(np.random.default_rng(12345), 200_000 // per_item, per_item)
    return float(spearmanr(x, y)[0])


@pytest.mark.parametrize("n_items, per_item", [(16, 1), (40, 3)], ids=["16-samples", "40-items-x3-queries"])
def test_cluster_bootstrap_interval_covers_the_population_value(n_items, per_item):
    truth = population_value(per_item)
    rng = np.random.default_rng(7)
    hits = 0
    for repetition in range(REPETITIONS):
        x, y, items = clustered(rng, n_items, per_item)
        estimate = rank_coupling(x, y, items, n_bootstrap=200, seed=repetition)
        hits += estimate.ci_low <= truth <= estimate.ci_high
    coverage = hits / REPETITIONS
    assert coverage >= COVERAGE_FLOOR, f"95% interval covered {coverage:.2f} of {REPETITIONS} draws"


def test_ignoring_the_clusters_would_be_overconfident():
    """Why clusters: resampling queries one by one misses the item-level dependence and covers less."""
    truth = population_value(4)
    rng = np.random.default_rng(11)
    hits = {"items": 0, "queries": 0}
    for repetition in range(REPETITIONS):
        x, y, items = clustered(rng, 30, 4)
        for name, clusters in (("items", items), ("queries", None)):
            estimate = rank_coupling(x, y, clusters, n_bootstrap=200, seed=repetition)
            hits[name] += estimate.ci_low <= truth <= estimate.ci_high
    assert hits["queries"] < hits["items"]


def test_coupling_metrics_are_gateable_only_with_the_coverage_measured_here():
    assert COUPLING_COVERAGE_OK
    for name in COUPLING_METRICS:
        spec = METRICS[name]
        assert spec.gateable and spec.direction is None and spec.range == (-1.0, 1.0)
