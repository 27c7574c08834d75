"""The bias report card: a terminal summary, and Markdown / JSON / HTML files.

``ReportCard.build(record, …)`` turns the merged rows into a data object; ``.lines`` is what the terminal
shows, ``.write(path)`` picks the format from the suffix. Every format explains a verdict: which file
gated each model and how it was chosen, every gated row with its bound, its direction and the margin to
it, benchmark sizes, and — with ``--bias-baseline`` — the change of each metric against a baseline run.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tabulate import tabulate

from bias_suite import __version__
from bias_suite.gate.baseline import Change
from bias_suite.gate.records import BenchmarkRecord, GatedBy, KeyProjection, ModelRecord
from bias_suite.gate.rows import Bound, ResultRow, worst
from bias_suite.report.tables import (
    BEHAVIOUR_HEADERS,
    CARD_METRICS,
    CHANGE_HEADERS,
    GATED_HEADERS,
    arrow,
    escape_markdown,
    format_estimate,
    format_number,
    metric_family,
    metric_header,
)

SCHEMA_VERSION = 2
TERMINAL_GATED_ROWS = 20  # gated rows the terminal lists (worst margin first); files list them all
ENVIRONMENT_KEYS = ("python", "torch", "transformers", "device", "dtype", "attn_implementation")


@dataclass(frozen=True)
class ReportCard:
    """Everything one run measured, with gate statuses and how each model was gated."""

    rows: tuple[ResultRow, ...]
    models: tuple[ModelRecord, ...]
    benchmarks: tuple[BenchmarkRecord, ...]
    thresholds: dict[str, GatedBy]  # model spec → the file that gated it
    environment: dict
    settings: dict = field(default_factory=dict)
    projections: tuple[KeyProjection, ...] = ()
    drift: tuple[str, ...] = ()
    updates: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    not_baselined: tuple[str, ...] = ()
    strict_env: bool = False
    created: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))

    @classmethod
    def build(cls, record, drift: Sequence[str] = (), updates: Sequence[str] = (), problems: Sequence[str] = (),
              changes: Sequence[Change] = (), strict_env: bool = False,
              not_baselined: Sequence[str] = ()) -> ReportCard:
        environment = dict(record.environments[0]) if record.environments else {}
        if len(record.environments) > 1:
            environment["note"] = "workers ran in different environments: " + json.dumps(record.environments)
        return cls(
            rows=tuple(sorted(record.rows, key=lambda row: row.sort_key)),
            models=tuple(model for _, model in sorted(record.models.items())),
            benchmarks=tuple(b for _, b in sorted(record.benchmarks.items())),
            thresholds=dict(sorted(record.thresholds.items())),
            environment=environment, settings=dict(record.settings or {}),
            projections=tuple(sorted(record.projections, key=lambda p: (p.model, p.benchmark, p.layer))),
            drift=tuple(drift), updates=tuple(updates), problems=tuple(problems), changes=tuple(changes),
            not_baselined=tuple(not_baselined), strict_env=strict_env,
        )

    def with_problems(self, problems: Sequence[str]) -> ReportCard:
        return replace(self, problems=(*self.problems, *problems))

    # ------------------------------------------------------------------ summaries

    def pooled(self) -> list[ResultRow]:
        return [row for row in self.rows if row.head is None]

    def gated(self) -> list[ResultRow]:
        """Gated rows, the one nearest to (or furthest beyond) its bound first."""
        rows = [row for row in self.pooled() if row.gated]
        return sorted(rows, key=lambda row: (-row.status.severity, math.inf if row.margin is None else row.margin))

    def model_names(self) -> list[str]:
        return sorted({row.model for row in self.rows} | {model.spec for model in self.models})

    def verdicts(self) -> dict[str, str]:
        """Per model: ``PASS`` / ``WARN`` / ``FAIL`` / ``ERROR`` / ``UNCHECKED`` (nothing was gated), with
        ``, NOT BASELINED`` when only generic bounds gated it."""
        result = {}
        for model in self.model_names():
            statuses = [row.status for row in self.pooled() if row.model == model]
            statuses += [change.status for change in self.changes if change.model == model]
            if any(problem.startswith(f"{model}:") for problem in self.problems):
                statuses.append("error")
            verdict = worst(statuses).upper()
            result[model] = verdict + (", NOT BASELINED" if model in self.not_baselined else "")
        return result

    def counts(self, model: str) -> dict[str, int]:
        return {status: sum(1 for row in self.pooled() if row.model == model and row.status == status)
                for status in ("fail", "warn", "error", "pass")}

    def summary_rows(self) -> list[list[object]]:
        grouped: dict[tuple, dict[str, ResultRow]] = {}
        for row in self.pooled():
            if row.layer is None and row.metric != "*":
                continue
            grouped.setdefault((row.model, row.benchmark, row.layer), {})[row.metric] = row
        lines = []
        for (model, benchmark, layer), metrics in sorted(grouped.items(), key=lambda item: (
                item[0][0], item[0][1], -1 if item[0][2] is None else item[0][2])):
            status = worst(row.status for row in metrics.values())
            lines.append([model, benchmark, "" if layer is None else layer,
                          *(format_estimate(metrics.get(name)) for name in CARD_METRICS), status])
        return lines

    def gated_rows(self, limit: int | None = None) -> list[list[object]]:
        rows = self.gated()
        shown = rows if limit is None else rows[:limit]
        return [[row.model, row.benchmark, "" if row.layer is None else row.layer, f"{row.metric} {arrow(row.metric)}",
                 format_estimate(row).removesuffix(" *"),
                 "" if row.bound is None else Bound(row.bound, row.direction).describe(),
                 "" if row.margin is None or not math.isfinite(row.margin) else format_number(row.margin, sign=True),
                 row.rule or "", row.status + (f": {row.message}" if row.message else "")] for row in shown]

    def behaviour_rows(self) -> list[list[object]]:
        return [[row.model, row.benchmark, f"{row.metric} {arrow(row.metric)}", format_estimate(row), row.status]
                for row in self.pooled() if row.layer is None and metric_family(row.metric) == "behaviour"]

    def change_rows(self) -> list[list[object]]:
        rows = []
        for change in self.changes:
            ci = (f" [{format_number(change.ci[0], sign=True)}, {format_number(change.ci[1], sign=True)}]"
                  if change.ci else "")
            increase = format_number(change.increase, sign=True) + ci
            rows.append([change.model, change.baseline_model, change.benchmark,
                         "" if change.layer is None else change.layer, change.metric, increase,
                         "" if change.bound is None else f"≤ {change.bound:g}", change.status])
        return rows

    def model_lines(self) -> list[str]:
        lines = []
        verdicts = self.verdicts()
        for model in self.model_names():
            info = self.thresholds.get(model)
            counts = self.counts(model)
            gated_by = (f"{info.label} v{info.version} (matched by {info.matched_by}"
                        + (", provisional" if info.provisional else "") + ")") if info else "no threshold file"
            lines.append(f"{model}: {verdicts[model]} ({counts['fail']} fail, {counts['warn']} warn, "
                         f"{counts['error']} error, {counts['pass']} pass; gated by {gated_by})")
            gaps = next((m.incomplete_weights for m in self.models if m.spec == model), None)
            if gaps:
                lines.append(f"{model}: loaded with --allow-incomplete-weights: {len(gaps)} weight(s) "
                             "did not match the checkpoint and were filled at random "
                             f"({', '.join(gaps[:3])}{'…' if len(gaps) > 3 else ''})")
        return lines

    def notes(self) -> list[str]:
        notes = [f"problem: {line}" for line in self.problems]
        notes += [f"environment drift{' (--strict-env: failing)' if self.strict_env else ''}: {line}"
                  for line in self.drift]
        notes += [f"thresholds updated: {line}" for line in self.updates]
        return notes

    def benchmark_line(self) -> str:
        return "benchmarks: " + ", ".join(f"{b.name} ({b.n_samples} samples, {b.hash})" for b in self.benchmarks)

    # ------------------------------------------------------------------ formats

    @property
    def lines(self) -> list[str]:
        """The terminal summary."""
        headers = ["model", "benchmark", "layer", *map(metric_header, CARD_METRICS), "status"]
        out = tabulate(self.summary_rows(), headers=headers, tablefmt="simple").splitlines()
        out += ["* gated; ↑/↓ worse: the direction in which a metric means more text bias"]
        gated = self.gated_rows(TERMINAL_GATED_ROWS)
        if gated:
            out += ["", f"gated rows, nearest to their bound first ({len(self.gated())} in all):",
                    *tabulate(gated, headers=GATED_HEADERS, tablefmt="simple").splitlines()]
        behaviour = self.behaviour_rows()
        if behaviour:
            out += ["", *tabulate(behaviour, headers=BEHAVIOUR_HEADERS, tablefmt="simple").splitlines()]
        changes = self.change_rows()
        if changes:
            out += ["", "change against the baseline (positive: more text bias):",
                    *tabulate(changes, headers=CHANGE_HEADERS, tablefmt="simple").splitlines()]
        out += ["", self.benchmark_line(), *self.model_lines(), *self.notes()]
        return out

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "suite_version": __version__,
            "created": self.created,
            "environment": {key: self.environment.get(key) for key in ENVIRONMENT_KEYS},
            "settings": self.settings,
            "thresholds": [gated_by.to_json() for gated_by in self.thresholds.values()],
            "models": [model.to_json() for model in self.models],
            "benchmarks": [benchmark.to_json() for benchmark in self.benchmarks],
            "verdicts": self.verdicts(),
            "results": [row.to_json() for row in self.rows],
            "changes": [change.to_json() for change in self.changes],
            "problems": list(self.problems),
            "updates": list(self.updates),
            "drift": list(self.drift),
        }

    def to_markdown(self) -> str:
        def table(rows, headers):
            return tabulate([[escape_markdown(cell) for cell in row] for row in rows],
                            headers=[escape_markdown(h) for h in headers], tablefmt="github")

        parts = ["# Bias report card", ""]
        parts += [f"- **{escape_markdown(line.split(':', 1)[0])}**:{escape_markdown(line.split(':', 1)[1])}"
                  for line in self.model_lines()]
        parts += ["", escape_markdown(self.benchmark_line()), ""]
        parts += [table(self.summary_rows(),
                        ["model", "benchmark", "layer", *map(metric_header, CARD_METRICS), "status"]),
                  "", "\\* gated; ↑/↓ worse: the direction in which a metric means more text bias", ""]
        gated = self.gated_rows()
        if gated:
            parts += ["## Gated rows (nearest to their bound first)", "", table(gated, GATED_HEADERS), ""]
        behaviour = self.behaviour_rows()
        if behaviour:
            parts += ["## Behaviour", "", table(behaviour, BEHAVIOUR_HEADERS), ""]
        changes = self.change_rows()
        if changes:
            parts += ["## Change against the baseline (positive: more text bias)", "",
                      table(changes, CHANGE_HEADERS), ""]
        environment = ", ".join(f"{key} {value}" for key, value in self.environment.items())
        parts += [f"Environment: {escape_markdown(environment)}", ""]
        parts += [f"- {escape_markdown(line)}" for line in self.notes()]
        return "\n".join(parts) + "\n"

    def to_html(self) -> str:
        from bias_suite.report.html import card_html

        return card_html(self)

    def write(self, path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n"
        elif suffix == ".md":
            text = self.to_markdown()
        elif suffix == ".html":
            text = self.to_html()
        else:
            raise ValueError(f"{path}: unknown report format; use .md, .json or .html")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
