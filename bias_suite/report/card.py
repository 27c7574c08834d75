"""The bias report card: a terminal summary, and Markdown / JSON / HTML files.

``ReportCard.build(record, …)`` turns the merged rows into a data object; :meth:`ReportCard.terminal_lines`
is what the terminal shows, ``.write(path)`` picks the format from the suffix. Every format says the
verdict first — PASS, FAIL, INCONCLUSIVE or NO BASELINE per model — with what decided it and what to do
about it, then the worst rows of each model ("baseline → candidate (change), bound or tolerance, status",
worst first by their margin in multiples of the metric's tolerance), then behaviour; everything else
(every gated row, every change, every layer, the run's details) is folded away. The Markdown card stays
under :data:`MARKDOWN_LIMIT` characters (a pull-request comment holds 65,536) and names the HTML and
JSON files that hold what it leaves out.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tabulate import tabulate

from bias_suite import __version__
from bias_suite.gate.changes import Change
from bias_suite.gate.records import BenchmarkRecord, GatedBy, KeyProjection, ModelRecord, ModelVerdict
from bias_suite.gate.rows import Bound, ResultRow, worst
from bias_suite.metrics.registry import COUPLING
from bias_suite.metrics.samples import SampleRecord
from bias_suite.report.tables import (
    BEHAVIOUR_HEADERS,
    CARD_METRICS,
    CHANGE_HEADERS,
    COUPLING_HEADERS,
    SAMPLE_HEADERS,
    WORST_HEADERS,
    arrow,
    escape_markdown,
    format_detectable,
    format_estimate,
    format_number,
    metric_family,
    metric_header,
    tolerance_of,
)
from bias_suite.vocabulary import Status, Verdict

SCHEMA_VERSION = 3
MARKDOWN_LIMIT = 60_000  # characters; a GitHub pull-request comment holds 65,536
WORST_ROWS = 10  # rows per model the Markdown card and the terminal show before folding
TERMINAL_ROWS = 20  # rows that did not pass the terminal lists without -v
ENVIRONMENT_KEYS = ("python", "torch", "transformers", "device", "dtype", "attn_implementation")
SHOWN_STATUSES = (Status.FAIL, Status.ERROR, Status.INCONCLUSIVE, Status.WARN)


@dataclass(frozen=True)
class Line:
    """One row of a "worst rows" table: a judged row (a value against a bound) or a paired change (a
    change against a tolerance), in words, with its margin in multiples of the metric's tolerance."""

    model: str
    benchmark: str
    layer: int | None
    metric: str
    values: str  # "0.45 [0.36, 0.54]" or "0.30 → 0.45 (+0.15 [+0.12, +0.18])"
    limit: str  # "≤ 0.3 (ours.yaml rules[0])" or "tolerance 0.05 vs reference (registry default)"
    margin: float | None  # multiples of the tolerance left before the limit (negative: beyond)
    status: Status
    message: str = ""
    detectable: float | None = None  # smallest distance beyond the limit flagged with 80 % power (metric units)

    @property
    def margin_cell(self) -> str:
        """The margin for a table cell ("" without one, or when it is not finite: an error row)."""
        return "" if self.margin is None or not math.isfinite(self.margin) else format_number(self.margin, sign=True)

    @property
    def status_cell(self) -> str:
        return self.status.value + (f": {self.message}" if self.message else "")

    def cells(self, with_model: bool = False) -> list[object]:
        where = [self.model] if with_model else []
        return [*where, Path(self.benchmark).name if "/" in self.benchmark else self.benchmark,
                "" if self.layer is None else self.layer, f"{self.metric} {arrow(self.metric)}".rstrip(),
                self.values, self.limit, self.margin_cell, format_detectable(self.detectable), self.status_cell]

    @property
    def order(self) -> tuple:
        return (-self.status.severity, math.inf if self.margin is None else self.margin, self.benchmark,
                -1 if self.layer is None else self.layer, self.metric)


