"""``bias-suite`` (``python -m bias_suite``): one subcommand per job, each with its own --help; usage errors
exit 4, as the gate's do."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bias_suite.__main__ import COMMANDS, main

SUBCOMMANDS = ("bench", "train-demo", "merge", "render", "diff", "launch")


def test_help_lists_every_subcommand():
    completed = subprocess.run([sys.executable, "-m", "bias_suite", "--help"], capture_output=True, text=True,
                               check=False, timeout=120)
    assert completed.returncode == 0
    assert completed.stdout.startswith("usage: bias-suite")
    for name in SUBCOMMANDS:
        assert f"    {name}" in completed.stdout
    assert set(COMMANDS) == set(SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_its_own_help(name, capsys):
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    assert f"bias_suite {name}" in capsys.readouterr().out.replace("bias-suite", "bias_suite")


@pytest.mark.parametrize("argv", [["nonsense"], []], ids=["unknown", "none"])
def test_a_missing_or_unknown_subcommand_prints_the_usage_and_exits_4(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 4
    assert "usage: bias-suite [-h] [--version] COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["merge"], "the following arguments are required: SHARD.json"),
    (["merge", "a.json", "--update-thresholds"], "--update-thresholds needs --reason TEXT"),
    (["merge", "a.json", "--report=card.txt"], "the report format comes from the suffix"),
    (["launch", "--shards=2"], "give the gate's options after --"),
    (["launch", "--shards=0", "--", "--model=x"], "'0' is not a positive integer"),
    (["launch", "--executor=kubernetes", "--shards=2", "--", "--model=x"], "invalid choice: 'kubernetes'"),
])
def test_a_bad_command_line_names_the_culprit_and_exits_4(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 4
    assert message in capsys.readouterr().err


def test_a_launch_with_a_launcher_option_after_the_dashes_exits_4(capsys):
    assert main(["launch", "--shards=2", "--", "--model=x", "--bias-report=card.json"]) == 4
    assert "--bias-report is the launcher's: pass --report PATH (the merged card) before --" in capsys.readouterr().err
