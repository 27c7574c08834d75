"""``bias-suite render CARD.json --report PATH…``: a JSON card in any format again (Markdown, JSON, HTML).

Without ``--report`` it prints the card as the terminal shows it. A card rendered from JSON has no key
scatter plots (the JSON does not hold the projections) — everything else is the run's.
"""

from __future__ import annotations

from pathlib import Path

from bias_suite import options as validate
from bias_suite.errors import BiasSuiteError
from bias_suite.options import argparse_type as checked
from bias_suite.tools.command import CommandParser, fail


def build_parser() -> CommandParser:
    parser = CommandParser(prog="bias-suite render", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("card", metavar="CARD.json", help="a JSON card (--bias-report=card.json, or .json.gz)")
    parser.add_argument("--report", action="append", default=[], type=checked(validate.parse_report_path),
                        metavar="PATH", help="write it: .md, .json or .html (repeatable; default: print it)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every judged row and layer")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dataclasses import replace

    from bias_suite.report.load import load_card

    try:
        card = load_card(args.card)
    except BiasSuiteError as error:
        return fail("render", str(error))
    card = replace(card, reports=tuple(args.report))
    for path in args.report:
        try:
            card.write(Path(path))
        except OSError as error:
            return fail("render", f"cannot write {path}: {error.strerror or error}")
    if not args.report:
        print("\n".join(card.terminal_lines(verbose=args.verbose)))
    return 0