def row_line(row: ResultRow) -> Line:
    tolerance = tolerance_of(row.metric)
    margin = None if row.margin is None or not tolerance else row.margin / tolerance
    limit = "" if row.bound is None else f"{Bound(row.bound, row.direction).describe()} ({row.rule})"
    return Line(row.model, row.benchmark, row.layer, row.metric, format_estimate(row).removesuffix(" *"), limit,
                margin, row.status, row.message, row.detectable)


def change_line(change: Change) -> Line:
    ci = f" [{format_number(change.ci[0], sign=True)}, {format_number(change.ci[1], sign=True)}]" if change.ci else ""
    before = ""
    if change.baseline_value is not None and change.value is not None:
        before = f"{format_number(change.baseline_value)} → {format_number(change.value)} "
    values = f"{before}({format_number(change.increase, sign=True)}{ci})"
    partner = f"{change.against} {change.baseline_model}" if change.baseline_model != change.model else change.against
    limit = f"tolerance {change.bound:g} vs {partner} ({change.rule})" if change.bound is not None else f"vs {partner}"
    return Line(change.model, change.benchmark, change.layer, change.metric, values, limit, change.margin_units,
                change.status, change.message, change.detectable)


@dataclass(frozen=True)
class ReportCard:
    """Everything one run measured, with gate statuses, changes and each model's verdict."""

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
    model_verdicts: Mapping[str, ModelVerdict] = field(default_factory=dict)
    reports: tuple[str, ...] = ()  # every report file of the run (the Markdown card names where the rest is)
    samples: tuple[SampleRecord, ...] = ()  # per-sample outcomes and internals of the behaviour cases
    shard: Mapping | None = None  # a shard's card: its manifest and case records, for bias-suite merge (JSON only)

    @classmethod
    def build(cls, record, drift: Sequence[str] = (), updates: Sequence[str] = (), problems: Sequence[str] = (),
              changes: Sequence[Change] = (), strict_env: bool = False, not_baselined: Sequence[str] = (),
              verdicts: Mapping[str, ModelVerdict] | None = None, reports: Sequence[str] = ()) -> ReportCard:
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
            drift=tuple(drift), updates=tuple(updates), problems=tuple(problems),
            changes=tuple(sorted(changes, key=lambda c: (c.model, c.benchmark, -1 if c.layer is None else c.layer,
                                                         c.metric, c.against))),
            not_baselined=tuple(not_baselined), strict_env=strict_env,
            model_verdicts=dict(sorted((verdicts or {}).items())), reports=tuple(reports),
            samples=tuple(sorted(getattr(record, "samples", ()),
                                 key=lambda s: (s.model, s.benchmark, s.sample_id))),
        )

    def with_problems(self, problems: Sequence[str]) -> ReportCard:
        return replace(self, problems=(*self.problems, *problems))

    # ------------------------------------------------------------------ verdicts

    def model_names(self) -> list[str]:
        return sorted({row.model for row in self.rows} | {model.spec for model in self.models}
                      | set(self.model_verdicts))

    def verdict_of(self, model: str) -> ModelVerdict:
        """The model's verdict as the run gave it; a card built without one (a unit test, the blessed card)
        derives it from the statuses: FAIL, INCONCLUSIVE (an error or inconclusive row), NO BASELINE (a model
        listed as not baselined), else PASS."""
        if model in self.model_verdicts:
            return self.model_verdicts[model]
        statuses = [row.status for row in self.pooled() if row.model == model]
        statuses += [change.status for change in self.changes if change.model == model]
        if any(problem.startswith(f"{model}:") for problem in self.problems):
            statuses.append(Status.ERROR)
        if Status.FAIL in statuses:
            verdict = Verdict.FAIL
        elif Status.ERROR in statuses or Status.INCONCLUSIVE in statuses:
            verdict = Verdict.INCONCLUSIVE
        elif model in self.not_baselined:
            verdict = Verdict.NO_BASELINE
        else:
            verdict = Verdict.PASS
        return ModelVerdict(model, verdict)

    def verdicts(self) -> dict[str, str]:
        """Per model: ``PASS``, ``FAIL``, ``INCONCLUSIVE``, ``NO BASELINE`` or ``REFERENCE``."""
        return {model: self.verdict_of(model).label for model in self.model_names()}

    # ------------------------------------------------------------------ rows

    def pooled(self) -> list[ResultRow]:
        return [row for row in self.rows if row.head is None]

    def gated(self) -> list[ResultRow]:
        """Gated rows, worst first: by status, then by margin in multiples of the tolerance."""
        return [row for row in sorted(self.pooled(), key=lambda row: row_line(row).order) if row.gated]

    def counts(self, model: str) -> dict[str, int]:
        statuses = [row.status for row in self.pooled() if row.model == model and row.gated]
        statuses += [change.status for change in self.changes if change.model == model
                     and change.status is not Status.UNCHECKED]
        return {status.value: statuses.count(status) for status in
                (Status.FAIL, Status.INCONCLUSIVE, Status.ERROR, Status.WARN, Status.PASS)}

    def lines_of(self, model: str | None = None) -> list[Line]:
        """Every judged row and change (of ``model``, or all), worst first."""
        lines = [row_line(row) for row in self.pooled() if row.gated and model in (None, row.model)]
        lines += [change_line(change) for change in self.changes
                  if change.status is not Status.UNCHECKED and model in (None, change.model)]
        return sorted(lines, key=lambda line: line.order)

    def summary_rows(self) -> list[list[object]]:
        grouped: dict[tuple, dict[str, ResultRow]] = {}
        for row in self.pooled():
            if (row.layer is None and row.metric != "*") or metric_family(row.metric) == COUPLING:
                continue
            grouped.setdefault((row.model, row.benchmark, row.layer), {})[row.metric] = row
        lines = []
        for (model, benchmark, layer), metrics in sorted(grouped.items(), key=lambda item: (
                item[0][0], item[0][1], -1 if item[0][2] is None else item[0][2])):
            status = worst(row.status for row in metrics.values())
            lines.append([model, benchmark, "" if layer is None else layer,
                          *(format_estimate(metrics.get(name)) for name in CARD_METRICS), status.value])
        return lines

    @property
    def suite_version(self) -> str:
        """The bias-suite version that wrote the card."""
        return __version__

    def gated_rows(self, limit: int | None = None) -> list[list[object]]:
        rows = self.gated()
        shown = rows if limit is None else rows[:limit]
        return [[row.model, row.benchmark, "" if row.layer is None else row.layer, f"{row.metric} {arrow(row.metric)}",
                 line.values, "" if row.bound is None else Bound(row.bound, row.direction).describe(),
                 line.margin_cell, format_detectable(row.detectable), row.rule or "", line.status_cell]
                for row in shown for line in (row_line(row),)]

    def behaviour_rows(self) -> list[list[object]]:
        return [[row.model, row.benchmark, f"{row.metric} {arrow(row.metric)}", format_estimate(row),
                 "" if row.bound is None else Bound(row.bound, row.direction).describe(),
                 format_detectable(row.detectable) if row.bound is not None else "", row.status.value]
                for row in self.pooled() if row.layer is None and metric_family(row.metric) == "behaviour"]

    def coupling(self) -> list[ResultRow]:
        """The coupling rows (Spearman ρ of an internal measure with the answer margin), pooled."""
        return [row for row in self.pooled() if metric_family(row.metric) == COUPLING]

    def coupling_rows(self) -> list[list[object]]:
        """One table row per model × benchmark × layer: ρ [CI] of each internal measure with the margin."""
        grouped: dict[tuple, dict[str, ResultRow]] = {}
        for row in self.coupling():
            grouped.setdefault((row.model, row.benchmark, row.layer), {})[row.metric.removesuffix("_coupling")] = row
        measures = COUPLING_HEADERS[3:]
        return [[model, benchmark, layer, *(format_estimate(found.get(name)).removesuffix(" *") for name in measures)]
                for (model, benchmark, layer), found in sorted(grouped.items(), key=lambda item: (
                    item[0][0], item[0][1], -1 if item[0][2] is None else item[0][2]))]

    def sample_rows(self) -> list[list[object]]:
        """One table row per model × benchmark × sample × layer: outcomes and internal measures."""
        rows = []
        for record in self.samples:
            for measures in record.layers:
                rows.append([record.model, record.benchmark, record.sample_id, record.n_image_tokens,
                             _number(record.outcome("margin")), _number(record.outcome("correct")), measures.layer,
                             _number(measures.visual_share), _number(measures.logit_gap),
                             _number(measures.key_distance)])
        return rows

    def samples_json(self) -> list[dict]:
        return [record.to_json() for record in self.samples]

    def coupling_json(self) -> list[dict]:
        return [{"model": row.model, "benchmark": row.benchmark, "layer": row.layer,
                 "measure": row.metric.removesuffix("_coupling"), "outcome": "margin",
                 **{key: value for key, value in row.to_json(with_replicates=False).items()
                    if key in ("value", "ci", "status", "bound", "rule")}} for row in self.coupling()]

    def change_rows(self, judged: bool | None = None) -> list[list[object]]:
        """Every change as a table row (``judged`` True / False: only the judged / unchecked ones)."""
        rows = []
        for change in self.changes:
            if judged is not None and (change.status is not Status.UNCHECKED) != judged:
                continue
            line = change_line(change)
            rows.append([change.model, f"{change.against} {change.baseline_model}", change.benchmark,
                         "" if change.layer is None else change.layer, change.metric, line.values,
                         "" if change.bound is None else f"≤ {change.bound:g}",
                         format_detectable(change.detectable) if change.bound is not None else "", line.status_cell])
        return rows

    # ------------------------------------------------------------------ words

    def headline(self, model: str) -> str:
        """``VERDICT · model — counts; gated by …``."""
        verdict = self.verdict_of(model)
        info = self.thresholds.get(model)
        if verdict.verdict is None:
            return f"REFERENCE · {model} — measured on the same samples as the candidates, not judged"
        counts = self.counts(model)
        shown = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "nothing judged"
        if info is not None:
            how = ("declared with --family" if info.matched_by == "declared" else f"matched by {info.matched_by}")
            how += ", provisional" if info.provisional else ""
            if not info.baselined:
                how += ", not a baseline"
            gated = f"gated by {info.label} v{info.version} ({how}"
            gated += f"; sanity: {info.sanity})" if info.sanity else ")"
            if info.baseline_card:
                gated += f"; paired with the blessed run {info.baseline_card}"
        else:
            gated = "no threshold file"
        return f"{verdict.label} · {model} — {shown}; {gated}"

    def model_lines(self) -> list[str]:
        lines = []
        for model in self.model_names():
            lines.append(self.headline(model))
            gaps = next((m.incomplete_weights for m in self.models if m.spec == model), None)
            if gaps:
                lines.append(f"  {model}: loaded with --allow-incomplete-weights: {len(gaps)} weight(s) "
                             "did not match the checkpoint and were filled at random "
                             f"({', '.join(gaps[:3])}{'…' if len(gaps) > 3 else ''})")
        return lines

    def why(self, model: str, limit: int = 5) -> list[str]:
        verdict = self.verdict_of(model)
        reasons = list(verdict.reasons[:limit])
        if len(verdict.reasons) > limit:
            reasons.append(f"… {len(verdict.reasons) - limit} more")
        return reasons

    def notes(self) -> list[str]:
        notes = [f"problem: {line}" for line in self.problems]
        notes += [f"environment drift{' (--strict-env: inconclusive)' if self.strict_env else ''}: {line}"
                  for line in self.drift]
        notes += [f"thresholds updated: {line}" for line in self.updates]
        return notes

    def benchmark_line(self) -> str:
        return "benchmarks: " + (", ".join(b.described for b in self.benchmarks) or "none measured")

    # ------------------------------------------------------------------ formats

    @property
    def lines(self) -> list[str]:
        """The terminal summary (without ``-v``)."""
        return self.terminal_lines(verbose=False)

    def terminal_lines(self, verbose: bool = False) -> list[str]:
        """Verdicts first, then the rows that did not pass (all judged rows and every layer with ``verbose``),
        behaviour, changes and notes."""
        out = []
        for model in self.model_names():
            out.append(self.headline(model))
            out += [f"  {reason}" for reason in self.why(model)]
            fix = self.verdict_of(model).fix
            if fix:
                out.append(f"  what to do: {fix}")
        lines = self.lines_of()
        shown = lines if verbose else [line for line in lines if line.status in SHOWN_STATUSES][:TERMINAL_ROWS]
        if shown:
            title = "every judged row and change, worst first" if verbose else (
                f"rows and changes that did not pass, worst first ({len(shown)} of "
                f"{sum(line.status in SHOWN_STATUSES for line in lines)}; -v shows all {len(lines)})")
            out += ["", title + ":",
                    *tabulate([line.cells(with_model=True) for line in shown], headers=["model", *WORST_HEADERS],
                              tablefmt="simple", disable_numparse=True).splitlines()]
        behaviour = self.behaviour_rows()
        if behaviour:
            out += ["", *tabulate(behaviour, headers=BEHAVIOUR_HEADERS, tablefmt="simple",
                                  disable_numparse=True).splitlines()]
        if verbose:
            headers = ["model", "benchmark", "layer", *map(metric_header, CARD_METRICS), "status"]
            out += ["", *tabulate(self.summary_rows(), headers=headers, tablefmt="simple").splitlines(),
                    "* gated; ↑/↓ worse: the direction in which a metric means more text bias"]
            unchecked = self.change_rows(judged=False)
            if unchecked:
                out += ["", "changes no tolerance bounds (positive: more text bias):",
                        *tabulate(unchecked, headers=CHANGE_HEADERS, tablefmt="simple",
                                  disable_numparse=True).splitlines()]
        out += ["", self.benchmark_line(), *[line for line in self.model_lines() if line.startswith("  ")],
                *self.notes()]
        return out

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "suite_version": self.suite_version,
            "created": self.created,
            "environment": {key: self.environment.get(key) for key in ENVIRONMENT_KEYS},
            "settings": self.settings,
            "thresholds": [gated_by.to_json() for gated_by in self.thresholds.values()],
            "models": [model.to_json() for model in self.models],
            "benchmarks": [benchmark.to_json() for benchmark in self.benchmarks],
            "verdicts": self.verdicts(),
            "verdict_details": [self.verdict_of(model).to_json() for model in self.model_names()],
            "results": [row.to_json() for row in self.rows],
            "changes": [change.to_json() for change in self.changes],
            "coupling": self.coupling_json(),
            "samples": self.samples_json(),
            "problems": list(self.problems),
            "updates": list(self.updates),
            "drift": list(self.drift),
            **({} if self.shard is None else {"shard": self.shard}),
        }

    def to_markdown(self, limit: int = MARKDOWN_LIMIT) -> str:
        """The card for a pull-request comment: at most ``limit`` characters; what does not fit is left to
        the HTML and JSON cards, which it names."""
        return _Markdown(self).render(limit)

    def to_html(self) -> str:
        from bias_suite.report.html import card_html

        return card_html(self)

    def write(self, path: Path, markdown_limit: int = MARKDOWN_LIMIT) -> None:
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n"
        elif suffix == ".md":
            text = self.to_markdown(markdown_limit)
        elif suffix == ".html":
            text = self.to_html()
        else:
            raise ValueError(f"{path}: unknown report format; use .md, .json or .html")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


