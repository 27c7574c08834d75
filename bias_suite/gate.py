"""The release gate: measured estimates against threshold rules → statuses, rows and verdicts.

* ``fail`` when the whole bootstrap interval lies beyond the bound (noise alone does not flip a release);
* ``warn`` when only the point estimate does;
* ``pass`` otherwise; ``unchecked`` when no rule covers the metric; ``error`` when a gated metric could
  not be computed (NaN/inf) or its rule cannot gate this run (settings it was not made with) — never a
  pass.

Rows stay typed (:class:`ResultRow`) until they cross a process boundary (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bias_suite.metrics.registry import HIGHER_IS_WORSE, spec_of

if TYPE_CHECKING:
    from bias_suite.metrics import AttentionResult, Estimate, KeySpaceResult
    from bias_suite.thresholds import Rule, ThresholdFile

STATUSES = ("pass", "warn", "fail", "error", "unchecked")
SEVERITY = {"unchecked": 0, "pass": 1, "warn": 2, "fail": 3, "error": 4}
REPLICATE_DIGITS = 6  # significant digits kept of each bootstrap replicate in reports


@dataclass(frozen=True)
class Bound:
    """A limit on one metric: ``limit`` with the direction in which values are worse."""

    limit: float
    direction: str  # HIGHER_IS_WORSE or LOWER_IS_WORSE

    @property
    def higher_is_worse(self) -> bool:
        return self.direction == HIGHER_IS_WORSE

    def beyond(self, value: float) -> bool:
        return value > self.limit if self.higher_is_worse else value < self.limit

    def describe(self) -> str:
        return f"{'≤' if self.higher_is_worse else '≥'} {self.limit:.4g}"

    def can_fail(self, natural_range: tuple[float, float]) -> bool:
        """False when no value in the metric's range lies beyond the bound."""
        low, high = natural_range
        return self.limit < high if self.higher_is_worse else self.limit > low

    def margin(self, value: float, ci: tuple[float, float] | None) -> float:
        """How far the interval end nearest to the bound stays inside it (negative: beyond), in the
        metric's units."""
        nearest = value if ci is None else (ci[0] if self.higher_is_worse else ci[1])
        return self.limit - nearest if self.higher_is_worse else nearest - self.limit


@dataclass(frozen=True)
class ResultRow:
    """One line of the report card: a metric of a model × benchmark × layer (× head; None: pooled)."""

    model: str
    benchmark: str
    layer: int | None
    head: int | None
    metric: str
    value: float | None
    ci: tuple[float, float] | None
    status: str
    bound: float | None = None
    direction: str | None = None  # the metric's worse direction (None: descriptive)
    rule: str | None = None  # "file.yaml rules[3]" of the rule that set the status
    message: str = ""  # why a gated row errored
    replicates: tuple[float, ...] | None = field(default=None, compare=False)  # pooled rows, for --bias-baseline

    @property
    def gated(self) -> bool:
        return self.rule is not None

    @property
    def margin(self) -> float | None:
        """Distance from the interval end nearest to the bound to the bound (negative: beyond)."""
        if self.bound is None or self.value is None or self.direction is None:
            return None
        return Bound(self.bound, self.direction).margin(self.value, self.ci)

    @property
    def key(self) -> tuple:
        return (self.model, self.benchmark, self.layer, self.head, self.metric)

    @property
    def sort_key(self) -> tuple:
        return (self.model, self.benchmark, -1 if self.layer is None else self.layer,
                -1 if self.head is None else self.head, self.metric)

    def to_json(self, with_replicates: bool = True) -> dict:
        """A JSON-safe dict (non-finite numbers become null)."""
        def finite(x):
            return x if x is not None and math.isfinite(x) else None

        ci = list(self.ci) if self.ci is not None and all(math.isfinite(x) for x in self.ci) else None
        row = {"model": self.model, "benchmark": self.benchmark, "layer": self.layer, "head": self.head,
               "metric": self.metric, "value": finite(self.value), "ci": ci, "bound": finite(self.bound),
               "status": self.status, "direction": self.direction, "rule": self.rule}
        margin = self.margin
        row["margin"] = finite(margin) if margin is not None else None
        if self.message:
            row["message"] = self.message
        if with_replicates and self.replicates is not None:
            row["replicates"] = [float(f"{x:.{REPLICATE_DIGITS}g}") if math.isfinite(x) else None
                                 for x in self.replicates]
        return row

    @classmethod
    def from_json(cls, row: Mapping) -> ResultRow:
        replicates = row.get("replicates")
        return cls(
            model=row["model"], benchmark=row["benchmark"], layer=row["layer"], head=row["head"], metric=row["metric"],
            value=float("nan") if row["value"] is None else row["value"],
            ci=tuple(row["ci"]) if row.get("ci") else None, status=row["status"], bound=row.get("bound"),
            direction=row.get("direction"), rule=row.get("rule"), message=row.get("message", ""),
            replicates=None if replicates is None else tuple(float("nan") if x is None else x for x in replicates),
        )


def judge(value: float, ci: tuple[float, float] | None, bound: Bound | None) -> str:
    """The gate status of one estimate against one bound (see module docstring)."""
    if bound is None:
        return "unchecked"  # nothing gates it (an undefined descriptive value is shown as such)
    finite = math.isfinite(value) and (ci is None or all(math.isfinite(x) for x in ci))
    if not finite:
        return "error"
    if ci is None:
        return "fail" if bound.beyond(value) else "pass"
    nearest = ci[0] if bound.higher_is_worse else ci[1]
    if bound.beyond(nearest):
        return "fail"
    if bound.beyond(value):
        return "warn"
    return "pass"


def worst(statuses: Iterable[str]) -> str:
    statuses = list(statuses)
    return max(statuses, key=SEVERITY.__getitem__) if statuses else "unchecked"


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
        base = ResultRow(self.model, benchmark, layer, head, metric, estimate.value, estimate.ci, "unchecked",
                         direction=direction, replicates=estimate.replicates if head is None else None)
        rules = [] if self.threshold is None or head is not None else [
            rule for rule in self.threshold.rules_for(metric, benchmark, layer, self.n_layers) if not rule.on_change]
        if not rules:
            return base
        judged = []
        for rule in rules:
            problem = self.threshold.settings_problem(rule, self.settings, benchmark,
                                                      self.benchmark_hashes.get(benchmark))
            status = "error" if problem else judge(estimate.value, estimate.ci, rule.bound)
            judged.append((status, rule, problem or ""))
        status, rule, problem = max(judged, key=lambda item: SEVERITY[item[0]])
        undefined = f"{metric} could not be computed: {estimate.undefined_because or 'NaN or inf'}"
        message = problem or ("" if status != "error" else undefined)
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


def verdict(rows: Iterable[ResultRow]) -> tuple[str, str]:
    """``(worst status, message listing every gated problem)`` for a test's rows."""
    rows = list(rows)
    status = worst(row.status for row in rows)
    lines = []
    for row in rows:
        if row.status not in ("fail", "warn", "error"):
            continue
        ci = f" [{row.ci[0]:.4g}, {row.ci[1]:.4g}]" if row.ci else ""
        where = f"{row.model} {row.benchmark}" + (f" L{row.layer}" if row.layer is not None else "")
        value = "nan" if row.value is None else f"{row.value:.4g}"
        bound = f" {row.rule}: {Bound(row.bound, row.direction).describe()}" if row.bound is not None else ""
        lines.append(f"{row.status.upper()}: {where} {row.metric} = {value}{ci}{bound} {row.message}".rstrip())
    return status, "\n".join(lines)
