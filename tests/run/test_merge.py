"""bias-suite merge: the shards of a run, merged, are the unsharded run — rows, verdicts and exit code — and
anything that would not make one whole run is refused, naming it."""

from __future__ import annotations

import json

import pytest

from bias_suite.errors import ShardError
from bias_suite.run.merge import MergeOptions, merge_shards, read_shard
from tests.gate_runs import GATE, comparable, run_gate


@pytest.fixture(autouse=True)
def in_the_shards_folder(shards, monkeypatch):
    """Merge where the shards ran (the threshold files they were gated by are found from there)."""
    monkeypatch.chdir(shards[0])


def merged(folder, *names, **options):
    return merge_shards([read_shard(folder / name) for name in names], MergeOptions(**options))


def test_the_merged_shards_are_the_unsharded_run(shards, unsharded):
    folder, codes = shards
    code, whole = unsharded
    first, second = (json.loads((folder / f"shard-{k}.json").read_text())["shard"] for k in (1, 2))
    assert [cell for shard in (first, second) for cell in shard["cells"]] != []
    assert sorted(map(tuple, first["cells"] + second["cells"])) == [
        ("tiny-llava", "photos"), ("tiny-llava", "shapes"), ("tiny-qwen2-vl", "photos"), ("tiny-qwen2-vl", "shapes")]
    outcome = merged(folder, "shard-2.json", "shard-1.json", reports=("merged.json", "merged.md", "merged.html"))
    assert outcome.exit_code == code == 7  # NO BASELINE: only the generic bounds judge the tiny models
    card = json.loads((folder / "merged.json").read_text())
    assert comparable(card) == comparable(whole)  # row for row, verdicts, details, environment, everything
    assert "shard" not in card
    assert (folder / "merged.md").read_text().startswith("# Bias report card")
    assert set(codes) <= {0, 1, 6, 7}


def test_a_missing_shard_is_refused_naming_it(shards):
    folder, _ = shards
    with pytest.raises(ShardError, match=r"shard 2/2 is missing \(have 1/2 \(.*shard-1.json\)\)"):
        merged(folder, "shard-1.json")


def test_a_shard_given_twice_is_refused_naming_both_files(shards, tmp_path):
    folder, _ = shards
    copy = tmp_path / "copy.json"
    copy.write_text((folder / "shard-1.json").read_text())
    with pytest.raises(ShardError, match=r"shard 1/2 is given twice: .*shard-1.json, .*copy.json"):
        merge_shards([read_shard(folder / "shard-1.json"), read_shard(copy), read_shard(folder / "shard-2.json")])


def test_shards_of_another_run_are_refused_naming_the_difference(shards, tmp_path):
    folder, _ = shards
    assert run_gate(tmp_path, *GATE[:-1], "--samples=9", "--bias-shard=2/2", "--bias-report=other.json") in (0, 1, 6, 7)
    with pytest.raises(ShardError, match=r"shards of different runs .*n_samples.*: 8.* vs .*9"):
        merge_shards([read_shard(folder / "shard-1.json"), read_shard(tmp_path / "other.json")])


def test_a_shard_of_another_suite_version_is_refused(shards, tmp_path):
    folder, _ = shards
    card = json.loads((folder / "shard-2.json").read_text())
    card["suite_version"] = "0.0.1"
    (tmp_path / "old.json").write_text(json.dumps(card))
    with pytest.raises(ShardError, match=r"other bias-suite versions .*old.json: 0.0.1"):
        merge_shards([read_shard(folder / "shard-1.json"), read_shard(tmp_path / "old.json")])


def test_a_card_that_is_not_a_shard_is_refused(unsharded, tmp_path):
    _, card = unsharded
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ShardError, match="not a shard's card"):
        read_shard(tmp_path / "card.json")


def test_a_shard_that_failed_makes_its_cases_errors_of_the_merged_run(shards):
    folder, _ = shards
    outcome = merged(folder, "shard-1.json", failed={2: "exit code 3 twice: Killed"})
    assert outcome.exit_code == 6  # INCONCLUSIVE: a case that died is never a pass
    assert any(line.startswith("shard 2/2 failed, its cells") for line in outcome.card.problems)
    assert any("shard 2/2 failed: exit code 3 twice" in reason for verdict in outcome.card.model_verdicts.values()
               for reason in verdict.reasons)


