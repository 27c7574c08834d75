"""``bias-suite merge SHARD.json… --report PATH…``: the shards of one gate run, merged into the whole run.

One card in every format, one verdict per model and one exit code — those of the unsharded run with the same
options (:mod:`bias_suite.run.merge`). Refuses (exit 4) a missing or duplicated shard, shards of another run
(manifest, settings, suite version) and threshold files that changed since the shards ran, naming them.
``--update-thresholds --reason TEXT`` blesses the merged run as ``pytest --update-thresholds`` blesses a run.
"""

from __future__ import annotations

from bias_suite import options as validate
from bias_suite.errors import BiasSuiteError
from bias_suite.options import argparse_type as checked
from bias_suite.options import family_map, unwritable_destinations
from bias_suite.tools.command import CommandParser, fail


def build_parser() -> CommandParser:
    parser = CommandParser(prog="bias-suite merge", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("shards", nargs="+", metavar="SHARD.json", help="every shard's JSON card (--bias-shard=K/N)")
    parser.add_argument("--report", action="append", default=[], type=checked(validate.parse_report_path),
                        metavar="PATH", help="write the merged card: .md, .json or .html (repeatable)")
    parser.add_argument("--update-thresholds", action="store_true",
                        help="bless the merged run: write the next version of each model's family file")
    parser.add_argument("--reason", metavar="TEXT", help="why the thresholds change (needed to bless)")
    parser.add_argument("--accept-regression", action="store_true",
                        help="with --update-thresholds: bless even though the run is worse than the current file")
    parser.add_argument("--family", action="append", metavar="[SPEC=]NAME",
                        help="the family a new file is blessed for (default: as the shards declared)")
    parser.add_argument("--thresholds", metavar="PATH", help="threshold folder or FILE.yaml (default: the shards')")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every judged row and layer")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.update_thresholds and not (args.reason or "").strip():
        parser.error("--update-thresholds needs --reason TEXT: say why the thresholds change")
    if args.accept_regression and not args.update_thresholds:
        parser.error("--accept-regression only means something with --update-thresholds")
    from bias_suite.run.merge import MergeOptions, merge_shards, read_shard

    try:
        cards = [read_shard(path) for path in args.shards]
        blessed = (args.thresholds or cards[0].shard.manifest.options.thresholds) if args.update_thresholds else None
        problems = unwritable_destinations(args.report, blessed)
        if problems:
            return fail("merge", "cannot write " + "; ".join(problems))
        families = family_map(args.family)
        outcome = merge_shards(cards, MergeOptions(
            reports=tuple(args.report), update=args.update_thresholds, reason=args.reason,
            accept_regression=args.accept_regression, families=families, thresholds=args.thresholds))
    except (BiasSuiteError, ValueError) as error:
        return fail("merge", str(error))
    print("\n".join(outcome.card.terminal_lines(verbose=args.verbose)))
    return outcome.exit_code
