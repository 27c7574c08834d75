"""The pytest plugin end to end: verdicts, report files, ids, determinism, bad input."""

from __future__ import annotations

import json

import pytest

SEPARATION_RULES = """\
version: 1
family: test
environment: {}
provenance: {date: "2026-11-24", suite_version: 0.1.0, model_revision: null, reason: test}
rules:
  - metric: mmd2
    layers: all
    max: 0.3
history: []
"""


@pytest.fixture
def threshold_file(pytester):
    return pytester.makefile(".yaml", separation=SEPARATION_RULES)


def results_by_layer(path, metric):
    rows = json.loads(path.read_text())["results"]
    return {row["layer"]: row for row in rows if row["metric"] == metric and row["head"] is None}


def test_gate_fails_far_visual_cluster_and_passes_in_distribution_model(gate, pytester, separated_checkpoints,
                                                                        threshold_file):
    planted = gate(f"--model={separated_checkpoints['planted']}", f"--thresholds={threshold_file}",
                   "--bias-report=planted.json", "-k", "key_separation")
    control = gate(f"--model={separated_checkpoints['control']}", f"--thresholds={threshold_file}",
                   "--bias-report=control.json", "-k", "key_separation")
    assert planted.ret == pytest.ExitCode.TESTS_FAILED
    planted.stdout.fnmatch_lines(["FAIL*mmd2*separation.yaml rules[[]0[]]*"])
    assert control.ret == pytest.ExitCode.OK
    far, near = (results_by_layer(pytester.path / "planted.json", "mmd2"),
                 results_by_layer(pytester.path / "control.json", "mmd2"))
    assert sorted(far) == sorted(near) == [0, 1, 2, 3]
    for layer in far:
        assert far[layer]["value"] > near[layer]["value"], layer
        assert far[layer]["status"] == "fail" and near[layer]["status"] == "pass"


def test_report_files_follow_the_documented_shape(gate, pytester):
    result = gate("--model=tiny-llava", "--layers=0,last_third", "--bias-report=card.json",
                  "--bias-report=card.md", "--bias-report=out/card.html", "--allow-unbaselined")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*bias report card*", "NO BASELINE · tiny-llava*packaged default.yaml*",
                                 "*what to do: bless the checkpoint*"])
    card = json.loads((pytester.path / "card.json").read_text())
    assert set(card) == {"schema", "suite_version", "created", "environment", "settings", "thresholds", "models",
                         "benchmarks", "verdicts", "verdict_details", "results", "changes", "coupling", "samples",
                         "problems", "updates", "drift"}
    assert card["schema"] == 3 and card["verdicts"] == {"tiny-llava": "NO BASELINE"}
    assert set(card["environment"]) == {"python", "torch", "transformers", "device", "dtype", "attn_implementation"}
    assert card["models"][0]["spec"] == "tiny-llava" and card["models"][0]["model_type"] == "llava"
    assert card["thresholds"][0]["matched_by"] == "packaged default" and not card["thresholds"][0]["baselined"]
    assert card["benchmarks"][0]["name"] == "shapes" and card["benchmarks"][0]["n_samples"] == 8
    assert {key: card["settings"][key] for key in ("n_samples", "max_tokens_per_modality", "seed", "dtype")} == {
        "n_samples": 8, "max_tokens_per_modality": 64, "seed": 0, "dtype": "float32"}
    assert {"processor", "torch", "transformers", "attn_implementation", "n_bootstrap"} <= set(card["settings"])
    assert {row["status"] for row in card["results"]} <= {"pass", "warn", "inconclusive", "fail", "error", "unchecked"}
    assert {row["layer"] for row in card["results"]} == {0, 3}
    assert any(row["head"] is None for row in card["results"]) and any(row["head"] == 0 for row in card["results"])
    gated = [row for row in card["results"] if row["rule"]]
    assert gated and all(row["bound"] is not None and row["margin"] is not None for row in gated)
    assert all(row.get("jackknife") or row.get("replicates") for row in card["results"]
               if row["head"] is None and row["value"] is not None and row["metric"] != "mmd2_pvalue")
    assert "| tiny-llava" in (pytester.path / "card.md").read_text()
    assert "NO BASELINE" in (pytester.path / "card.md").read_text().splitlines()[2]  # the verdict comes first
    html = (pytester.path / "out" / "card.html").read_text()
    assert html.count("<svg") >= 5 and "<script" not in html and "http" not in html.split("xmlns")[0]


def test_item_ids_name_model_benchmark_and_layer(gate):
    result = gate("--model=tiny-llava", "--layers=2", "--collect-only")
    result.stdout.fnmatch_lines(["*bias_gate::key_separation[[]tiny-llava-shapes-L2[]]*",
                                 "*bias_gate::attention_share[[]tiny-llava-shapes-L2[]]*"])


def test_a_model_given_twice_is_measured_once(gate):
    result = gate("--model=tiny-llava", "--model=tiny-llava", "--layers=2", "--collect-only")
    assert result.stdout.str().count("key_separation[tiny-llava-shapes-L2]") == 1


