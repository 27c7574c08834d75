"""What every ``bias-suite`` subcommand shares: a parser whose usage errors exit 4, as the gate's do."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

USAGE_ERROR = 4  # the gate's exit code for a usage error (pytest's own)


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that exits 4 on a usage error (argparse's own convention is 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def family_map(values: Sequence[str] | None) -> dict[str, str] | None:
    """``--family NAME`` / ``--family SPEC=NAME`` (repeatable) → model spec (``*``: every model) → family."""
    if not values:
        return None
    found = {}
    for value in values:
        spec, _, family = value.rpartition("=")
        if not family.strip() or (value.count("=") and not spec.strip()):
            raise ValueError(f"--family {value!r}: give NAME, or SPEC=NAME for one model")
        found[spec or "*"] = family
    return found


def fail(command: str, message: str) -> int:
    """Say why ``command`` cannot go on, and return the usage-error exit code."""
    print(f"bias-suite {command}: {message}", file=sys.stderr)
    return USAGE_ERROR


def unwritable_destinations(reports: Sequence[str], thresholds: str | None = None) -> list[str]:
    """Why the report files (and, when blessing, the ``thresholds`` folder or file) could not be written —
    checked before anything runs, as the gate checks them before any model loads."""
    from pathlib import Path

    from bias_suite.options import unwritable

    problems = [problem for path in reports if (problem := unwritable(Path(path)))]
    if thresholds is not None:
        location = Path(thresholds)
        as_file = location.is_file() or location.suffix.lower() in (".yaml", ".yml")
        problem = unwritable(location) if as_file else unwritable(location, directory=True)
        if problem:
            problems.append(problem)
    return problems
