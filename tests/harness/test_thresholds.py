"""Threshold files: schema errors name file and key; matching; the gate's status rules; updates."""

from __future__ import annotations

import pytest
import yaml

from bias_suite.gate import HIGHER_IS_WORSE, LOWER_IS_WORSE, Bound, judge
from bias_suite.thresholds import (
    Measured,
    ThresholdError,
    load_threshold_file,
    next_version,
    select_threshold_file,
)

HEADER = "version: 3\nprovenance: {date: '2026-11-24', reason: first}\nenvironment: {torch: '2.0', transformers: '5.0', attn_implementation: sdpa}\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_gate_fails_when_the_whole_interval_crosses_the_bound():
    assert judge(0.9, (0.85, 0.95), Bound(0.8, HIGHER_IS_WORSE)) == "fail"
    assert judge(0.1, (0.05, 0.15), Bound(0.2, LOWER_IS_WORSE)) == "fail"


def test_gate_warns_when_only_the_point_estimate_crosses_the_bound():
    assert judge(0.82, (0.75, 0.9), Bound(0.8, HIGHER_IS_WORSE)) == "warn"


def test_gate_passes_inside_the_bound_and_marks_ungated_metrics_unchecked():
    assert judge(0.5, (0.4, 0.6), Bound(0.8, HIGHER_IS_WORSE)) == "pass"
    assert judge(0.5, (0.4, 0.6), None) == "unchecked"


@pytest.mark.parametrize("value, ci", [(float("nan"), (0.1, 0.2)), (0.5, (float("nan"), 0.6)), (float("inf"), None)])
def test_a_gated_metric_that_could_not_be_computed_is_an_error_never_a_pass(value, ci):
    assert judge(value, ci, Bound(0.8, HIGHER_IS_WORSE)) == "error"


def test_an_undefined_metric_that_no_rule_gates_is_unchecked_not_an_error():
    """e.g. ``ratio`` of a head where neither modality varies between samples: reported as undefined."""
    assert judge(float("nan"), None, None) == "unchecked"


def test_baseline_with_tolerance_becomes_a_bound_in_the_metric_direction(tmp_path):
    path = write(tmp_path, "m.yaml", HEADER + "rules:\n  - {metric: mmd2, baseline: 0.4, tolerance: 0.1}\n"
                                              "  - {metric: visual_share.last, baseline: 0.3, tolerance: 0.05}\n")
    higher, lower = load_threshold_file(path).rules
    assert higher.bound == Bound(pytest.approx(0.5), HIGHER_IS_WORSE)
    assert lower.bound == Bound(pytest.approx(0.25), LOWER_IS_WORSE)


@pytest.mark.parametrize("rules, message", [
    ("  - {metric: mmd2}\n", r"rules\[0\]: give exactly one of max, min or baseline"),
    ("  - {metric: mmd2, baseline: 0.4}\n", r"rules\[0\].tolerance: a baseline needs a tolerance"),
    ("  - {metric: mmd2, max: high}\n", r"rules\[0\].max: expected a finite number, got 'high'"),
    ("  - {metric: mmd2, max: 1, layers: middle_half}\n", r"rules\[0\].layers: unknown layer selector"),
    ("  - {metric: mmd2, max: 1, benchmarks: shapes}\n", r"rules\[0\].benchmarks: expected 'all' or a list"),
])
def test_schema_mistakes_name_the_file_and_the_key(tmp_path, rules, message):
    path = write(tmp_path, "broken.yaml", HEADER + "rules:\n" + rules)
    with pytest.raises(ThresholdError, match="broken.yaml: " + message):
        load_threshold_file(path)


def test_files_match_by_name_pattern_before_model_type_then_default(tmp_path):
    write(tmp_path, "default.yaml", HEADER + "rules: []\n")
    write(tmp_path, "llava.yaml", HEADER + "match: {model_type: [llava]}\nrules: []\n")
    write(tmp_path, "tiny.yaml", HEADER + "match: {name: ['tiny-*']}\nrules: []\n")
    assert select_threshold_file(tmp_path, "llava", ["tiny-llava"]).path.name == "tiny.yaml"
    assert select_threshold_file(tmp_path, "llava", ["llava-hf/llava-1.5-7b-hf"]).path.name == "llava.yaml"
    assert select_threshold_file(tmp_path, "qwen2_5_vl", ["Qwen/Qwen2.5-VL-7B"]).path.name == "default.yaml"


def test_two_files_matching_the_same_model_is_an_error(tmp_path):
    write(tmp_path, "a.yaml", HEADER + "match: {model_type: [llava]}\nrules: []\n")
    write(tmp_path, "b.yaml", HEADER + "match: {model_type: [llava]}\nrules: []\n")
    with pytest.raises(ThresholdError, match="a.yaml, .*b.yaml all match"):
        select_threshold_file(tmp_path, "llava", ["x"])


def test_environment_drift_is_listed_per_component(tmp_path):
    threshold = load_threshold_file(write(tmp_path, "m.yaml", HEADER + "rules: []\n"))
    drift = threshold.drift({"torch": "2.14.1", "transformers": "5.0", "attn_implementation": "sdpa"})
    assert drift == ["torch: thresholds made with 2.0, running 2.14.1"]


def test_next_version_refuses_without_a_reason(tmp_path):
    threshold = load_threshold_file(write(tmp_path, "m.yaml", HEADER + "rules: []\n"))
    with pytest.raises(ThresholdError, match="--reason"):
        next_version(threshold, {}, "  ", {}, {})


def test_next_version_moves_bounds_to_the_worst_measurement_and_keeps_history(tmp_path):
    path = write(tmp_path, "m.yaml", HEADER + "rules:\n  - {metric: mmd2, max: 0.3}\n"
                                              "  - {metric: logit_gap.last, baseline: 0.1, tolerance: 0.05}\n")
    threshold = load_threshold_file(path)
    measured = {0: [Measured(0.35, (0.33, 0.38)), Measured(0.2, (0.1, 0.25))], 1: [Measured(0.12, (0.1, 0.14))]}
    target, document, changes = next_version(threshold, measured, "new checkpoint", {"torch": "2.14.1"},
                                             {"suite_version": "0.1.0", "model_revision": "abc"})
    assert target == path
    assert document["version"] == 4
    assert document["rules"][0]["max"] == 0.38 and document["rules"][1]["baseline"] == 0.12
    assert document["history"][0]["version"] == 3 and document["history"][0]["rules"][0]["max"] == 0.3
    assert document["provenance"]["reason"] == "new checkpoint" and document["provenance"]["model_revision"] == "abc"
    assert len(changes) == 2 and "max 0.3 → 0.38" in changes[0]
    assert yaml.safe_load(yaml.safe_dump(document)) == document
