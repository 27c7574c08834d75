"""Judging a run: each measured estimate against the rules of the model's threshold file.

:class:`Gauge` turns the estimates of one model × benchmark (× layer) into :class:`ResultRow` s with a
status (see :mod:`bias_suite.gate.rows`); :func:`verdict` sums up the rows of one gate item.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bias_suite.gate.changes import Change
from bias_suite.gate.rows import Bound, ResultRow, judge, worst
from bias_suite.metrics import intervals
from bias_suite.metrics.registry import MIN_GATED_SAMPLES, spec_of
from bias_suite.vocabulary import Status, Verdict

if TYPE_CHECKING:
    from bias_suite.gate.thresholds import Rule, ThresholdFile
    from bias_suite.metrics import AttentionResult, Estimate, KeySpaceResult


@dataclass(frozen=True)
class Gauge:
    """What the rows of one model are judged against: its threshold file, the generic sanity bounds, and the
    run's comparability key.

    settings: the run's comparability key (:meth:`bias_suite.options.RunSettings.recorded` plus dtype,
    attention backend, processor, torch and transformers); a rule whose file was measured with another value
    of a key that affects it is INCONCLUSIVE, naming the key. n_samples: samples per benchmark; a gated row
    on fewer than :data:`~bias_suite.metrics.registry.MIN_GATED_SAMPLES` is INCONCLUSIVE.
    """

    threshold: ThresholdFile | None
    model: str
    n_layers: int
    settings: Mapping[str, object]
    benchmark_hashes: Mapping[str, str]
    sanity: ThresholdFile | None = None
    n_samples: Mapping[str, int] = field(default_factory=dict)

    def _rules(self, metric: str, benchmark: str, layer: int | None) -> list[tuple[ThresholdFile, Rule]]:
        files = [f for f in (self.threshold, self.sanity) if f is not None]
        return [(file, rule) for file in files for rule in file.rules_for(metric, benchmark, layer, self.n_layers)
                if not rule.on_change]

    def row(self, benchmark: str, layer: int | None, head: int | None, metric: str, estimate: Estimate) -> ResultRow:
        """One row. Only pooled values (``head=None``) are gated; per-head rows are ``unchecked`` detail.
        ``max_increase`` rules bound paired changes (:mod:`bias_suite.gate.changes`), not values."""
        direction = spec_of(metric).direction
        undefined = f"{metric} could not be computed: {estimate.undefined_because or 'NaN or inf'}"
        base = ResultRow(self.model, benchmark, layer, head, metric, estimate.value, estimate.ci, Status.UNCHECKED,
                         direction=direction, replicates=estimate.replicates if head is None else None,
                         message=undefined if estimate.undefined_because else "",
                         jackknife=estimate.jackknife if head is None else None, interval=estimate.interval,
                         detectable=estimate.detectable(direction))
        rules = [] if head is not None else self._rules(metric, benchmark, layer)
        if not rules:
            return base
        too_few = self.n_samples.get(benchmark)
        judged, not_applied = [], []
        for file, rule in rules:
            cannot = unfailable(rule.bound, estimate)
            if cannot and not (file is self.threshold and file.baselines):
                # a generic sanity bound that this many items cannot test: shown as not applied, never a pass
                not_applied.append(f"{rule_reference(file, rule)} not applied: {cannot}")
                continue
            problem = file.settings_problem(rule, self.settings, benchmark, self.benchmark_hashes.get(benchmark),
                                            too_few)
            if not problem and too_few is not None and too_few < MIN_GATED_SAMPLES:
                problem = (f"not comparable: {too_few} samples of {benchmark}, fewer than the {MIN_GATED_SAMPLES} a "
                           f"gated row needs (run with --samples {MIN_GATED_SAMPLES} or more)")
            status = judge(estimate.value, estimate.ci, rule.bound)
            if (problem := problem or cannot) and status is not Status.ERROR:
                status = Status.INCONCLUSIVE
            judged.append((status, file, rule, problem or ""))
        if not judged:
            return replace(base, message="; ".join(filter(None, (base.message, *not_applied))))
        status, file, rule, problem = max(judged, key=lambda item: item[0].severity)
        message = undefined if status is Status.ERROR else problem
        return replace(base, status=status, bound=rule.bound.limit, direction=rule.bound.direction,
                       rule=rule_reference(file, rule), message=message,
                       detectable=estimate.detectable(rule.bound.direction))

    def baselines(self, row: ResultRow) -> bool:
        """True when ``row`` was judged by a rule of the model's own (baselining) threshold file."""
        return (self.threshold is not None and self.threshold.baselines and row.rule is not None
                and row.rule.startswith(f"{self.threshold.name} rules["))

    def judge_keyspace(self, benchmark: str, results: Sequence[KeySpaceResult]) -> list[ResultRow]:
        return [self.row(benchmark, result.layer, result.head, name, estimate)
                for result in results for name, estimate in result.metrics.items()]

    def judge_attention(self, benchmark: str, results: Mapping[str, AttentionResult]) -> list[ResultRow]:
        return [self.row(benchmark, result.layer, None, f"{name}.{query_set}", estimate)
                for query_set, result in results.items() for name, estimate in result.metrics.items()]

    def judge_behaviour(self, benchmark: str, results: Mapping[str, Estimate]) -> list[ResultRow]:
        return [self.row(benchmark, None, None, name, estimate) for name, estimate in results.items()]


