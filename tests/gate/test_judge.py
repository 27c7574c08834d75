"""The gate's status rules: intervals against bounds, and what a row says about its bound."""

from __future__ import annotations

import math

import pytest
import torch

from bias_suite.gate.judge import Gauge, verdict
from bias_suite.gate.rows import Bound, ResultRow, judge, worst
from bias_suite.gate.thresholds import PACKAGED_DEFAULT, load_threshold_file
from bias_suite.metrics import intervals
from bias_suite.metrics.behaviour import rate_estimate
from bias_suite.metrics.estimate import Estimate
from bias_suite.metrics.registry import HIGHER_IS_WORSE, LOWER_IS_WORSE


def test_gate_fails_when_the_whole_interval_crosses_the_bound():
    assert judge(0.9, (0.85, 0.95), Bound(0.8, HIGHER_IS_WORSE)) == "fail"
    assert judge(0.1, (0.05, 0.15), Bound(0.2, LOWER_IS_WORSE)) == "fail"


def test_gate_warns_when_only_the_point_estimate_crosses_the_bound():
    assert judge(0.82, (0.75, 0.9), Bound(0.8, HIGHER_IS_WORSE)) == "warn"
    assert judge(0.18, (0.1, 0.25), Bound(0.2, LOWER_IS_WORSE)) == "warn"


def test_gate_passes_inside_the_bound_and_marks_ungated_metrics_unchecked():
    assert judge(0.5, (0.4, 0.6), Bound(0.8, HIGHER_IS_WORSE)) == "pass"
    assert judge(0.5, (0.4, 0.6), None) == "unchecked"


@pytest.mark.parametrize("value, ci", [(float("nan"), (0.1, 0.2)), (0.5, (float("nan"), 0.6)), (float("inf"), None)])
def test_a_gated_metric_that_could_not_be_computed_is_an_error_never_a_pass(value, ci):
    assert judge(value, ci, Bound(0.8, HIGHER_IS_WORSE)) == "error"


def test_an_undefined_metric_that_no_rule_gates_is_unchecked_not_an_error():
    """e.g. ``ratio`` of a head where neither modality varies between samples: reported as undefined."""
    assert judge(float("nan"), None, None) == "unchecked"


def test_the_worst_status_decides_and_error_outranks_fail():
    assert worst(["pass", "warn", "unchecked"]) == "warn"
    assert worst(["fail", "error", "pass"]) == "error"
    assert worst([]) == "unchecked"


@pytest.mark.parametrize("direction, ci, expected", [
    (HIGHER_IS_WORSE, (0.2, 0.4), 0.3),   # bound 0.5, lower end 0.2: 0.3 inside
    (HIGHER_IS_WORSE, (0.6, 0.7), -0.1),  # beyond by 0.1
    (LOWER_IS_WORSE, (0.2, 0.4), -0.1),   # bound 0.5, upper end 0.4: 0.1 beyond (lower is worse)
])
def test_margin_is_the_distance_of_the_interval_end_nearest_the_bound(direction, ci, expected):
    row = ResultRow("m", "b", 0, None, "mmd2", sum(ci) / 2, ci, "pass", bound=0.5, direction=direction,
                    rule="f rules[0]")
    assert row.margin == pytest.approx(expected)


def test_a_bound_that_no_value_in_the_metric_range_can_cross_cannot_fail():
    assert not Bound(1.0, HIGHER_IS_WORSE).can_fail((0.0, 1.0))
    assert not Bound(0.0, LOWER_IS_WORSE).can_fail((0.0, 1.0))
    assert Bound(0.999, HIGHER_IS_WORSE).can_fail((0.0, 1.0))
    assert Bound(1e6, HIGHER_IS_WORSE).can_fail((0.0, math.inf))


def test_rows_survive_the_trip_through_json_with_their_replicates():
    row = ResultRow("m", "b", 3, None, "mmd2", 0.25, (0.2, 0.3), "warn", bound=0.24, direction=HIGHER_IS_WORSE,
                    rule="x.yaml rules[1]", replicates=(0.21, float("nan"), 0.27))
    again = ResultRow.from_json(row.to_json())
    assert again == row
    assert again.replicates[0] == 0.21 and math.isnan(again.replicates[1])


