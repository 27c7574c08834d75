"""Blessing and gating through the plugin: transactional updates, one family file chosen by what it
matches, bless-then-gate for the next checkpoint, baselines, and destinations checked up front."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from bias_suite.models.tiny import ensure_checkpoint
from tests.plugin.planted import FAST

SEPARATION_RULES = """\
version: 1
family: test
environment: {}
provenance: {date: "2026-11-24", reason: test}
rules:
  - {metric: mmd2, layers: all, max: 0.3}
"""


def read(path):
    return yaml.safe_load(path.read_text())


def test_blessing_a_failing_run_is_refused_and_writes_nothing(gate, pytester, separated_checkpoints):
    threshold_file = pytester.makefile(".yaml", separation=SEPARATION_RULES)
    before = threshold_file.read_text()
    result = gate(f"--model={separated_checkpoints['planted']}", f"--thresholds={threshold_file}",
                  "--update-thresholds", "--reason", "bless the planted offset")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*thresholds NOT updated: the run is worse than separation.yaml in * row(s)*"
                                 "--accept-regression*"])
    assert threshold_file.read_text() == before
    assert "failed" in result.stdout.str().splitlines()[-1]  # pytest's summary says what the verdict says


def test_accepting_a_regression_writes_the_next_version_says_so_and_still_exits_with_the_verdict(
        gate, pytester, separated_checkpoints):
    threshold_file = pytester.makefile(".yaml", separation=SEPARATION_RULES)
    result = gate(f"--model={separated_checkpoints['planted']}", f"--thresholds={threshold_file}",
                  "--update-thresholds", "--accept-regression", "--reason", "accept the planted offset")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the run was a FAIL; the bless does not hide it
    result.stdout.fnmatch_lines(["*thresholds updated:*separation.yaml: version 1 → version 2*"])
    document = read(threshold_file)
    assert document["version"] == 2 and document["provenance"]["reason"] == "accept the planted offset"
    assert any("mmd2" in line for line in document["provenance"]["accepted_regression"])
    assert document["history"][0]["version"] == 1 and document["history"][0]["rules"][0]["max"] == 0.3
    assert {key: document["settings"][key] for key in ("n_samples", "max_tokens_per_modality", "seed")} == {
        "n_samples": 8, "max_tokens_per_modality": 64, "seed": 0}
    bounds = [rule for rule in document["rules"] if "max" in rule]
    assert {rule["layers"] for rule in bounds} == {"0", "1", "2", "3"}
    assert all(rule["benchmarks"] == ["shapes"] and rule["max"] > 0.3 for rule in bounds)
    assert (pytester.path / document["baseline_card"]["file"]).is_file()
    rerun = gate(f"--model={separated_checkpoints['planted']}", f"--thresholds={threshold_file}",
                 "-k", "key_separation")
    assert rerun.ret == pytest.ExitCode.OK


def test_an_update_with_deselected_cases_writes_nothing(gate, pytester):
    threshold_file = pytester.makefile(".yaml", separation=SEPARATION_RULES.replace("0.3", "1.5"))
    before = threshold_file.read_text()
    result = gate("--model=tiny-llava", f"--thresholds={threshold_file}", "-k", "key_separation",
                  "--update-thresholds", "--reason", "partial")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*thresholds NOT updated: * case(s) recorded nothing "
                                 "(tiny-llava-shapes-L0 (attention)*"])
    assert threshold_file.read_text() == before


def test_an_interrupted_update_writes_nothing(pytester):
    pytester.makeconftest("import time\ndef pytest_runtest_teardown(item):\n    time.sleep(0.5)  # a slow model\n")
    threshold_file = pytester.makefile(".yaml", separation=SEPARATION_RULES.replace("0.3", "1.5"))
    before = threshold_file.read_text()
    command = [sys.executable, "-m", "pytest", *FAST, "-vv", "--model=tiny-llava", "--benchmark=photos",
               "--benchmark=conflict", f"--thresholds={threshold_file}", "--update-thresholds", "--reason", "cut off"]
    process = subprocess.Popen(command, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        done = sum(" PASSED" in o or " FAILED" in o for o in output)
        if (" PASSED" in line or " FAILED" in line) and done >= 3:  # three cases done (of 17), then Ctrl-C
            process.send_signal(signal.SIGINT)
            break
    remaining, _ = process.communicate(timeout=240)
    text = "".join(output) + remaining
    assert process.returncode == pytest.ExitCode.INTERRUPTED, text[-3000:]
    assert "thresholds NOT updated: the run was interrupted" in text
    assert threshold_file.read_text() == before


def test_a_checkpoint_folder_named_like_another_familys_file_never_replaces_it(gate, pytester):
    thresholds = pytester.mkdir("thresholds")
    llava_file = thresholds / "llava.yaml"
    llava_file.write_text("version: 1\nmatch: {model_type: [llava]}\nrules:\n  - {metric: mmd2, max: 1.5}\n")
    before = llava_file.read_text()
    for folder in ("llava", "default"):
        checkpoint = pytester.path / folder
        shutil.copytree(ensure_checkpoint("tiny-qwen2-vl"), checkpoint)
        refused = gate(f"--model={checkpoint}", "--layers=0", "--update-thresholds", "--reason", f"qwen in {folder}/")
        assert refused.ret == pytest.ExitCode.TESTS_FAILED
        refused.stdout.fnmatch_lines(["*thresholds NOT updated: *no family file in thresholds/ names this model; "
                                      "pass --family NAME*"])
        result = gate(f"--model={checkpoint}", "--layers=0", "--update-thresholds", "--family", "qwen",
                      "--reason", f"qwen in {folder}/")
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    assert llava_file.read_text() == before
    assert not (thresholds / "default.yaml").exists()
    qwen = read(thresholds / "qwen.yaml")
    assert qwen["match"] == {"model_type": ["qwen2_vl"], "name": ["*qwen*"]} and qwen["version"] == 2  # one family


def test_two_models_of_one_family_in_one_update_make_one_version_that_both_pass(gate, pytester, separated_checkpoints):
    models = [f"--model={separated_checkpoints['control']}", f"--model={separated_checkpoints['planted']}"]
    result = gate(*models, "--layers=0,3", "--update-thresholds", "--reason", "two checkpoints", "--family", "sep")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*thresholds updated:*sep.yaml: new file → version 1*"])
    assert read(pytester.path / "thresholds" / "sep.yaml")["version"] == 1
    rerun = gate(*models, "--layers=0,3", "--family", "sep")  # the folders are called control/ and planted/
    assert rerun.ret == pytest.ExitCode.OK
    rerun.stdout.fnmatch_lines(["PASS · *gated by thresholds/sep.yaml v1 (declared with --family*"])


def test_a_blessed_family_gates_the_next_more_biased_checkpoint_by_default(gate, pytester, separated_checkpoints):
    """Bless ckpt-v1 (in distribution), then gate ckpt-v2 (a far visual cluster) with no --thresholds=FILE."""
    v1, v2 = pytester.path / "ours-v1", pytester.path / "ours-v2"
    shutil.copytree(separated_checkpoints["control"], v1)
    shutil.copytree(separated_checkpoints["planted"], v2)
    blessed = gate(f"--model={v1}", "--update-thresholds", "--reason", "v1 baseline", "--family", "ours")
    assert blessed.ret == pytest.ExitCode.OK
    candidate = gate(f"--model={v2}", "--bias-report=v2.json")
    assert candidate.ret == pytest.ExitCode.TESTS_FAILED
    candidate.stdout.fnmatch_lines(["FAIL · *ours-v2 — *gated by thresholds/ours.yaml v1 (matched by name*"])
    card = json.loads((pytester.path / "v2.json").read_text())
    assert any(row["status"] == "fail" and row["metric"] == "mmd2" for row in card["results"])


def test_a_model_only_generic_bounds_gate_is_no_baseline_and_fails_unless_reported_only(gate):
    result = gate("--model=tiny-llava", "--layers=0")
    assert result.ret == 7  # NO BASELINE
    result.stdout.fnmatch_lines(["NO BASELINE · tiny-llava*packaged default.yaml*not a baseline*",
                                 "*what to do: bless the checkpoint tiny-llava must not be worse than*"])
    assert "passed" not in result.stdout.str().splitlines()[-1]
    reported = gate("--model=tiny-llava", "--layers=0", "--allow-unbaselined")
    assert reported.ret == pytest.ExitCode.OK
    reported.stdout.fnmatch_lines(["NO BASELINE · tiny-llava*"])
    assert gate("--model=tiny-llava", "--layers=0", "--require-baseline").ret == 7


def test_unwritable_destinations_are_refused_before_any_model_loads(gate, pytester):
    pytester.makefile(".txt", blocker="a file where a folder should be")
    result = gate("--model=tiny-llava", "--bias-report=blocker.txt/card.md")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot write blocker.txt/card.md: blocker.txt is a file, not a folder*"])
    result = gate("--model=tiny-llava", "--thresholds=blocker.txt/thresholds", "--update-thresholds", "--reason", "x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_a_report_that_cannot_be_written_at_the_end_loses_nothing_else(gate, pytester):
    pytester.makeconftest("""
