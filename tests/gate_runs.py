"""A two-model × two-benchmark gate run, measured once per test session: unsharded, and in two shards.

The fixtures are registered for every test folder by ``tests/conftest.py``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Small and quick; only generic bounds judge these models, so the run is NO BASELINE (exit 7): what matters is
# that a sharded run agrees with the unsharded one, verdicts and exit code included.
GATE = ("--model=tiny-llava", "--model=tiny-qwen2-vl", "--benchmark=shapes", "--benchmark=photos", "--layers=0",
        "--samples=8")


def run_gate(folder: Path, *args: str) -> int:
    """pytest with the gate's options, in this process, in ``folder`` (as a team's repository would run it)."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        return int(pytest.main(["-p", "bias_suite.plugin", "-p", "no:cacheprovider", "-q", *args]))
    finally:
        os.chdir(previous)


def comparable(card: dict) -> dict:
    """A card without what differs between two runs of the same options: when it was made."""
    return {key: value for key, value in card.items() if key != "created"}


@pytest.fixture(scope="session")
def unsharded(tmp_path_factory) -> tuple[int, dict]:
    """The exit code and JSON card of the whole run."""
    folder = tmp_path_factory.mktemp("unsharded")
    code = run_gate(folder, *GATE, "--bias-report=card.json")
    return code, json.loads((folder / "card.json").read_text())


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> tuple[Path, list[int]]:
    """The folder holding ``shard-1.json`` and ``shard-2.json`` (the same run in two shards, options reordered
    in the second), and the shards' exit codes."""
    folder = tmp_path_factory.mktemp("shards")
    codes = [run_gate(folder, *GATE, "--bias-shard=1/2", "--bias-report=shard-1.json"),
             run_gate(folder, *reversed(GATE), "--bias-shard=2/2", "--bias-report=shard-2.json")]
    return folder, codes
