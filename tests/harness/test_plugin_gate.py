"""The pytest plugin end to end: the gate's verdicts, the report files, threshold updates, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

DEFAULT_THRESHOLDS = Path(__file__).parents[2] / "thresholds" / "default.yaml"

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


def test_gate_fails_far_visual_cluster_and_passes_in_distribution_model(gate, pytester, separated_checkpoints, threshold_file):
    planted = gate(f"--model={separated_checkpoints['planted']}", f"--thresholds={threshold_file}",
                   "--bias-report=planted.json", "-k", "key_separation")
    control = gate(f"--model={separated_checkpoints['control']}", f"--thresholds={threshold_file}",
                   "--bias-report=control.json", "-k", "key_separation")
    assert planted.ret == pytest.ExitCode.TESTS_FAILED
    planted.stdout.fnmatch_lines(["*FAIL*mmd2*separation.yaml rules[[]0[]]*"])
    assert control.ret == pytest.ExitCode.OK
    far, near = results_by_layer(pytester.path / "planted.json", "mmd2"), results_by_layer(pytester.path / "control.json", "mmd2")
    assert sorted(far) == sorted(near) == [0, 1, 2, 3]
    for layer in far:
        assert far[layer]["value"] > near[layer]["value"], layer
        assert far[layer]["status"] == "fail" and near[layer]["status"] == "pass"


def test_report_files_follow_the_documented_shape(gate, pytester):
    result = gate("--model=tiny-llava", "--layers=0,last_third", f"--thresholds={DEFAULT_THRESHOLDS}", "--bias-report=card.json",
                  "--bias-report=card.md", "--bias-report=out/card.html")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*bias report card*", "*tiny-llava*shapes*", "tiny-llava: *"])
    card = json.loads((pytester.path / "card.json").read_text())
    assert set(card) == {"schema", "suite_version", "created", "environment", "thresholds", "models", "benchmarks", "results"}
    assert set(card["environment"]) == {"python", "torch", "transformers", "device", "dtype", "attn_implementation"}
    assert card["models"] == [{"spec": "tiny-llava", "model_type": "llava", "revision": None}]
    assert card["benchmarks"][0]["name"] == "shapes" and card["benchmarks"][0]["n_samples"] == 6
    statuses = {row["status"] for row in card["results"]}
    assert statuses <= {"pass", "warn", "fail", "error", "unchecked"}
    assert {row["layer"] for row in card["results"]} == {0, 3}
    assert any(row["head"] is None for row in card["results"]) and any(row["head"] == 0 for row in card["results"])
    assert "| tiny-llava" in (pytester.path / "card.md").read_text()
    html = (pytester.path / "out" / "card.html").read_text()
    assert html.count("<svg") >= 5 and "<script" not in html and "http" not in html.split("xmlns")[0]


def test_test_ids_name_model_benchmark_and_layer(gate):
    result = gate("--model=tiny-llava", "--layers=2", "--collect-only")
    result.stdout.fnmatch_lines(["*test_key_separation[[]tiny-llava-shapes-L2[]]*",
                                 "*test_attention_share[[]tiny-llava-shapes-L2[]]*"])


def test_same_seed_gives_identical_results_across_runs_and_workers(gate, pytester):
    args = ("--model=tiny-llava", "--layers=1,3", "--benchmark=conflict", f"--thresholds={DEFAULT_THRESHOLDS}")
    first = gate(*args, "--bias-report=first.json", subprocess=True)
    second = gate(*args, "--bias-report=second.json", subprocess=True)
    parallel = gate(*args, "-n", "2", "--bias-report=parallel.json", subprocess=True)
    assert first.ret == second.ret == parallel.ret == pytest.ExitCode.OK
    results = [json.loads((pytester.path / name).read_text())["results"] for name in ("first.json", "second.json", "parallel.json")]
    assert results[0] == results[1] == results[2]
    assert len(results[0]) > 100


def test_update_thresholds_without_reason_is_refused(gate):
    result = gate("--model=tiny-llava", "--update-thresholds")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--update-thresholds needs --reason*"])


def test_update_thresholds_writes_the_next_version_and_keeps_history(gate, pytester, threshold_file, separated_checkpoints):
    result = gate(f"--model={separated_checkpoints['planted']}", f"--thresholds={threshold_file}", "-k", "key_separation",
                  "--update-thresholds", "--reason", "accept the planted offset")
    result.stdout.fnmatch_lines(["*thresholds updated:*version 1 → 2*", "*rules[[]0[]] mmd2*max 0.3 →*"])
    document = yaml.safe_load(threshold_file.read_text())
    assert document["version"] == 2
    assert document["provenance"]["reason"] == "accept the planted offset"
    assert document["environment"]["transformers"]
    assert document["history"][0]["version"] == 1 and document["history"][0]["rules"][0]["max"] == 0.3
    assert document["rules"][0]["max"] > 0.3
    rerun = gate(f"--model={separated_checkpoints['planted']}", f"--thresholds={threshold_file}", "-k", "key_separation")
    assert rerun.ret == pytest.ExitCode.OK


@pytest.mark.parametrize("content, message", [
    ("version: 1\nrules: [\n", "*not valid YAML*"),
    ("version: 1\nrules:\n  - metric: jsd\n    maximum: 0.5\n", "*rules[[]0[]].maximum: unknown key*"),
    ("version: 1\nrules:\n  - metric: jsdd\n    max: 0.5\n", "*rules[[]0[]].metric: unknown metric 'jsdd'*"),
    ("version: two\nrules: []\n", "*version: expected an integer*"),
])
def test_corrupt_or_invalid_threshold_file_ends_the_run_naming_file_and_key(gate, pytester, content, message):
    bad = pytester.makefile(".yaml", bad=content)
    result = gate("--model=tiny-llava", "--layers=0", f"--thresholds={bad}")
    assert result.ret != pytest.ExitCode.OK
    assert " passed" not in result.stdout.str().splitlines()[-1]
    result.stdout.fnmatch_lines([f"*bad.yaml*{message.lstrip('*')}"])


def test_unknown_layer_selector_is_a_usage_error(gate):
    result = gate("--model=tiny-llava", "--layers=middle_half")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown layer selector 'middle_half'*first_third*"])


def test_layer_beyond_the_model_ends_the_run_at_collection(gate):
    result = gate("--model=tiny-llava", "--layers=40")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*layer 40 out of range: tiny-llava has 4 decoder layers (0–3)*", "*error during collection*"])


def test_unknown_benchmark_is_a_usage_error(gate):
    result = gate("--model=tiny-llava", "--benchmark=mmbench-nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown benchmark 'mmbench-nowhere'*photos*"])


def test_model_that_cannot_load_ends_the_run_at_collection(gate, pytester):
    result = gate(f"--model={pytester.path / 'no-such-checkpoint'}")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*no-such-checkpoint: no such directory*", "*error during collection*"])


def test_environment_drift_is_reported_and_fails_only_with_strict_env(gate, pytester):
    drifted = pytester.makefile(".yaml", drifted=SEPARATION_RULES.replace(
        "environment: {}", "environment: {torch: 0.0.1, transformers: 5.24.0, attn_implementation: sdpa}").replace(
        "max: 0.3", "max: 10"))
    relaxed = gate("--model=tiny-llava", "--layers=0", f"--thresholds={drifted}", "-k", "key_separation")
    assert relaxed.ret == pytest.ExitCode.OK
    relaxed.stdout.fnmatch_lines(["*environment drift: tiny-llava: torch: thresholds made with 0.0.1, running *"])
    strict = gate("--model=tiny-llava", "--layers=0", f"--thresholds={drifted}", "-k", "key_separation", "--strict-env")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*environment drift (--strict-env: failing)*"])
