"""Paired changes in the gate: rows carry the leave-one-sample-out values through the card, and a change is a
paired jackknife-t (Newcombe's interval for rates), the paired bootstrap only for partners without them."""

from __future__ import annotations

import dataclasses
import gzip
import json

import pytest
import torch

from bias_suite.gate.changes import paired_change
from bias_suite.gate.judge import Gauge
from bias_suite.gate.rows import ResultRow
from bias_suite.metrics import intervals
from bias_suite.metrics.behaviour import rate_estimate
from bias_suite.metrics.estimate import Estimate
from bias_suite.metrics.registry import HIGHER_IS_WORSE, LOWER_IS_WORSE
from bias_suite.vocabulary import Status


def row(metric: str, estimate: Estimate, model: str = "m") -> ResultRow:
    return Gauge(None, model, 4, {}, {}).row("shapes", 2, None, metric, estimate)


def jackknifed(value: float, spread: float, n: int = 16) -> Estimate:
    values = tuple(value + spread * ((i % 4) - 1.5) / 10 for i in range(n))
    return Estimate(value, value - spread, value + spread, replicates=(value,) * 10, jackknife=values,
                    interval=intervals.JACKKNIFE_T, n_samples=n)


def test_rows_keep_the_jackknife_values_interval_method_and_detectable_change_through_json():
    original = row("mmd2", jackknifed(0.3, 0.05))
    data = original.to_json()
    assert "replicates" not in data and len(data["jackknife"]) == 16  # S values instead of B replicates
    assert data["interval"] == intervals.JACKKNIFE_T
    assert data["detectable"] == pytest.approx(original.detectable) and original.detectable > 0.05
    again = ResultRow.from_json(json.loads(json.dumps(data)))
    assert again.jackknife == original.jackknife and again.interval == original.interval
    assert again.detectable == pytest.approx(original.detectable)


def test_a_change_against_a_card_equals_the_change_against_the_same_run_in_memory():
    candidate, partner = row("mmd2", jackknifed(0.36, 0.05)), row("mmd2", jackknifed(0.3, 0.04), model="p")
    in_memory = paired_change(candidate, partner, (0.05, "registry default"), "reference")
    from_card = paired_change(candidate, ResultRow.from_json(partner.to_json()), (0.05, "registry default"), "baseline")
    assert in_memory.ci == from_card.ci and in_memory.interval == intervals.PAIRED_JACKKNIFE_T
    assert in_memory.detectable is not None


def test_a_lower_is_worse_metric_changes_in_its_worse_direction():
    candidate, partner = row("centroid_cosine", jackknifed(0.7, 0.02)), row("centroid_cosine", jackknifed(0.9, 0.02))
    change = paired_change(candidate, partner, (0.05, "registry default"), "reference")
    assert change.increase == pytest.approx(0.2) and change.status is Status.FAIL


def test_a_rate_change_is_newcombes_paired_interval():
    old = row("text_preference_rate", rate_estimate(torch.tensor([True] * 3 + [False] * 13)))
    new = row("text_preference_rate", rate_estimate(torch.tensor([True] * 12 + [False] * 4)))
    change = paired_change(new, ResultRow.from_json(old.to_json()), (0.1, "registry default"), "blessed")
    assert change.interval == intervals.NEWCOMBE
    assert change.ci == pytest.approx(intervals.newcombe_paired(3, 0, 9, 4)) and change.status is Status.FAIL


def test_an_old_card_without_jackknife_values_is_paired_by_replicate():
    candidate = row("mmd2", jackknifed(0.3, 0.05))
    old = ResultRow("p", "shapes", 2, None, "mmd2", 0.3, (0.25, 0.35), "unchecked", direction=HIGHER_IS_WORSE,
                    replicates=(0.3,) * 10)
    change = paired_change(candidate, old, (0.05, "registry default"), "baseline")
    assert change.interval == intervals.PAIRED_PERCENTILE and change.status is Status.PASS


def test_other_samples_are_not_comparable():
    candidate, partner = row("mmd2", jackknifed(0.3, 0.05, n=16)), row("mmd2", jackknifed(0.3, 0.05, n=12))
    change = paired_change(candidate, partner, (0.05, "registry default"), "baseline")
    assert change.status is Status.INCONCLUSIVE
    assert change.message == "not comparable: 16 samples here, 12 in baseline (other samples)"


def test_a_leave_one_out_value_that_is_undefined_leaves_the_change_without_an_interval_not_a_nan_one():
    """centroid_cosine of a tiny model is undefined without some sample (an estimated squared norm ≤ 0)."""
    holes = jackknifed(0.3, 0.05)
    holes = Estimate(0.3, 0.25, 0.35, jackknife=(float("nan"), *holes.jackknife[1:]),
                     interval=intervals.JACKKNIFE_T, n_samples=16)
    change = paired_change(row("mmd2", holes), row("mmd2", jackknifed(0.3, 0.05), model="p"),
                           (0.05, "registry default"), "baseline")
    assert change.ci is None and change.status is Status.INCONCLUSIVE
    assert "leave-one-sample-out value of this metric is not finite" in change.message
    with_replicates = dataclasses.replace(holes, replicates=(0.3,) * 10)
    fallback = paired_change(row("mmd2", with_replicates), row("mmd2", jackknifed(0.3, 0.05), model="p"),
                             (0.05, "registry default"), "baseline")
    assert fallback.interval == intervals.PAIRED_PERCENTILE and fallback.status is Status.PASS


def test_the_detectable_change_faces_the_rules_bound():
    estimate = Estimate(0.5, 0.45, 0.6, n_samples=16)
    assert row("visual_share.question", estimate).detectable == pytest.approx(estimate.detectable(LOWER_IS_WORSE))
    assert row("mmd2", estimate).detectable == pytest.approx(estimate.detectable(HIGHER_IS_WORSE))


def test_a_blessed_card_keeps_rows_with_jackknife_values(tmp_path):
    from bias_suite.gate.bless import bless
    from tests.gate.test_bless import model, request

    rows = [row("mmd2", jackknifed(0.3 + 0.01 * layer, 0.02), model="/ckpts/v1") for layer in range(2)]
    rows = [ResultRow(**{**r.__dict__, "layer": layer}) for layer, r in enumerate(rows)]
    card = {"results": [r.to_json() for r in rows], "models": [{"spec": "/ckpts/v1"}]}
    bless(request(tmp_path, [model("/ckpts/v1")], rows, family="v", card=card))
    stored = json.loads(gzip.decompress(next(tmp_path.glob("*.card.json.gz")).read_bytes()))
    assert len(stored["results"]) == 2 and all(len(entry["jackknife"]) == 16 for entry in stored["results"])
