"""Command line: ``python -m bias_suite bench`` (more subcommands arrive with later issues)."""

from __future__ import annotations

import sys

COMMANDS = ("bench",)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m bias_suite {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    if argv[0] == "bench":
        from bias_suite.bench import main as bench_main

        return bench_main(argv[1:])
    return 2


if __name__ == "__main__":
    sys.exit(main())
