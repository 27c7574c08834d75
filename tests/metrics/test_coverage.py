"""Every gateable metric's 95 % interval covers its population value in at least 90 % of seeded synthetic
datasets at 16 samples (hierarchical populations: samples differ among themselves, tokens within a sample;
a weak and a strong shift), and the rate intervals do so exactly, for every rate."""

from __future__ import annotations

import pytest

from bias_suite.metrics import METRICS
from bias_suite.metrics.intervals import clopper_pearson, wilson
from bias_suite.tools import bench_coverage
from bias_suite.tools.populations import binomial_coverage

GATEABLE = {name for name, spec in METRICS.items() if spec.family in ("keyspace", "attention") and spec.gateable}


def test_the_coverage_study_covers_every_gateable_keyspace_and_attention_metric():
    assert set(bench_coverage.KEYSPACE_GATED) | set(bench_coverage.ATTENTION_GATED) == GATEABLE


@pytest.mark.slow
@pytest.mark.parametrize("shift", [2.0, 5.0], ids=["weak-2sigma", "strong-5sigma"])
def test_keyspace_intervals_cover_at_16_samples(shift, monkeypatch):
    monkeypatch.setattr(bench_coverage, "SHIFTS", (shift,))
    monkeypatch.setattr(bench_coverage, "SAMPLE_COUNTS", (16,))
    (cell,) = bench_coverage.keyspace_coverage(n_datasets=80, seed=7).values()
    assert all(coverage >= 0.90 for coverage in cell.values()), cell


@pytest.mark.slow
def test_attention_intervals_cover_at_16_samples(monkeypatch):
    monkeypatch.setattr(bench_coverage, "SAMPLE_COUNTS", (16,))
    cells = bench_coverage.attention_coverage(n_datasets=300, seed=7)
    for cell in cells.values():
        assert all(coverage >= 0.90 for coverage in cell.values()), cells


@pytest.mark.parametrize("n", [8, 16])
def test_clopper_pearson_covers_every_rate_and_wilson_does_not(n):
    assert binomial_coverage(n, clopper_pearson) >= 0.95
    assert binomial_coverage(n, wilson) < 0.90  # Wilson dips to 0.85 near 0 and 1: not a gate's interval


@pytest.mark.parametrize("n", [8, 16])
def test_newcombe_paired_change_of_a_rate_covers(n):
    assert bench_coverage.paired_rate_coverage(n) >= 0.90


@pytest.mark.parametrize("n_pairs", [8, 16])
def test_paired_image_accuracies_cover_whatever_the_rate_and_the_correlation_within_a_pair(n_pairs):
    """member_accuracy (two correlated answers per pair) and pairing_gap (½ × pairs with one image right):
    Student's t covered 0.41 at 8 pairs near a rate of 0.95."""
    import numpy as np
    import torch

    from bias_suite.metrics.suites import _member_accuracy, _rate, _scaled

    rng = np.random.default_rng(n_pairs)
    for rate in (0.05, 0.5, 0.95):
        for correlation in (0.0, 0.7):
            both = rate * rate + correlation * rate * (1 - rate)
            cells_p = [both, rate - both, rate - both, 1 - 2 * rate + both]  # both right, a only, b only, neither
            hits = {"member_accuracy": 0, "pairing_gap": 0}
            for _ in range(300):
                cells = rng.choice(4, size=n_pairs, p=cells_p)
                a, b = np.isin(cells, [0, 1]), np.isin(cells, [0, 2])
                member = _member_accuracy(torch.tensor((a.astype(float) + b) / 2), 20, 0)
                gap = _scaled(_rate(list(a != b), 20, 0), 0.5, "")
                hits["member_accuracy"] += member.ci_low <= rate <= member.ci_high
                hits["pairing_gap"] += gap.ci_low <= rate - both <= gap.ci_high
            assert min(hits.values()) / 300 >= 0.90, (rate, correlation, hits)
