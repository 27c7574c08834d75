"""Running a gate run's shards on existing engines: local subprocesses, Ray tasks, a Slurm job array.

Every engine runs the same job body, :func:`run_shard`: one shard's ``python -m pytest -p bias_suite.plugin
<gate options> --bias-shard=K/N --bias-report=<a temporary JSON card>`` in the caller's working directory,
with the interpreter the engine runs it under. It never raises for an exit code — 1 (FAIL), 6
(INCONCLUSIVE) and 7 (NO BASELINE) are results, not failures — and returns a :class:`ShardOutcome` with the
card's text, so that no shared filesystem is needed between a worker and the launcher. :func:`run_with_retry`
runs the jobs on an engine and runs every shard that failed (an exit code that is not a verdict, or no
card) once more; a shard that fails twice stays in the outcomes, never dropped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from bias_suite.errors import BiasSuiteError
from bias_suite.vocabulary import Verdict

VERDICT_CODES = tuple(sorted({verdict.exit_code for verdict in Verdict}))  # 0, 1, 6, 7
OUTPUT_TAIL = 4000  # characters of a shard's output kept for the launcher's report
# Not handed to a shard's pytest: a launcher running inside pytest-xdist or Ray must not make the shard think
# it is an xdist worker, or hand it the token of a cluster it does not talk to.
PRIVATE_VARIABLES = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID",
                     "PYTEST_CURRENT_TEST", "RAY_AUTH_TOKEN", "RAY_AUTH_MODE")


class LaunchError(BiasSuiteError, ValueError):
    """The shards cannot run as asked (no cluster at the address, no GPU in it, no engine installed, gate
    options that belong to the launcher)."""


@dataclass(frozen=True)
class ShardJob:
    """One shard to run: shard ``index`` of ``count`` (1-based) with the gate's options, in ``cwd``, with
    ``env`` set on top of the worker's own environment."""

    index: int
    count: int
    gate_args: tuple[str, ...]
    cwd: str
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def command(self, report: str) -> list[str]:
        """The shard's pytest command line, under the interpreter running it."""
        return [sys.executable, "-m", "pytest", "-p", "bias_suite.plugin", "-p", "no:cacheprovider",
                *self.gate_args, f"--bias-shard={self.label}", f"--bias-report={report}"]


@dataclass(frozen=True)
class ShardOutcome:
    """How one shard ended: its exit code (None: it did not run to an exit), the tail of its output, the
    text of its JSON card, how many attempts it took, how long the last one ran and where."""

    index: int
    returncode: int | None
    output_tail: str
    card: str | None
    attempts: int = 1
    seconds: float = 0.0
    where: str = ""

    @property
    def failed(self) -> bool:
        """No verdict: an exit code that is not one of 0, 1, 6, 7, or no card."""
        return self.returncode not in VERDICT_CODES or self.card is None

    def describe(self) -> str:
        """``exit code 7 (NO BASELINE)``, ``exit code 3``, ``exit code 0 but no card``, ``did not run: …``."""
        if self.returncode is None:
            last = self.output_tail.strip().splitlines()[-1:] or ["no output"]
            return f"did not run to an exit: {last[0][:300]}"
        verdicts = {verdict.exit_code: verdict.value for verdict in Verdict}
        named = f" ({verdicts[self.returncode]})" if self.returncode in verdicts else ""
        text = f"exit code {self.returncode}{named}"
        return text + (" but wrote no card" if self.card is None and self.returncode in VERDICT_CODES else "")


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment for a shard's pytest, without :data:`PRIVATE_VARIABLES`, with ``extra``."""
    env = {name: value for name, value in os.environ.items() if name not in PRIVATE_VARIABLES}
    env.update(extra)
    return env


def run_shard(job: ShardJob) -> ShardOutcome:
    """Run one shard where the engine put this call, and return how it ended (never raises for an exit code).

    The card is written to a temporary folder of this worker and returned as text: the worker and the
    launcher need not share a filesystem."""
    started = time.perf_counter()
    where = socket.gethostname()
    with tempfile.TemporaryDirectory(prefix="bias-shard-") as folder:
        report = Path(folder) / f"shard-{job.index}-of-{job.count}.json"
        try:
            completed = subprocess.run(job.command(str(report)), cwd=job.cwd, env=child_environment(job.env),
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                       check=False)
        except OSError as error:  # the working directory or the interpreter is missing on this node
            return ShardOutcome(job.index, None, f"{type(error).__name__}: {error}", None,
                                seconds=time.perf_counter() - started, where=where)
        card = report.read_text(encoding="utf-8") if report.is_file() else None
    return ShardOutcome(job.index, completed.returncode, completed.stdout[-OUTPUT_TAIL:], card,
                        seconds=time.perf_counter() - started, where=where)


class Executor(Protocol):
    """An engine that runs shard jobs: entered once around every attempt (a Ray cluster starts and stops
    once), :meth:`run` runs a batch of jobs and returns one outcome per job, in order."""

    name: str

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc_info) -> None: ...

    def run(self, jobs: Sequence[ShardJob]) -> list[ShardOutcome]: ...


def run_with_retry(executor: Executor, jobs: Sequence[ShardJob], retries: int = 1,
                   report=None) -> list[ShardOutcome]:
    """Every job's outcome, running each failed shard again up to ``retries`` times (``report`` is told of
    each retry, e.g. ``print``)."""
    outcomes = {outcome.index: outcome for outcome in executor.run(jobs)}
    for attempt in range(2, retries + 2):
        again = [job for job in jobs if outcomes[job.index].failed]
        if not again:
            break
        if report is not None:
            report("retrying " + "; ".join(f"shard {job.label} ({outcomes[job.index].describe()})" for job in again))
        for outcome in executor.run(again):
            outcomes[outcome.index] = replace(outcome, attempts=attempt)
    return [outcomes[job.index] for job in jobs]
