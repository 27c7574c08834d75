"""Turn measured statistics into gated report rows (metric × bound → status)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bias_suite.gate import METRIC_DIRECTIONS, ResultRow, judge, worst
from bias_suite.metrics import AttentionResult, Estimate, KeySpaceResult
from bias_suite.thresholds import ThresholdFile


def assess(
    threshold: ThresholdFile | None, model: str, benchmark: str, layer: int | None, head: int | None,
    metric: str, estimate: Estimate, n_layers: int,
) -> ResultRow:
    """One row. Only pooled values (``head=None``) are gated; per-head rows are ``unchecked`` detail."""
    rules = threshold.rules_for(metric, benchmark, layer, n_layers) if threshold is not None and head is None else []
    judged = [(judge(estimate.value, estimate.ci, rule.bound), rule) for rule in rules]
    if not judged:
        status = judge(estimate.value, estimate.ci, None)
        return ResultRow(model, benchmark, layer, head, metric, estimate.value, estimate.ci, None, status,
                         METRIC_DIRECTIONS.get(metric))
    status = worst(s for s, _ in judged)
    rule = next(r for s, r in judged if s == status)
    return ResultRow(model, benchmark, layer, head, metric, estimate.value, estimate.ci, rule.bound.limit, status,
                     rule.bound.direction, f"{threshold.path.name} rules[{rule.index}]: {rule.bound.describe()}")


def keyspace_rows(threshold, model: str, benchmark: str, results: Iterable[KeySpaceResult], n_layers: int) -> list[ResultRow]:
    return [assess(threshold, model, benchmark, result.layer, result.head, name, estimate, n_layers)
            for result in results for name, estimate in result.metrics.items()]


def attention_rows(threshold, model: str, benchmark: str, results: Mapping[str, AttentionResult], n_layers: int) -> list[ResultRow]:
    return [assess(threshold, model, benchmark, result.layer, None, f"{name}.{query_set}", estimate, n_layers)
            for query_set, result in results.items() for name, estimate in result.metrics.items()]


def behaviour_rows(threshold, model: str, benchmark: str, results: Mapping[str, Estimate], n_layers: int) -> list[ResultRow]:
    return [assess(threshold, model, benchmark, None, None, name, estimate, n_layers) for name, estimate in results.items()]


def verdict(rows: Iterable[ResultRow]) -> tuple[str, str]:
    """``(worst status, message listing every gated problem)`` for a test's rows."""
    rows = list(rows)
    status = worst(row.status for row in rows)
    problems = [row for row in rows if row.status in ("fail", "warn", "error")]
    lines = []
    for row in problems:
        ci = f" [{row.ci[0]:.4g}, {row.ci[1]:.4g}]" if row.ci else ""
        where = f"{row.model} {row.benchmark}" + (f" L{row.layer}" if row.layer is not None else "")
        lines.append(f"{row.status.upper()}: {where} {row.metric} = {row.value:.4g}{ci} {row.message}".rstrip())
    return status, "\n".join(lines)
