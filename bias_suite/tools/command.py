"""What every ``bias-suite`` subcommand shares: a parser whose usage errors exit 4, as the gate's do."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

USAGE_ERROR = 4  # the gate's exit code for a usage error (pytest's own)


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that exits 4 on a usage error (argparse's own convention is 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def fail(command: str, message: str) -> int:
    """Say why ``command`` cannot go on, and return the usage-error exit code."""
    print(f"bias-suite {command}: {message}", file=sys.stderr)
    return USAGE_ERROR
