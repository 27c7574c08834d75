"""``--bias-shard`` in the gate: what a shard needs is checked before any model loads; a shard whose cells hold
no case still writes its card; and the gate's xdist_group mark costs nothing where xdist is absent."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize(("args", "message"), [
    (("--bias-shard=1/2",), "a shard's JSON card is what bias-suite merge reads: add --bias-report=shard-1-of-2.json"),
    (("--bias-shard=1/2", "--bias-report=s.json", "--update-thresholds", "--reason=x"), "bless the merged run"),
    (("--bias-shard=3/2", "--bias-report=s.json"), "give K/N with 1 <= K <= N"),
])
def test_a_shard_that_cannot_be_merged_stops_before_any_model_loads(gate, args, message):
    result = gate("--model=tiny-llava", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_a_shard_without_cells_writes_an_empty_card_and_passes(gate, pytester):
    result = gate("--model=tiny-llava", "--bias-shard=2/2", "--bias-report=empty.json")
    assert result.ret == pytest.ExitCode.OK
    shard = json.loads((pytester.path / "empty.json").read_text())["shard"]
    assert shard["cells"] == [] and shard["entries"] == [] and shard["manifest"]["cells"] == [["tiny-llava", "shapes"]]


def test_without_xdist_the_gate_adds_no_unknown_mark_even_under_strict_markers(gate):
    result = gate("--model=tiny-llava", "--layers=0", "--allow-unbaselined", "-p", "no:xdist", "--strict-markers",
                  "-W", "error::pytest.PytestUnknownMarkWarning")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    assert "xdist_group" not in result.stdout.str()