def test_a_reference_is_measured_in_every_shard_that_needs_it(tmp_path, monkeypatch):
    """Three shards of a candidate judged against a reference: the shard holding only the candidate's shapes
    cell measures the reference on shapes itself, and the merged paired changes are the unsharded run's."""
    monkeypatch.chdir(tmp_path)
    gate = ("--model=demo-joint", "--bias-reference=demo-text-first", "--benchmark=shapes", "--benchmark=photos",
            "--layers=0", "--samples=8")
    code = run_gate(tmp_path, *gate, "--bias-report=card.json")
    for index in (1, 2, 3):
        assert run_gate(tmp_path, *gate, f"--bias-shard={index}/3", f"--bias-report=shard-{index}.json") in (0, 1, 6, 7)
    assert json.loads((tmp_path / "shard-2.json").read_text())["shard"]["cells"] == [["demo-joint", "shapes"]]
    outcome = merged(tmp_path, "shard-1.json", "shard-2.json", "shard-3.json", reports=("merged.json",))
    whole = json.loads((tmp_path / "card.json").read_text())
    assert whole["changes"] and outcome.exit_code == code
    assert comparable(json.loads((tmp_path / "merged.json").read_text())) == comparable(whole)


def test_a_merged_run_blesses_what_the_unsharded_run_blesses(tmp_path, monkeypatch):
    import yaml

    gate = ("--model=tiny-llava", "--benchmark=shapes", "--benchmark=photos", "--layers=0", "--samples=8")
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    whole.mkdir(), sharded.mkdir()
    assert run_gate(whole, *gate, "--update-thresholds", "--family=tiny", "--reason=v1 baseline") == 0
    for index in (1, 2):
        run_gate(sharded, *gate, f"--bias-shard={index}/2", f"--bias-report=shard-{index}.json")
    monkeypatch.chdir(sharded)
    outcome = merged(sharded, "shard-1.json", "shard-2.json", update=True, reason="v1 baseline",
                     families={"*": "tiny"})
    assert outcome.exit_code == 0 and outcome.card.updates
    ours, theirs = (yaml.safe_load((folder / "thresholds" / "tiny.yaml").read_text()) for folder in (sharded, whole))
    for key in ("version", "family", "match", "settings", "benchmarks", "rules", "not_bounded", "environment"):
        assert ours.get(key) == theirs.get(key), key


def test_a_merged_run_with_a_failed_shard_is_not_blessed(shards, tmp_path, monkeypatch):
    folder, _ = shards
    (tmp_path / "shard-1.json").write_text((folder / "shard-1.json").read_text())
    monkeypatch.chdir(tmp_path)
    outcome = merged(tmp_path, "shard-1.json", failed={2: "exit code 3 twice"}, update=True, reason="x",
                     families={"tiny-llava": "tiny"})
    assert outcome.exit_code == 1
    assert any(line.startswith("thresholds NOT updated") for line in outcome.problems)
    assert not (tmp_path / "thresholds").exists()


def test_the_merge_command_writes_every_format_and_exits_with_the_gate_code(shards, unsharded, capsys):
    from bias_suite.tools.merge import main

    folder, _ = shards
    assert main(["shard-1.json", "shard-2.json", "--report=cli/card.json", "--report=cli/card.html"]) == unsharded[0]
    assert "NO BASELINE · tiny-qwen2-vl" in capsys.readouterr().out
    assert comparable(json.loads((folder / "cli" / "card.json").read_text())) == comparable(unsharded[1])
    assert main(["shard-1.json"]) == 4
    assert "bias-suite merge: shard 2/2 is missing" in capsys.readouterr().err


def test_a_bless_whose_threshold_folder_cannot_be_written_stops_before_merging(shards, tmp_path, capsys):
    from bias_suite.tools.merge import main

    (tmp_path / "a-file").write_text("")
    assert main(["shard-1.json", "shard-2.json", "--update-thresholds", "--reason=x",
                 f"--thresholds={tmp_path / 'a-file' / 'thresholds'}"]) == 4
    assert "cannot write" in capsys.readouterr().err
