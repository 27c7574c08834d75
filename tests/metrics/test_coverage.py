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
