"""The interval arithmetic: jackknife-t, rate intervals, paired changes and the detectable change."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from bias_suite.metrics import intervals
from bias_suite.metrics.behaviour import rate_estimate
from bias_suite.metrics.estimate import Estimate, jackknife_estimate, mean_estimate, paired_change


def test_jackknife_t_of_a_mean_is_students_t():
    values = torch.tensor([0.3, 0.1, 0.7, 0.4, 0.9, 0.2, 0.5, 0.6], dtype=torch.float64)
    jackknife = (values.sum() - values) / (len(values) - 1)
    assert intervals.jackknife_t(float(values.mean()), jackknife) == pytest.approx(
        intervals.student_t_mean(values))
    half, mean = stats.t.ppf(0.975, 7) * float(values.std()) / math.sqrt(8), float(values.mean())
    assert intervals.student_t_mean(values) == pytest.approx((mean - half, mean + half))  # floats: pytest ≥ 9.2


def test_a_log_scale_interval_stays_positive_and_is_asymmetric():
    estimate = jackknife_estimate(1.0, torch.tensor([0.6, 1.4, 0.9, 1.2, 0.8, 1.1]), (0.0, math.inf), "log")
    assert 0 < estimate.ci_low < 1.0 < estimate.ci_high
    assert estimate.ci_high - 1.0 > 1.0 - estimate.ci_low
    assert estimate.interval == intervals.JACKKNIFE_T and estimate.scale == "log"


def test_clopper_pearson_of_all_or_nothing():
    assert intervals.clopper_pearson(8, 8) == pytest.approx((0.025 ** (1 / 8), 1.0))
    assert intervals.clopper_pearson(0, 16) == pytest.approx((0.0, 1 - 0.025 ** (1 / 16)))
    low, high = intervals.clopper_pearson(5, 16)
    assert low == pytest.approx(stats.beta.ppf(0.025, 5, 12)) and high == pytest.approx(stats.beta.ppf(0.975, 6, 11))


def test_a_rate_estimate_is_clopper_pearson_and_keeps_what_pairing_needs():
    outcomes = torch.tensor([True] * 6 + [False] * 10)
    estimate = rate_estimate(outcomes, n_bootstrap=100, seed=0)
    assert (estimate.value, estimate.ci) == (6 / 16, pytest.approx(intervals.clopper_pearson(6, 16)))
    assert estimate.interval == intervals.CLOPPER_PEARSON and len(estimate.replicates) == 100
    assert torch.equal(intervals.outcomes_from_jackknife(estimate.value, torch.tensor(estimate.jackknife)), outcomes)


def test_paired_change_of_a_rate_is_newcombes():
    old = rate_estimate(torch.tensor([True] * 4 + [False] * 12))
    new = rate_estimate(torch.tensor([True] * 10 + [False] * 6))
    change = paired_change(new, old)
    assert change.value == pytest.approx(6 / 16)
    assert change.ci == pytest.approx(intervals.newcombe_paired(4, 0, 6, 6))
    assert change.interval == intervals.NEWCOMBE


def test_paired_change_of_a_jackknifed_metric_is_a_jackknife_t_of_the_differences():
    a = Estimate(0.5, jackknife=(0.50, 0.52, 0.47, 0.49, 0.53, 0.51), interval=intervals.JACKKNIFE_T)
    b = Estimate(0.4, jackknife=(0.41, 0.40, 0.38, 0.42, 0.39, 0.40), interval=intervals.JACKKNIFE_T)
    change = paired_change(a, b, sign=-1.0)
    differences = -(torch.tensor(a.jackknife, dtype=torch.float64) - torch.tensor(b.jackknife, dtype=torch.float64))
    assert change.value == pytest.approx(-0.1)
    assert change.ci == pytest.approx(intervals.jackknife_t(-0.1, differences))
    assert change.interval == intervals.PAIRED_JACKKNIFE_T


def test_a_run_against_itself_changes_by_exactly_nothing():
    estimate = Estimate(0.3, jackknife=(0.31, 0.29, 0.30, 0.32), interval=intervals.JACKKNIFE_T)
    assert paired_change(estimate, estimate).ci == (0.0, 0.0)


def test_without_jackknife_values_a_change_pairs_the_bootstrap_replicates():
    old = Estimate(0.2, replicates=(0.18, 0.2, 0.22, 0.21))
    new = Estimate(0.3, replicates=(0.29, 0.3, 0.33, 0.31), jackknife=(0.3, 0.31, 0.29, 0.3))
    change = paired_change(new, old)
    assert change.interval == intervals.PAIRED_PERCENTILE and change.ci_low <= 0.1 <= change.ci_high


def test_runs_on_other_samples_are_not_comparable():
    a = Estimate(0.3, jackknife=(0.3,) * 8)
    b = Estimate(0.3, jackknife=(0.3,) * 10)
    assert paired_change(a, b).undefined_because.startswith("not comparable: 8 samples here, 10 in")


def test_bootstrap_t_needs_a_thousand_replicates_else_students_t():
    values = torch.linspace(0.1, 0.9, 12, dtype=torch.float64)
    from bias_suite.metrics.estimate import bootstrap_weights

    assert mean_estimate(values, bootstrap_weights(12, 1000, 0)).interval == intervals.BOOTSTRAP_T
    few = mean_estimate(values, bootstrap_weights(12, 200, 0))
    assert few.interval == intervals.STUDENT_T and few.ci == pytest.approx(intervals.student_t_mean(values))


@pytest.mark.parametrize(("n_samples", "factor"), [(8, 1.38), (16, 1.41), (10_000, 1.43)])
def test_the_detectable_change_is_about_1_4_half_widths_facing_the_bound(n_samples, factor):
    estimate = Estimate(0.5, 0.4, 0.7, n_samples=n_samples)
    assert estimate.detectable("higher_is_worse") == pytest.approx(factor * 0.1, abs=0.002)  # lower half
    assert estimate.detectable("lower_is_worse") == pytest.approx(factor * 0.2, abs=0.004)  # upper half
    assert estimate.detectable(None) == estimate.detectable("lower_is_worse")
    assert Estimate(0.5).detectable() is None
