"""Judging a run: each measured estimate against the rules of the model's threshold file.

:class:`Gauge` turns the estimates of one model × benchmark (× layer) into :class:`ResultRow` s with a
status (see :mod:`bias_suite.gate.rows`); :func:`verdict` sums up the rows of one gate item.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bias_suite.gate.rows import Bound, ResultRow, judge, worst
from bias_suite.metrics.registry import spec_of
from bias_suite.vocabulary import Status

if TYPE_CHECKING:
    from bias_suite.gate.thresholds import Rule, ThresholdFile
    from bias_suite.metrics import AttentionResult, Estimate, KeySpaceResult


@dataclass(frozen=True)
class Gauge:
    """What rows of one run are judged against: the model's threshold file and the run's settings."""

    threshold: ThresholdFile | None
    model: str
    n_layers: int
    settings: Mapping[str, object]  # RunSettings.recorded()
    benchmark_hashes: Mapping[str, str]

    def row(self, benchmark: str, layer: int | None, head: int | None, metric: str, estimate: Estimate) -> ResultRow:
        """One row. Only pooled values (``head=None``) are gated; per-head rows are ``unchecked`` detail.
        ``max_increase`` rules are judged later, against a baseline run."""
        direction = spec_of(metric).direction
        undefined = f"{metric} could not be computed: {estimate.undefined_because or 'NaN or inf'}"
        base = ResultRow(self.model, benchmark, layer, head, metric, estimate.value, estimate.ci, Status.UNCHECKED,
                         direction=direction, replicates=estimate.replicates if head is None else None,
                         message=undefined if estimate.undefined_because else "")
        rules = [] if self.threshold is None or head is not None else [
            rule for rule in self.threshold.rules_for(metric, benchmark, layer, self.n_layers) if not rule.on_change]
        if not rules:
            return base
        judged = []
        for rule in rules:
            problem = self.threshold.settings_problem(rule, self.settings, benchmark,
                                                      self.benchmark_hashes.get(benchmark))
            status = Status.ERROR if problem else judge(estimate.value, estimate.ci, rule.bound)
            judged.append((status, rule, problem or ""))
        status, rule, problem = max(judged, key=lambda item: item[0].severity)
        message = problem or ("" if status != Status.ERROR else undefined)
        return replace(base, status=status, bound=rule.bound.limit, direction=rule.bound.direction,
                       rule=rule_reference(self.threshold, rule), message=message)

    def judge_keyspace(self, benchmark: str, results: Sequence[KeySpaceResult]) -> list[ResultRow]:
        return [self.row(benchmark, result.layer, result.head, name, estimate)
                for result in results for name, estimate in result.metrics.items()]

    def judge_attention(self, benchmark: str, results: Mapping[str, AttentionResult]) -> list[ResultRow]:
        return [self.row(benchmark, result.layer, None, f"{name}.{query_set}", estimate)
                for query_set, result in results.items() for name, estimate in result.metrics.items()]

    def judge_behaviour(self, benchmark: str, results: Mapping[str, Estimate]) -> list[ResultRow]:
        return [self.row(benchmark, None, None, name, estimate) for name, estimate in results.items()]


def rule_reference(threshold: ThresholdFile, rule: Rule) -> str:
    return f"{threshold.name} rules[{rule.index}]"


def verdict(rows: Iterable[ResultRow]) -> tuple[Status, str]:
    """``(worst status, message listing every gated problem)`` for a test's rows."""
    rows = list(rows)
    status = worst(row.status for row in rows)
    lines = []
    for row in rows:
        if row.status not in (Status.FAIL, Status.WARN, Status.ERROR):
            continue
        ci = f" [{row.ci[0]:.4g}, {row.ci[1]:.4g}]" if row.ci else ""
        where = f"{row.model} {row.benchmark}" + (f" L{row.layer}" if row.layer is not None else "")
        value = "nan" if row.value is None else f"{row.value:.4g}"
        bound = f" {row.rule}: {Bound(row.bound, row.direction).describe()}" if row.bound is not None else ""
        lines.append(f"{row.status.upper()}: {where} {row.metric} = {value}{ci}{bound} {row.message}".rstrip())
    return status, "\n".join(lines)