def test_same_seed_gives_identical_results_across_runs_and_workers(gate, pytester):
    args = ("--model=tiny-llava", "--layers=1,3", "--benchmark=conflict", "--allow-unbaselined")
    first = gate(*args, "--bias-report=first.json", subprocess=True)
    second = gate(*args, "--bias-report=second.json", subprocess=True)
    parallel = gate(*args, "-n", "2", "--bias-report=parallel.json", subprocess=True)
    assert first.ret == second.ret == parallel.ret == pytest.ExitCode.OK
    results = [json.loads((pytester.path / name).read_text())["results"]
               for name in ("first.json", "second.json", "parallel.json")]
    assert results[0] == results[1] == results[2]
    assert len(results[0]) > 100


@pytest.mark.parametrize("content, message", [
    ("version: 1\nrules: [\n", "*not valid YAML*"),
    ("version: 1\nrules:\n  - metric: jsd\n    maximum: 0.5\n", "*rules[[]0[]].maximum: unknown key*"),
    ("version: 1\nrules:\n  - metric: jsdd\n    max: 0.5\n", "*rules[[]0[]].metric: unknown metric 'jsdd'*"),
    ("version: two\nrules: []\n", "*version: expected an integer*"),
    ("version: 1\nrules: []\n", "*rules: the list is empty*"),
    ("version: 1\nversion: 2\nrules: []\n", "*duplicate key 'version'*"),
    ("version: 1\nrules:\n  - {metric: mmd2, benchmarks: [photoz], max: 1}\n", "*'photoz' is neither a built-in*"),
])
def test_corrupt_or_invalid_threshold_file_is_a_usage_error_naming_file_and_key(gate, pytester, content, message):
    bad = pytester.makefile(".yaml", bad=content)
    result = gate("--model=tiny-llava", "--layers=0", f"--thresholds={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*bad.yaml*{message.lstrip('*')}"])


def test_a_rule_for_layers_the_model_does_not_have_fails_the_run(gate, pytester):
    deep = pytester.makefile(".yaml", deep=SEPARATION_RULES.replace("layers: all", "layers: '40'")
                             .replace("max: 0.3", "max: 1.5"))
    result = gate("--model=tiny-llava", "--layers=0", f"--thresholds={deep}", "-k", "key_separation")
    assert result.ret == 6  # INCONCLUSIVE: a rule that covers nothing is never a pass
    result.stdout.fnmatch_lines(["INCONCLUSIVE · tiny-llava*",
                                 "*problem: tiny-llava: deep.yaml rules[[]0[]] (mmd2, layers '40') names no layer*"])


@pytest.mark.parametrize("args, message", [
    (("--layers=middle_half",), "*unknown layer selector 'middle_half'*first_third*"),
    (("--benchmark=mmbench-nowhere",), "*unknown benchmark 'mmbench-nowhere'*photos*"),
    (("--seed=-1",), "*seed -1 is out of range*"),
    (("--seed=2**70",), "*seed '2[*][*]70' is not an integer*"),
    (("--device=cuda:x",), "*device 'cuda:x' is not a device*"),
    (("--update-thresholds",), "*--update-thresholds needs --reason*"),
])
def test_bad_options_are_usage_errors_before_any_model_loads(gate, args, message):
    result = gate("--model=tiny-llava", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_layer_beyond_the_model_is_a_usage_error(gate):
    result = gate("--model=tiny-llava", "--layers=40")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*layer 40 out of range: tiny-llava has 4 decoder layers (0–3)*"])


def test_model_that_cannot_load_is_a_usage_error(gate, pytester):
    result = gate(f"--model={pytester.path / 'no-such-checkpoint'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no-such-checkpoint: no such directory*"])


def test_environment_drift_is_reported_and_fails_only_with_strict_env(gate, pytester):
    drifted = pytester.makefile(".yaml", drifted=SEPARATION_RULES.replace(
        "environment: {}", "environment: {torch: 0.0.1, transformers: 5.24.0, attn_implementation: sdpa}").replace(
        "max: 0.3", "max: 1.9"))
    relaxed = gate("--model=tiny-llava", "--layers=0", f"--thresholds={drifted}", "-k", "key_separation")
    assert relaxed.ret == pytest.ExitCode.OK
    relaxed.stdout.fnmatch_lines(["*environment drift: tiny-llava: torch: thresholds made with 0.0.1, running *"])
    strict = gate("--model=tiny-llava", "--layers=0", f"--thresholds={drifted}", "-k", "key_separation", "--strict-env")
    assert strict.ret == 6  # INCONCLUSIVE: not comparable under --strict-env
    strict.stdout.fnmatch_lines(["INCONCLUSIVE · tiny-llava*", "*environment drift (--strict-env: inconclusive)*"])


def test_junit_xml_carries_the_gated_rows_as_properties(gate, pytester):
    result = gate("--model=tiny-llava", "--layers=0", "--junitxml=junit.xml", "-k", "attention_share",
                  "--allow-unbaselined")
    assert result.ret == pytest.ExitCode.OK
    xml = (pytester.path / "junit.xml").read_text()
    assert '<property name="bias visual_share_norm.question shapes L0"' in xml
    assert "default.yaml rules[" in xml