import pathlib
def pytest_collection_finish(session):
    folder = pathlib.Path("late")
    folder.rmdir()
    folder.write_text("now a file")   # the report folder turns into a file after the up-front check
""")
    pytester.mkdir("late")
    result = gate("--model=tiny-llava", "--layers=0", "--bias-report=late/card.md", "--bias-report=card.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*bias report card*", "*could not write the report late/card.md*"])
    assert json.loads((pytester.path / "card.json").read_text())["results"]


def test_a_baseline_card_gives_paired_changes_and_max_increase_rules_gate_them(gate, pytester, separated_checkpoints):
    rules = pytester.makefile(".yaml",
                              change="version: 1\nrules:\n  - {metric: mmd2, layers: all, max_increase: 0.05}\n")
    base = gate(f"--model={separated_checkpoints['control']}", f"--thresholds={rules}", "--bias-report=base.json",
                "-k", "key_separation", "--allow-unbaselined")
    assert base.ret == pytest.ExitCode.OK
    same = gate(f"--model={separated_checkpoints['control']}", f"--thresholds={rules}", "--bias-baseline=base.json",
                "--bias-report=same.json", "-k", "key_separation")
    assert same.ret == pytest.ExitCode.OK
    changes = json.loads((pytester.path / "same.json").read_text())["changes"]
    mmd2 = [c for c in changes if c["metric"] == "mmd2"]
    assert len(mmd2) == 4 and all(c["increase"] == 0 and c["ci"] == [0, 0] and c["status"] == "pass" for c in mmd2)
    worse = gate(f"--model={separated_checkpoints['planted']}", f"--thresholds={rules}", "--bias-baseline=base.json",
                 "-k", "key_separation")
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    worse.stdout.fnmatch_lines(["FAIL · *planted*", "*mmd2*: * → * (change +*) against baseline*tolerance 0.05*"])
    other = gate(f"--model={separated_checkpoints['planted']}", f"--thresholds={rules}", "--samples=9",
                 "--bias-baseline=base.json", "-k", "key_separation")
    other.stdout.fnmatch_lines(["INCONCLUSIVE*not comparable with --bias-baseline base.json: n_samples: baseline 8, "
                                "this run 9*"])
    assert other.ret == 6


def test_an_update_under_xdist_is_complete_and_transactional(gate, pytester):
    result = gate("--model=tiny-llava", "--layers=0,1", "-n", "2", "--update-thresholds", "--family", "tiny",
                  "--reason", "parallel", subprocess=True)
    assert result.ret == pytest.ExitCode.OK
    assert read(pytester.path / "thresholds" / "tiny.yaml")["version"] == 1
