"""Command line: ``bias-suite COMMAND [options]`` (or ``python -m bias_suite COMMAND``).

The gate itself runs under pytest (``pytest --model=SPEC``); these commands run around it: ``launch`` runs it
in shards on Ray, Slurm or local processes and merges them, ``merge`` merges shard cards, ``render`` and
``diff`` read JSON cards, ``bench`` and ``train-demo`` are the package's tools. Each command parses its own
options (``bias-suite COMMAND --help``) and is imported only when it runs; usage errors exit 4.
"""

from __future__ import annotations

import importlib
import sys

from bias_suite.tools.command import CommandParser

COMMANDS = {  # name → (module with main(argv), one line of help)
    "launch": ("bias_suite.tools.launch", "run the gate in N shards (--executor ray, slurm or local) and merge them"),
    "merge": ("bias_suite.tools.merge", "merge shard cards (--bias-shard=K/N) into the whole run's card and verdict"),
    "render": ("bias_suite.tools.render", "write a JSON card again as Markdown, JSON or HTML"),
    "diff": ("bias_suite.tools.diff", "paired changes between two JSON cards, biggest (in CI widths) first"),
    "bench": ("bias_suite.tools.bench", "speed and memory of capture and of the metrics"),
    "train-demo": ("bias_suite.tools.train_demo.train", "train the two shipped demonstrator checkpoints on CPU"),
}


def build_parser() -> CommandParser:
    from bias_suite import __version__

    parser = CommandParser(prog="bias-suite", description="Intrinsic text bias of multimodal LLMs: the commands "
                           "around the pytest gate (pytest --model=SPEC).",
                           epilog="bias-suite COMMAND --help describes each command.")
    parser.add_argument("--version", action="version", version=f"bias-suite {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] in ("-h", "--help", "--version"):
            parser.parse_args(argv[:1])  # prints and exits 0
        parser.error(f"unknown command {argv[0]!r}" if argv else "give a command")
    module, _ = COMMANDS[argv[0]]
    return importlib.import_module(module).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
