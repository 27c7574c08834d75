"""Threshold files: schema errors name file and key; rules that could never fail or cover nothing are
refused; which file gates a model; what a bound depends on."""

from __future__ import annotations

import pytest

from bias_suite.errors import ThresholdError
from bias_suite.gate.rows import Bound
from bias_suite.gate.thresholds import MAX_FILE_BYTES, PACKAGED_DEFAULT, load_threshold_file, select_threshold_file
from bias_suite.metrics.registry import HIGHER_IS_WORSE, LOWER_IS_WORSE

HEADER = ("version: 3\nprovenance: {date: '2026-11-24', reason: first}\n"
          "environment: {torch: '2.0', transformers: '5.0', attn_implementation: sdpa}\n")
RULE = "rules:\n  - {metric: mmd2, max: 0.5}\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_baseline_with_tolerance_becomes_a_bound_in_the_metric_direction(tmp_path):
    path = write(tmp_path, "m.yaml", HEADER + "rules:\n  - {metric: mmd2, baseline: 0.4, tolerance: 0.1}\n"
                                              "  - {metric: visual_share.last, baseline: 0.3, tolerance: 0.05}\n")
    higher, lower = load_threshold_file(path).rules
    assert higher.bound == Bound(pytest.approx(0.5), HIGHER_IS_WORSE)
    assert lower.bound == Bound(pytest.approx(0.25), LOWER_IS_WORSE)


@pytest.mark.parametrize("rules, message", [
    ("  - {metric: mmd2}\n", r"rules\[0\]: give exactly one of max, min, baseline"),
    ("  - {metric: mmd2, baseline: 0.4}\n", r"rules\[0\].tolerance: a baseline needs a tolerance"),
    ("  - {metric: mmd2, max: high}\n", r"rules\[0\].max: expected a finite number, got 'high'"),
    ("  - {metric: mmd2, max: 1, layers: middle_half}\n", r"rules\[0\].layers: unknown layer selector"),
    ("  - {metric: mmd2, max: 1, benchmarks: shapes}\n", r"rules\[0\].benchmarks: expected 'all' or a list"),
    ("  - {metric: mmd2, max: 1, benchmarks: [photoz]}\n", r"rules\[0\].benchmarks: 'photoz' is neither a built-in"),
    ("  - {metric: jsd, max: 1.0}\n", r"rules\[0\].max: jsd lies in \[0, 1\], so a bound ≤ 1 can never fail"),
    ("  - {metric: visual_share.question, min: 0}\n", r"rules\[0\].min: .*can never fail"),
    ("  - {metric: frechet, max: 3}\n",
     r"rules\[0\].metric: frechet is reported, not gated: its expected value depends"),
    ("  - {metric: intra_image, max: 3}\n",
     r"rules\[0\].metric: intra_image is reported, not gated: it has no direction"),
])
def test_schema_mistakes_name_the_file_and_the_key(tmp_path, rules, message):
    path = write(tmp_path, "broken.yaml", HEADER + "rules:\n" + rules)
    with pytest.raises(ThresholdError, match="broken.yaml: " + message):
        load_threshold_file(path)


def test_a_file_without_rules_is_refused(tmp_path):
    with pytest.raises(ThresholdError, match=r"empty.yaml: rules: the list is empty"):
        load_threshold_file(write(tmp_path, "empty.yaml", HEADER + "rules: []\n"))


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    path = write(tmp_path, "twice.yaml", HEADER + "version: 4\n" + RULE)
    with pytest.raises(ThresholdError,
                       match=r"twice.yaml: not valid YAML: .*duplicate key 'version' \(first given on line 1\)"):
        load_threshold_file(path)


def test_unsafe_yaml_tags_are_refused(tmp_path):
    path = write(tmp_path, "evil.yaml", HEADER + "family: !!python/object/apply:os.system ['true']\n" + RULE)
    with pytest.raises(ThresholdError, match="not valid YAML"):
        load_threshold_file(path)


def test_rules_that_name_no_layer_of_the_model_are_listed(tmp_path):
    threshold = load_threshold_file(write(tmp_path, "deep.yaml",
                                          HEADER + "rules:\n  - {metric: mmd2, layers: '40', max: 0.5}\n"
                                                   "  - {metric: mmd2, layers: '0-2', max: 0.5}\n"))
    assert threshold.unreachable_rules(4) == [
        "deep.yaml rules[0] (mmd2, layers '40') names no layer of a model with 4 decoder layers (0–3)"]
    assert threshold.unreachable_rules(64) == []


def test_files_match_by_name_pattern_before_model_type_then_default(tmp_path):
    write(tmp_path, "default.yaml", HEADER + RULE)
    write(tmp_path, "llava.yaml", HEADER + "match: {model_type: [llava]}\n" + RULE)
    write(tmp_path, "tiny.yaml", HEADER + "match: {name: ['tiny-*']}\n" + RULE)
    assert select_threshold_file(tmp_path, "llava", ["tiny-llava"]).file.path.name == "tiny.yaml"
    assert select_threshold_file(tmp_path, "llava", ["llava-hf/llava-1.5-7b-hf"]).file.path.name == "llava.yaml"
    chosen = select_threshold_file(tmp_path, "qwen2_5_vl", ["Qwen/Qwen2.5-VL-7B"])
    assert (chosen.file.path.name, chosen.matched_by, chosen.baselined) == ("default.yaml", "default", False)


