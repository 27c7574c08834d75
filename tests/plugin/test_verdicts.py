"""No silent pass: a model's verdict is PASS only when something that baselines it judged every case.

Through the real command line on tiny checkpoints with a planted visual-key offset (``planted``) and an
in-distribution control (``control``), built inside the tests (tests/plugin/planted.py)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

NO_BASELINE, INCONCLUSIVE, FAIL = 7, 6, pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def blessed_ours(gate, pytester, separated_checkpoints):
    """``thresholds/ours.yaml`` blessed on the control checkpoint, copied to ``ours-v1/``."""
    v1 = pytester.path / "ours-v1"
    shutil.copytree(separated_checkpoints["control"], v1)
    blessed = gate(f"--model={v1}", "--update-thresholds", "--reason", "v1 baseline", "--family", "ours")
    assert blessed.ret == pytest.ExitCode.OK, blessed.stdout.str()[-3000:]
    return v1


def test_a_renamed_biased_checkpoint_is_no_baseline_and_the_card_lists_the_files_considered(
        gate, pytester, separated_checkpoints, blessed_ours):
    candidate = pytester.path / "ckpts" / "release-candidate"
    shutil.copytree(separated_checkpoints["planted"], candidate)
    result = gate(f"--model={candidate}", "--bias-report=card.json")
    assert result.ret == NO_BASELINE
    result.stdout.fnmatch_lines(["NO BASELINE · *release-candidate*not a baseline*",
                                 "*what to do: bless the checkpoint*never this candidate*"
                                 "*name patterns ['[]'*ours*'[]] do not match*release-candidate*"])
    card = json.loads((pytester.path / "card.json").read_text())
    assert card["verdicts"] == {str(candidate): "NO BASELINE"}
    assert any("ours.yaml" in line for line in card["thresholds"][0]["considered"])


def test_declaring_the_family_at_gate_time_fails_the_renamed_biased_checkpoint(
        gate, pytester, separated_checkpoints, blessed_ours):
    candidate = pytester.path / "ckpts" / "release-candidate"
    shutil.copytree(separated_checkpoints["planted"], candidate)
    result = gate(f"--model={candidate}", "--family", "ours")
    assert result.ret == FAIL
    result.stdout.fnmatch_lines(["FAIL · *release-candidate*gated by thresholds/ours.yaml v1 (declared with --family*"])
    assert "failed" in result.stdout.str().splitlines()[-1]
    # declared for that model alone (SPEC=NAME): the same; a SPEC that is no model of the run is a usage error
    # before anything loads (it would have declared nothing and left the model to its name)
    per_model = gate(f"--model={candidate}", "--family", f"{candidate}=ours")
    assert per_model.ret == FAIL
    per_model.stdout.fnmatch_lines(["FAIL · *release-candidate*gated by thresholds/ours.yaml v1 (declared*"])
    typo = gate(f"--model={candidate}", "--family", "ckpts/release-candidat=ours")
    assert typo.ret == pytest.ExitCode.USAGE_ERROR
    typo.stderr.fnmatch_lines(["*--family ckpts/release-candidat=…: 'ckpts/release-candidat' is not a --model of "
                               "this run (models: *release-candidate)*"])


def test_a_copy_of_the_blessed_checkpoint_passes_paired_with_the_blessed_run(gate, pytester, blessed_ours):
    result = gate(f"--model={blessed_ours}", "--bias-report=card.json")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    changes = json.loads((pytester.path / "card.json").read_text())["changes"]
    assert changes and all(change["against"] == "blessed" and change["status"] == "pass" for change in changes)
    assert {change["metric"] for change in changes} >= {"mmd2", "logit_gap.question"}


def test_a_benchmark_the_family_never_measured_is_no_baseline(gate, pytester, blessed_ours):
    result = gate(f"--model={blessed_ours}", "--benchmark=photos")
    assert result.ret == NO_BASELINE
    result.stdout.fnmatch_lines(["NO BASELINE · *ours-v1*", "*no baseline judged: photos L0 (keyspace)*"])


def test_a_run_with_fewer_samples_than_the_blessed_one_is_inconclusive_naming_samples(gate, pytester,
                                                                                    separated_checkpoints):
    v1 = pytester.path / "ours-v1"
    shutil.copytree(separated_checkpoints["control"], v1)
    blessed = gate(f"--model={v1}", "--samples=16", "--layers=0,3", "--update-thresholds", "--reason", "v1",
                   "--family", "ours")
    assert blessed.ret == pytest.ExitCode.OK, blessed.stdout.str()[-3000:]
    result = gate(f"--model={v1}", "--samples=4", "--layers=0,3")
    assert result.ret == INCONCLUSIVE
    result.stdout.fnmatch_lines(["INCONCLUSIVE · *ours-v1*",
                                 "*not comparable: n_samples differs (the bounds of ours.yaml were measured with 16, "
                                 "this run has 4*"])
    # blessing it would replace a baseline it could not be compared with — how a regressed checkpoint was
    # blessed unseen by changing a setting: refused, unless said on purpose
    before = (pytester.path / "thresholds" / "ours.yaml").read_text()
    refused = gate(f"--model={v1}", "--samples=4", "--layers=0,3", "--update-thresholds", "--reason", "fewer")
    assert refused.ret == FAIL
    refused.stdout.fnmatch_lines(["*thresholds NOT updated: the run could not be compared with *ours.yaml*"
                                  "--accept-regression*"])
    assert (pytester.path / "thresholds" / "ours.yaml").read_text() == before
    accepted = gate(f"--model={v1}", "--samples=4", "--layers=0,3", "--update-thresholds", "--accept-regression",
                    "--reason", "fewer samples on purpose")
    assert accepted.ret == INCONCLUSIVE  # written, and the run still exits with its verdict
    document = yaml.safe_load((pytester.path / "thresholds" / "ours.yaml").read_text())
    assert document["version"] == 2 and document["settings"]["n_samples"] == 4
    assert any("n_samples" in line for line in document["provenance"]["accepted_regression"])


def test_a_reference_in_the_same_run_fails_the_planted_checkpoint_and_passes_a_copy(gate, pytester,
                                                                                   separated_checkpoints):
    reference = separated_checkpoints["control"]
    planted = gate(f"--model={separated_checkpoints['planted']}", f"--bias-reference={reference}",
                   "--bias-report=planted.json", "--bias-report=planted.md")
    assert planted.ret == FAIL
    planted.stdout.fnmatch_lines(["REFERENCE · *control*", "FAIL · *planted*"])
    changes = json.loads((pytester.path / "planted.json").read_text())["changes"]
    mmd2 = [c for c in changes if c["metric"] == "mmd2" and c["against"] == "reference"]
    assert mmd2 and all(c["status"] == "fail" and c["ci"][0] > c["bound"] for c in mmd2)
    assert " → " in (pytester.path / "planted.md").read_text()  # reference → candidate (change [CI]), tolerance

    copy = pytester.path / "copy-of-control"
    shutil.copytree(reference, copy)
    same = gate(f"--model={copy}", f"--bias-reference={reference}", "--bias-report=same.json")
    assert same.ret == pytest.ExitCode.OK, same.stdout.str()[-3000:]
    changes = json.loads((pytester.path / "same.json").read_text())["changes"]
    assert changes and all(c["status"] == "pass" and c["increase"] == 0 for c in changes)
    assert {c["metric"] for c in changes} >= {"mmd2", "ratio", "jsd", "visual_share.question", "logit_gap.question"}


def test_thresholds_file_that_does_not_exist_yet_is_created_by_a_bless_and_a_typo_otherwise(gate, pytester):
    missing = gate("--model=tiny-llava", "--layers=0", "--thresholds=new.yaml")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*--thresholds new.yaml: no such threshold file*"])
    blessed = gate("--model=tiny-llava", "--layers=0", "--thresholds=new.yaml", "--update-thresholds",
                   "--family", "tiny", "--reason", "first")
    assert blessed.ret == pytest.ExitCode.OK, blessed.stdout.str()[-3000:]
    created = pytester.path / "new.yaml"
    assert created.is_file() and "*tiny*" in created.read_text()
    again = gate("--model=tiny-llava", "--layers=0", "--thresholds=new.yaml")
    assert again.ret == pytest.ExitCode.OK, again.stdout.str()[-3000:]
