"""``bias-suite diff OLD.json NEW.json``: what changed between two runs, biggest change first.

Every pooled metric of NEW is paired with the same model (else the old card's only model), benchmark, layer
and metric in OLD; the change is signed so that positive means more text bias, with a 95% interval from
the paired leave-one-sample-out values (jackknife-t; Newcombe for rates), or the paired bootstrap replicates
where a row has none (same samples and settings; otherwise the point change only, and the difference is
named). Changes are sorted by their size in units of their interval's width: a change several widths from zero
is a real one, a fraction of a width is noise.
"""

from __future__ import annotations

import math

from tabulate import tabulate

from bias_suite.errors import BiasSuiteError
from bias_suite.options import argparse_type as checked
from bias_suite.tools.command import CommandParser, fail

HEADERS = ["model", "benchmark", "layer", "metric", "old → new", "change [95% CI]", "× CI width"]


def paired(old_path: str, new_path: str):
    """``(changes, problems)``: every change of NEW against OLD, biggest in CI widths first, and why the two
    runs do not pair sample by sample (empty when they do)."""
    from bias_suite.gate.baseline import incompatibilities, load_baseline
    from bias_suite.gate.changes import paired_change

    old, new = load_baseline(old_path, "old card"), load_baseline(new_path, "new card")
    problems = incompatibilities(old, new.benchmarks, new.settings)
    not_comparable = f"not comparable: {'; '.join(problems)}" if problems else None
    changes = []
    for (model, benchmark, layer, metric), row in new.rows.items():
        partner = old.rows.get((old.partner_of(model), benchmark, layer, metric))
        if partner is None or row.value is None or partner.value is None or metric == "*":
            continue
        if not (math.isfinite(row.value) and math.isfinite(partner.value)):
            continue
        changes.append(paired_change(row, partner, None, "baseline", not_comparable))
    return sorted(changes, key=lambda change: -abs(in_widths(change) or 0.0)), problems


def in_widths(change) -> float | None:
    """The change in units of its interval's width (None without an interval; ±inf for a zero-width one)."""
    if change.ci is None or not all(math.isfinite(x) for x in (change.increase, *change.ci)):
        return None
    width = change.ci[1] - change.ci[0]
    if width <= 0:
        return 0.0 if change.increase == 0 else math.copysign(math.inf, change.increase)
    return change.increase / width


def build_parser() -> CommandParser:
    parser = CommandParser(prog="bias-suite diff", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("old", metavar="OLD.json", help="the earlier run's JSON card")
    parser.add_argument("new", metavar="NEW.json", help="the later run's JSON card")
    parser.add_argument("--limit", type=checked(int), default=30, metavar="N",
                        help="show the N biggest changes (default 30; 0: all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bias_suite.report.tables import format_number

    try:
        changes, problems = paired(args.old, args.new)
    except BiasSuiteError as error:
        return fail("diff", str(error))
    shown = changes if args.limit <= 0 else changes[:args.limit]
    rows = []
    for change in shown:
        ci = (f" [{format_number(change.ci[0], sign=True)}, {format_number(change.ci[1], sign=True)}]"
              if change.ci else "")
        size = in_widths(change)
        rows.append([change.model if change.model == change.baseline_model else f"{change.baseline_model} → "
                     f"{change.model}", change.benchmark, "" if change.layer is None else change.layer, change.metric,
                     f"{format_number(change.baseline_value)} → {format_number(change.value)}",
                     f"{format_number(change.increase, sign=True)}{ci}",
                     "" if size is None else format_number(size, sign=True)])
    print(f"{len(changes)} paired metrics; the {len(shown)} biggest changes in units of their 95% interval's width "
          "(positive: more text bias):")
    print(tabulate(rows, headers=HEADERS, tablefmt="simple", disable_numparse=True))
    for problem in problems:
        print(f"not paired sample by sample: {problem}")
    return 0
