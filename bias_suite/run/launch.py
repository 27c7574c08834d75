"""``bias-suite launch``: a gate run in N shards on an engine (:mod:`bias_suite.run.executors`), merged.

Each shard runs ``python -m pytest -p bias_suite.plugin <gate options> --bias-shard=K/N`` in the caller's
working directory; a shard that fails (an exit code that is not a verdict, or no card) runs once more; the
cards are kept in ``shard_dir`` and merged (:mod:`bias_suite.run.merge`) into one card, one verdict and one
exit code — those of the unsharded run. A shard that failed twice is in the card (its cases are errors,
the run is at best INCONCLUSIVE) and in the exit code, never dropped. A bless happens once, at the merge.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bias_suite.run.executors import Executor, LaunchError, ShardJob, ShardOutcome, run_with_retry
from bias_suite.run.finish import RunOutcome
from bias_suite.run.merge import MergeOptions, merge_shards, read_shard

# Gate options the launcher owns: given after --, they would make every shard write or bless on its own.
OWNED = {"--bias-report": "--report PATH (the merged card)", "--bias-shard": "--shards N",
         "--update-thresholds": "--update-thresholds (the merge blesses)", "--bias-update-thresholds": None,
         "--reason": "--reason TEXT", "--bias-reason": None, "--accept-regression": "--accept-regression",
         "--bias-accept-regression": None}


def check_gate_args(gate_args: Sequence[str]) -> None:
    """Refuse the options after ``--`` that belong to the launcher, naming its own spelling."""
    for arg in gate_args:
        name = arg.split("=", 1)[0]
        if name in OWNED:
            own = OWNED[name] or OWNED["--" + name.removeprefix("--bias-")]
            raise LaunchError(f"{name} is the launcher's: pass {own} before --, not after it")


def gate_option(gate_args: Sequence[str], name: str, default: str | None = None) -> str | None:
    """The last value given to ``--NAME`` or ``--bias-NAME`` among the gate options (``=`` or a separate word)."""
    value = default
    spellings = {f"--{name}", f"--bias-{name}"}
    for position, arg in enumerate(gate_args):
        option, equals, given = arg.partition("=")
        if option in spellings:
            value = given if equals else (gate_args[position + 1] if position + 1 < len(gate_args) else value)
    return value


def wants_gpu(gate_args: Sequence[str]) -> bool | None:
    """Whether each shard needs a GPU: ``--device cuda[:N]`` yes, ``cpu`` no, ``auto`` where there is one."""
    device = gate_option(gate_args, "device", "auto")
    return None if device == "auto" else device.startswith("cuda")


@dataclass(frozen=True)
class LaunchOptions:
    """What ``bias-suite launch`` was asked: N shards of the gate options, the merged reports, and a bless."""

    shards: int
    gate_args: tuple[str, ...]
    reports: tuple[str, ...] = ()
    retries: int = 1
    update: bool = False
    reason: str | None = None
    accept_regression: bool = False


@dataclass(frozen=True)
class LaunchResult:
    """Every shard's outcome, the merged run's (None when no shard wrote a card) and the exit code."""

    shards: tuple[ShardOutcome, ...]
    outcome: RunOutcome | None
    exit_code: int
    cards: tuple[Path, ...]


def launch(options: LaunchOptions, executor: Executor, shard_dir: Path,
           report: Callable[[str], None] | None = None) -> LaunchResult:
    """Run the shards on ``executor``, keep their cards in ``shard_dir``, merge them in this directory."""
    if options.shards < 1:
        raise LaunchError(f"--shards {options.shards}: run at least one shard")
    check_gate_args(options.gate_args)
    jobs = [ShardJob(index, options.shards, tuple(options.gate_args), os.getcwd())
            for index in range(1, options.shards + 1)]
    with executor:
        outcomes = run_with_retry(executor, jobs, options.retries, report)
    shard_dir.mkdir(parents=True, exist_ok=True)
    cards, failed = [], {}
    for outcome in outcomes:
        if outcome.failed:
            failed[outcome.index] = f"{outcome.describe()} after {outcome.attempts} attempt(s)" + _last_line(outcome)
            continue
        path = shard_dir / f"shard-{outcome.index}-of-{options.shards}.json"
        path.write_text(outcome.card, encoding="utf-8")
        cards.append(path)
    if not cards:
        # every shard stopped the same way before a verdict (a usage error in the gate options: 4): say so
        codes = {outcome.returncode for outcome in outcomes}
        code = codes.pop() if len(codes) == 1 and codes <= {2, 3, 4, 5} else 1
        return LaunchResult(tuple(outcomes), None, code, ())
    merged = merge_shards([read_shard(path) for path in cards], MergeOptions(
        reports=tuple(options.reports), update=options.update, reason=options.reason,
        accept_regression=options.accept_regression, failed=failed))
    return LaunchResult(tuple(outcomes), merged, merged.exit_code, tuple(cards))


def _last_line(outcome: ShardOutcome) -> str:
    lines = [line for line in outcome.output_tail.strip().splitlines() if line.strip()]
    return f": {lines[-1][:300]}" if lines and outcome.returncode is not None else ""