def test_a_name_pattern_with_a_model_type_needs_both(tmp_path):
    write(tmp_path, "ours.yaml", HEADER + "match: {name: ['*ours*'], model_type: [llava]}\n" + RULE)
    assert select_threshold_file(tmp_path, "llava", ["ckpt-ours-v2"]).matched_by == "name"
    assert select_threshold_file(tmp_path, "qwen2_vl", ["ckpt-ours-v2"]).matched_by == "packaged default"


def test_without_a_matching_file_or_a_default_the_package_defaults_gate_and_say_so(tmp_path):
    chosen = select_threshold_file(tmp_path / "absent", "llava", ["x"])
    assert chosen.matched_by == "packaged default" and chosen.file.path == PACKAGED_DEFAULT
    assert not chosen.baselined


def test_two_files_matching_the_same_model_is_an_error(tmp_path):
    write(tmp_path, "a.yaml", HEADER + "match: {model_type: [llava]}\n" + RULE)
    write(tmp_path, "b.yaml", HEADER + "match: {model_type: [llava]}\n" + RULE)
    with pytest.raises(ThresholdError, match=r"a\.yaml, .*b\.yaml all match"):
        select_threshold_file(tmp_path, "llava", ["x"])


def test_environment_drift_is_listed_per_component(tmp_path):
    threshold = load_threshold_file(write(tmp_path, "m.yaml", HEADER + RULE))
    drift = threshold.drift({"torch": "2.14.1", "transformers": "5.0", "attn_implementation": "sdpa"})
    assert drift == ["torch: thresholds made with 2.0, running 2.14.1"]


RECORDED = HEADER + ("settings: {n_samples: 16, max_tokens_per_modality: 64, seed: 0}\n"
                     "benchmarks: {shapes: {n_samples: 16, hash: aaaa}}\n"
                     "rules:\n  - {metric: jsd, max: 0.9}\n  - {metric: mmd2, max: 0.5}\n")


def test_a_run_with_other_settings_is_not_comparable_naming_the_setting(tmp_path):
    threshold = load_threshold_file(write(tmp_path, "m.yaml", RECORDED))
    jsd, mmd2 = threshold.rules
    other = {"n_samples": 32, "max_tokens_per_modality": 64, "seed": 0}
    for rule in (jsd, mmd2):  # bounds measured at 16 samples: a run at 32 cannot be compared with them
        assert "not comparable: n_samples differs (the bounds of m.yaml were measured with 16, this run has 32" in \
            threshold.settings_problem(rule, other, "shapes", None)
    other_seed = {"n_samples": 16, "max_tokens_per_modality": 64, "seed": 1}
    assert "seed differs" in threshold.settings_problem(jsd, other_seed, "shapes", None)  # size-dependent
    assert threshold.settings_problem(mmd2, other_seed, "shapes", None) is None  # mmd2 is a population quantity


def test_a_bound_refuses_a_benchmark_whose_content_changed(tmp_path):
    threshold = load_threshold_file(write(tmp_path, "m.yaml", RECORDED))
    same = {"n_samples": 16, "max_tokens_per_modality": 64, "seed": 0}
    assert "other content than m.yaml rules[1] was measured on" in threshold.settings_problem(
        threshold.rules[1], same, "shapes", "bbbb")
    assert threshold.settings_problem(threshold.rules[1], same, "shapes", "aaaa") is None


def test_shipped_threshold_files_load(tmp_path):
    from pathlib import Path

    for path in [PACKAGED_DEFAULT, *sorted((Path(__file__).parents[2] / "thresholds").glob("*.yaml"))]:
        assert load_threshold_file(path).rules, path


def test_history_is_validated_like_the_rest_of_the_file(tmp_path):
    hostile = HEADER + RULE + ("history:\n  - {version: 99, rules: not a list, evil: !!binary aGk=}\n  - 42\n")
    with pytest.raises(ThresholdError, match=r"m\.yaml: history\[0\]\.evil: unknown key"):
        load_threshold_file(write(tmp_path, "m.yaml", hostile))
    with pytest.raises(ThresholdError, match=r"history\[0\]\.version: expected an integer from 1 to 2"):
        load_threshold_file(write(tmp_path, "m.yaml", HEADER + RULE + "history:\n  - {version: 99, rules: []}\n"))
    with pytest.raises(ThresholdError, match=r"history\[0\]: expected a mapping \(an earlier version\), got int"):
        load_threshold_file(write(tmp_path, "m.yaml", HEADER + RULE + "history: [42]\n"))
    with pytest.raises(ThresholdError, match=r"history\[0\]\.rules: expected a list of rules"):
        load_threshold_file(write(tmp_path, "m.yaml",
                                  HEADER + RULE + "history:\n  - {version: 1, rules: not a list}\n"))


def test_a_threshold_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path):
    path = write(tmp_path, "huge.yaml", HEADER + "rules:\n" + "  - {metric: mmd2, max: 1.5}\n" * 200_000)
    assert path.stat().st_size > MAX_FILE_BYTES
    with pytest.raises(ThresholdError, match=r"huge\.yaml: .* MiB, over the 4 MiB a threshold file may hold"):
        load_threshold_file(path)