def unfailable(bound: Bound, estimate: Estimate) -> str:
    """Why ``bound`` can never fail on this estimate's items (empty when it can). A rate with an exact
    interval needs enough items before even the most extreme outcome has its whole interval beyond a bound:
    ``≤ 0.95`` cannot fail on 16 items (16 of 16 reaches down to 0.79), so that check would pass anything."""
    if estimate.interval != intervals.CLOPPER_PEARSON or not estimate.n_samples:
        return ""
    n = estimate.n_samples
    reachable, extreme, needed = intervals.rate_bound_reachable(bound.limit, bound.higher_is_worse, n)
    if reachable:
        return ""
    outcome = f"{n} of {n}" if bound.higher_is_worse else f"0 of {n}"
    fix = (f"it needs at least {needed} items: a larger benchmark, or a bound the rate can cross" if needed
           else "no number of items can cross it")
    return (f"a check that cannot fail: {bound.describe()} on {n} items, since even {outcome} has a 95% "
            f"interval reaching {extreme:.3g}; {fix}")


def rule_reference(threshold: ThresholdFile, rule: Rule) -> str:
    return f"{threshold.name} rules[{rule.index}]"


def describe_row(row: ResultRow) -> str:
    """``STATUS: model benchmark L3 metric = value [CI] rule: bound message`` (one line of a verdict)."""
    ci = f" [{row.ci[0]:.4g}, {row.ci[1]:.4g}]" if row.ci else ""
    where = f"{row.model} {row.benchmark}" + (f" L{row.layer}" if row.layer is not None else "")
    value = "nan" if row.value is None else f"{row.value:.4g}"
    bound = f" {row.rule}: {Bound(row.bound, row.direction).describe()}" if row.bound is not None else ""
    return f"{row.status.upper()}: {where} {row.metric} = {value}{ci}{bound} {row.message}".rstrip()


def describe_change(change: Change) -> str:
    """``STATUS: model benchmark L3 metric: baseline → value (change [CI]) against …, tolerance t``."""
    where = f"{change.model} {change.benchmark}" + (f" L{change.layer}" if change.layer is not None else "")
    ci = f" [{change.ci[0]:+.4g}, {change.ci[1]:+.4g}]" if change.ci else ""
    values = ""
    if change.baseline_value is not None and change.value is not None:
        values = f"{change.baseline_value:.4g} → {change.value:.4g} "
    tolerance = f", tolerance {change.bound:.4g} ({change.rule})" if change.bound is not None else ""
    return (f"{change.status.upper()}: {where} {change.metric}: {values}(change {change.increase:+.4g}{ci}) "
            f"against {change.against} {change.baseline_model}{tolerance} {change.message}").rstrip()


def verdict(rows: Iterable[ResultRow]) -> tuple[Status, str]:
    """``(worst status, message listing every gated problem)`` for a test's rows."""
    rows = list(rows)
    status = worst(row.status for row in rows)
    lines = [describe_row(row) for row in rows
             if row.status in (Status.FAIL, Status.WARN, Status.INCONCLUSIVE, Status.ERROR)]
    return status, "\n".join(lines)


def case_verdict(rows: Sequence[ResultRow], changes: Sequence[Change], covered: bool) -> tuple[Verdict, str]:
    """The verdict of one gate case and the message that explains it.

    ``FAIL`` when a row or a change failed; ``INCONCLUSIVE`` when one errored or was inconclusive; ``NO
    BASELINE`` when nothing that baselines the model (its family file, its blessed run, a reference) judged
    the case (``covered`` False); else ``PASS``. The message lists every row and change that is not a pass,
    worst first."""
    statuses = [row.status for row in rows if row.head is None] + [change.status for change in changes]
    lines = [(row.status.severity, describe_row(row)) for row in rows
             if row.status in (Status.FAIL, Status.WARN, Status.INCONCLUSIVE, Status.ERROR)]
    lines += [(change.status.severity, describe_change(change)) for change in changes
              if change.status in (Status.FAIL, Status.INCONCLUSIVE, Status.ERROR)]
    message = "\n".join(line for _, line in sorted(lines, key=lambda item: -item[0]))
    if Status.FAIL in statuses:
        return Verdict.FAIL, message
    if Status.ERROR in statuses or Status.INCONCLUSIVE in statuses:
        return Verdict.INCONCLUSIVE, message
    if not covered:
        return Verdict.NO_BASELINE, message
    return Verdict.PASS, message
