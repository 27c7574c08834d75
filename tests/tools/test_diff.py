"""``bias-suite diff OLD.json NEW.json``: paired changes, biggest in units of their interval's width first."""

from __future__ import annotations

import json

from bias_suite.tools.diff import in_widths, main, paired


def shifted(card: dict, metric: str, by: float) -> dict:
    """The card with one pooled row of ``metric`` (and its leave-one-sample-out values, or else its bootstrap
    replicates) moved by ``by``, plus a little noise."""
    card = json.loads(json.dumps(card))
    row = next(row for row in card["results"] if row["metric"] == metric and row["head"] is None
               and (row.get("jackknife") or row.get("replicates")))
    key = "jackknife" if row.get("jackknife") else "replicates"
    row["value"] += by
    row[key] = [value + by * (1 + 0.01 * (index % 3)) for index, value in enumerate(row[key])]
    return card


def test_the_biggest_change_in_interval_widths_comes_first(unsharded, tmp_path, capsys):
    _, card = unsharded
    (tmp_path / "old.json").write_text(json.dumps(card))
    (tmp_path / "new.json").write_text(json.dumps(shifted(card, "mmd2", 0.5)))
    changes, problems = paired(str(tmp_path / "old.json"), str(tmp_path / "new.json"))
    assert not problems and changes[0].metric == "mmd2" and changes[0].increase > 0.45
    assert in_widths(changes[0]) > 4 and all(abs(in_widths(change) or 0) == 0 for change in changes[1:])
    assert main([str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--limit=3"]) == 0
    out = capsys.readouterr().out
    assert "the 3 biggest changes" in out and out.splitlines()[3].split()[3] == "mmd2"


def test_runs_that_do_not_pair_sample_by_sample_are_named(unsharded, tmp_path, capsys):
    _, card = unsharded
    other = json.loads(json.dumps(card))
    other["settings"]["seed"] = 1
    (tmp_path / "old.json").write_text(json.dumps(card))
    (tmp_path / "new.json").write_text(json.dumps(other))
    assert main([str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    assert "not paired sample by sample: seed: baseline 0, this run 1" in capsys.readouterr().out


def test_diff_of_a_missing_card_exits_4(tmp_path, capsys):
    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 4
    assert "no such file" in capsys.readouterr().err