def test_the_verdict_message_names_every_problem_with_its_rule():
    rows = [ResultRow("m", "shapes", 2, None, "mmd2", 0.9, (0.85, 0.95), "fail", bound=0.5,
                      direction=HIGHER_IS_WORSE, rule="f.yaml rules[0]"),
            ResultRow("m", "shapes", 2, None, "jsd", 0.5, (0.4, 0.6), "pass", bound=0.9,
                      direction=HIGHER_IS_WORSE, rule="f.yaml rules[1]")]
    status, message = verdict(rows)
    assert status == "fail"
    assert message == "FAIL: m shapes L2 mmd2 = 0.9 [0.85, 0.95] f.yaml rules[0]: ≤ 0.5"


def test_a_metric_that_could_not_be_computed_is_an_error_that_says_why():
    threshold = load_threshold_file(PACKAGED_DEFAULT)
    gauge = Gauge(threshold, "tiny-gemma3", 4, {}, {})
    undefined = Estimate(float("nan"), float("nan"), float("nan"),
                         undefined_because="no query row of any sample can see an image key in this layer")
    row = gauge.row("shapes", 0, None, "logit_gap.question", undefined)
    assert row.status == "error"
    assert row.message == ("logit_gap.question could not be computed: no query row of any sample can see an image "
                           "key in this layer")


def test_a_qualified_rate_with_too_few_items_is_an_error_under_a_rule_and_says_how_many(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - {metric: prior_adherence_rate, max: 0.9}\n")
    undefined = Estimate(float("nan"), float("nan"), float("nan"),
                         undefined_because="6 of 16 items qualified (perception passes); at least 10 are needed")
    gated = Gauge(load_threshold_file(rules), "m", 4, {}, {}).row("language-prior", None, None,
                                                                  "prior_adherence_rate", undefined)
    ungated = Gauge(None, "m", 4, {}, {}).row("language-prior", None, None, "prior_adherence_rate", undefined)
    assert gated.status == "error" and "6 of 16 items qualified" in gated.message
    assert ungated.status == "unchecked" and "6 of 16 items qualified" in ungated.message


def test_a_rate_bound_that_no_outcome_of_this_many_items_can_cross_is_inconclusive_and_says_how_many_are_needed(
        tmp_path):
    """16 of 16 has an exact interval reaching down to 0.79: ``≤ 0.95`` would pass every model on 16 items."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - {metric: text_preference_rate, max: 0.95}\n"
                     "  - {metric: text_preference_rate, benchmarks: [conflict-levels], max: 0.75}\n")
    gauge = Gauge(load_threshold_file(rules), "m", 4, {}, {})
    all_text = rate_estimate(torch.ones(16, dtype=torch.bool))
    unfailable = gauge.row("conflict", None, None, "text_preference_rate", all_text)
    assert unfailable.status == "inconclusive"
    assert unfailable.message == ("a check that cannot fail: ≤ 0.95 on 16 items, since even 16 of 16 has a 95% "
                                  "interval reaching 0.794; it needs at least 72 items: a larger benchmark, or a "
                                  "bound the rate can cross")
    assert gauge.row("conflict-levels", None, None, "text_preference_rate", all_text).status == "fail"
    enough = rate_estimate(torch.tensor([True] * 70 + [False] * 2))
    assert gauge.row("conflict", None, None, "text_preference_rate", enough).status == "warn"
    assert intervals.rate_bound_reachable(0.05, False, 16) == (False, pytest.approx(0.206, abs=1e-3), 72)


def test_a_generic_sanity_bound_that_this_many_items_cannot_test_is_not_applied_and_says_so():
    """The packaged ``text_preference_rate ≤ 0.75`` can fail from 13 items on; on 8 it is shown as not applied
    (the row stays unchecked, never a pass), and a run's verdict is not made INCONCLUSIVE by a generic rule."""
    sanity = load_threshold_file(PACKAGED_DEFAULT)
    gauge = Gauge(None, "m", 4, {}, {}, sanity=sanity)
    eight = gauge.row("conflict", None, None, "text_preference_rate", rate_estimate(torch.ones(8, dtype=torch.bool)))
    assert eight.status == "unchecked" and eight.rule is None
    assert eight.message.startswith(
        "packaged default.yaml rules[2] not applied: a check that cannot fail: ≤ 0.75 on 8 items")
    sixteen = gauge.row("conflict", None, None, "text_preference_rate",
                        rate_estimate(torch.ones(16, dtype=torch.bool)))
    assert sixteen.status == "fail" and sixteen.rule == "packaged default.yaml rules[2]"
