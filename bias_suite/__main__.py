"""Command line: ``python -m bias_suite {bench,train-demo} [options]``, the package's tools.

Each subcommand delegates to a tool's ``main`` (:mod:`bias_suite.tools`), imported only when it runs.
"""

from __future__ import annotations

import sys

COMMANDS = ("bench", "train-demo")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m bias_suite {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    if argv[0] == "bench":
        from bias_suite.tools.bench import main as tool_main
    else:
        from bias_suite.tools.train_demo.train import main as tool_main
    return tool_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