class _Markdown:
    """The Markdown card, built section by section: what must be there first, then folded sections while
    they fit under the limit."""

    def __init__(self, card: ReportCard):
        self.card = card

    @staticmethod
    def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
        return tabulate([[escape_markdown(cell) for cell in row] for row in rows],
                        headers=[escape_markdown(h) for h in headers], tablefmt="github", disable_numparse=True)

    def elsewhere(self) -> str:
        others = [Path(path).name for path in self.card.reports if Path(path).suffix.lower() in (".html", ".json")]
        return f"in {' and '.join(others)}" if others else "in the HTML or JSON card (--bias-report=card.html)"

    def required(self) -> list[str]:
        card = self.card
        parts = ["# Bias report card", ""]
        parts += [f"- **{escape_markdown(card.headline(model).split(' · ', 1)[0])}** · "
                  f"{escape_markdown(card.headline(model).split(' · ', 1)[1])}" for model in card.model_names()]
        parts.append("")
        for model in card.model_names():
            verdict = card.verdict_of(model)
            if verdict.verdict is None:
                continue
            lines = card.lines_of(model)
            shown_lines = lines[:WORST_ROWS]
            parts.append(f"## {escape_markdown(model)}: {verdict.label}")
            parts.append("")
            parts += [f"- {escape_markdown(reason)}" for reason in card.why(model)]
            if verdict.fix:
                parts.append(f"- **What to do:** {escape_markdown(verdict.fix)}")
            if card.why(model) or verdict.fix:
                parts.append("")
            if shown_lines:
                parts.append(f"Worst rows ({len(shown_lines)} of {len(lines)}; margin in multiples of the metric's "
                             "tolerance):")
                parts += ["", self.table([line.cells() for line in shown_lines], WORST_HEADERS), ""]
        behaviour = card.behaviour_rows()
        if behaviour:
            parts += ["## Behaviour", "", self.table(behaviour, BEHAVIOUR_HEADERS), ""]
        notes = card.notes()
        if notes:
            parts += [f"- {escape_markdown(line)}" for line in notes] + [""]
        return parts

    def folded(self) -> list[tuple[str, str]]:
        """(summary, body) of every folded section, most useful first."""
        card = self.card
        sections = []
        lines = card.lines_of()
        if lines:
            sections.append((f"Every judged row and change ({len(lines)})",
                             self.table([line.cells(with_model=True) for line in lines], ["model", *WORST_HEADERS])))
        unchecked = card.change_rows(judged=False)
        if unchecked:
            sections.append((f"Changes no tolerance bounds ({len(unchecked)}; positive: more text bias)",
                             self.table(unchecked, CHANGE_HEADERS)))
        coupling = card.coupling_rows()
        if coupling:
            sections.append((f"Coupling of internals with behaviour ({len(coupling)} rows: Spearman ρ [95% CI] over "
                             "samples of each measure with the answer margin; + : more of it goes with answering "
                             "from the image)", self.table(coupling, COUPLING_HEADERS)))
        samples = card.sample_rows()
        if samples:
            sections.append((f"Per-sample records ({len(card.samples)} samples × layers: outcome and internals)",
                             self.table(samples, SAMPLE_HEADERS)))
        summary = card.summary_rows()
        if summary:
            headers = ["model", "benchmark", "layer", *map(metric_header, CARD_METRICS), "status"]
            sections.append((f"All layers ({len(summary)} rows; * gated, ↑/↓ the direction that means more bias)",
                             self.table(summary, headers)))
        environment = ", ".join(f"{key} {value}" for key, value in card.environment.items())
        details = [escape_markdown(card.benchmark_line()), "", f"Environment: {escape_markdown(environment)}", ""]
        if card.settings:
            settings = ", ".join(f"{key} {json.dumps(value, sort_keys=True)}" for key, value in card.settings.items())
            details += [f"Settings: {escape_markdown(settings)}", ""]
        for model, info in card.thresholds.items():
            if info.considered:
                details.append(f"- {escape_markdown(model)}: files considered: "
                               f"{escape_markdown('; '.join(info.considered))}")
        details += [f"- {escape_markdown(line.strip())}" for line in card.model_lines() if line.startswith("  ")]
        sections.append(("Run details (benchmarks, environment, settings, files considered)", "\n".join(details)))
        return sections

    def render(self, limit: int) -> str:
        parts = "\n".join(self.required()) + "\n"
        for summary, body in self.folded():
            block = f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>\n\n"
            note = f"- *{summary}: left out to keep this comment short; see them {self.elsewhere()}.*\n\n"
            if len(parts) + len(block) + 200 <= limit:
                parts += block
            elif len(parts) + len(note) <= limit:
                parts += note
        if len(parts) > limit:  # the required part alone is too long: cut it, and say where the rest is
            cut = f"\n\n*… cut at {limit} characters; the whole card is {self.elsewhere()}.*\n"
            parts = parts[: limit - len(cut)] + cut
        return parts


def _number(value: float) -> str:
    return format_number(value) if math.isfinite(value) else "—"
