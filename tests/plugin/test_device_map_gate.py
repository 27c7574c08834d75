"""``--device-map`` / ``--max-memory`` in the gate: a model split by accelerate gives the plain run's card."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("accelerate")


def test_a_device_map_run_gives_the_rows_and_verdicts_of_the_plain_run(gate, pytester):
    plain = gate("--model=tiny-llava", "--layers=0,3", "--device=cpu", "--bias-report=plain.json")
    split = gate("--model=tiny-llava", "--layers=0,3", "--device=cpu", "--device-map=auto", "--max-memory=cpu=300KB",
                 "--bias-report=split.json")
    assert split.ret == plain.ret
    ours, theirs = (json.loads((pytester.path / name).read_text()) for name in ("split.json", "plain.json"))
    assert ours["results"] == theirs["results"] and ours["verdicts"] == theirs["verdicts"]
    assert "device map:" in ours["environment"]["device"] and "disk" in ours["environment"]["device"]


@pytest.mark.parametrize(("args", "message"), [
    (("--max-memory=cpu=1GB",), "--max-memory only means something with --device-map auto"),
    (("--device-map=everywhere",), "device map 'everywhere'"),
    (("--device-map=auto", "--max-memory=gpu=1GB"), "'gpu' is not a device"),
])
def test_scale_options_that_cannot_work_stop_before_any_model_loads(gate, args, message):
    result = gate("--model=tiny-llava", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
