"""The bias report card: a terminal table, and Markdown / JSON / HTML files.

``ReportCard.build(record, …)`` turns merged rows into a data object; ``.lines`` is what the terminal
shows, ``.write(path)`` picks the format from the suffix. The HTML file is self-contained: its plots
(per-layer metric curves with bootstrap bands, PCA scatter of image vs text keys) are inline SVG.
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from bias_suite import __version__
from bias_suite.gate import worst

SCHEMA_VERSION = 1
CARD_METRICS = ("jsd", "mmd2", "ratio", "logit_gap.question", "visual_share.question")
BEHAVIOUR_METRICS = ("text_preference_rate",)
JSON_ROW_KEYS = ("model", "benchmark", "layer", "head", "metric", "value", "ci", "bound", "status")


def _sort_key(row: dict) -> tuple:
    return (row["model"], row["benchmark"], -1 if row["layer"] is None else row["layer"],
            -1 if row["head"] is None else row["head"], row["metric"])


def format_estimate(row: dict | None) -> str:
    if row is None or row.get("value") is None:
        return "—" if row is None else "error"
    text = f"{row['value']:.3g}"
    if row.get("ci"):
        text += f" [{row['ci'][0]:.3g}, {row['ci'][1]:.3g}]"
    return text


@dataclass(frozen=True)
class ReportCard:
    """Everything one run measured, with gate statuses. ``rows`` are JSON rows (plus ``message``)."""

    rows: tuple[dict, ...]
    models: tuple[dict, ...]
    benchmarks: tuple[dict, ...]
    thresholds: tuple[dict, ...]
    environment: dict
    projections: tuple[dict, ...] = ()
    drift: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()
    strict_env: bool = False
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))

    @classmethod
    def build(cls, record, drift: Sequence[str] = (), changes: Sequence[str] = (), strict_env: bool = False) -> "ReportCard":
        environment = dict(record.environments[0]) if record.environments else {}
        if len(record.environments) > 1:
            environment["note"] = "workers ran in different environments: " + json.dumps(record.environments)
        return cls(
            rows=tuple(sorted(record.rows, key=_sort_key)),
            models=tuple({k: m[k] for k in ("spec", "model_type", "revision")} for _, m in sorted(record.models.items())),
            benchmarks=tuple(b for _, b in sorted(record.benchmarks.items())),
            thresholds=tuple({"file": t["file"], "version": t["version"]}
                             for t in sorted({(t["file"], t["version"]): t for t in record.thresholds.values()}.values(),
                                             key=lambda t: t["file"])),
            environment=environment,
            projections=tuple(sorted(record.projections, key=lambda p: (p["model"], p["benchmark"], p["layer"]))),
            drift=tuple(drift), changes=tuple(changes), strict_env=strict_env,
        )

    # ------------------------------------------------------------------ summaries

    def pooled(self) -> list[dict]:
        return [row for row in self.rows if row["head"] is None]

    def verdicts(self) -> dict[str, str]:
        """Per model: ``PASS`` / ``WARN`` / ``FAIL`` / ``ERROR`` / ``UNCHECKED`` (nothing was gated)."""
        result = {}
        for model in sorted({row["model"] for row in self.rows}):
            statuses = [row["status"] for row in self.pooled() if row["model"] == model]
            result[model] = worst(statuses).upper()
        return result

    def table_rows(self) -> list[list[str]]:
        grouped: dict[tuple, dict[str, dict]] = {}
        for row in self.pooled():
            if row["layer"] is None and row["metric"] != "*":
                continue
            grouped.setdefault((row["model"], row["benchmark"], row["layer"]), {})[row["metric"]] = row
        lines = []
        for (model, benchmark, layer), metrics in sorted(grouped.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] if item[0][2] is not None else -1)):
            status = worst(r["status"] for r in metrics.values())
            bounds = [f"{r['metric']} {r['message'].split(': ', 1)[-1]}" for r in metrics.values()
                      if r["status"] in ("fail", "warn") and r.get("message")]
            lines.append([model, benchmark, "" if layer is None else layer,
                          *(format_estimate(metrics.get(name)) for name in CARD_METRICS),
                          "; ".join(bounds) or "", status])
        return lines

    @property
    def lines(self) -> list[str]:
        headers = ["model", "benchmark", "layer", *CARD_METRICS, "beyond bound", "status"]
        out = tabulate(self.table_rows(), headers=headers, tablefmt="simple").splitlines()
        behaviour = [[r["model"], r["benchmark"], r["metric"], format_estimate(r), r["status"]]
                     for r in self.pooled() if r["metric"] in BEHAVIOUR_METRICS]
        if behaviour:
            out += ["", *tabulate(behaviour, headers=["model", "benchmark", "behaviour", "value [95% CI]", "status"]).splitlines()]
        out.append("")
        for model, verdict in self.verdicts().items():
            counts = {s: sum(1 for r in self.pooled() if r["model"] == model and r["status"] == s) for s in ("fail", "warn", "error")}
            files = ", ".join(f"{Path(t['file']).name} v{t['version']}" for t in self.thresholds)
            out.append(f"{model}: {verdict} ({counts['fail']} fail, {counts['warn']} warn, {counts['error']} error; thresholds {files})")
        for line in self.drift:
            out.append(f"environment drift{' (--strict-env: failing)' if self.strict_env else ''}: {line}")
        for line in self.changes:
            out.append(f"thresholds updated: {line}")
        return out

    # ------------------------------------------------------------------ files

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "suite_version": __version__,
            "created": self.created,
            "environment": {k: self.environment.get(k) for k in ("python", "torch", "transformers", "device", "dtype", "attn_implementation")},
            "thresholds": list(self.thresholds),
            "models": list(self.models),
            "benchmarks": list(self.benchmarks),
            "results": [{key: row.get(key) for key in JSON_ROW_KEYS} for row in self.rows],
        }

    def to_markdown(self) -> str:
        headers = ["model", "benchmark", "layer", *CARD_METRICS, "beyond bound", "status"]
        parts = ["# Bias report card", "",
                 *(f"- **{model}**: {verdict}" for model, verdict in self.verdicts().items()), "",
                 tabulate(self.table_rows(), headers=headers, tablefmt="github"), ""]
        behaviour = [[r["model"], r["benchmark"], r["metric"], format_estimate(r), r["status"]]
                     for r in self.pooled() if r["metric"] in BEHAVIOUR_METRICS]
        if behaviour:
            parts += [tabulate(behaviour, headers=["model", "benchmark", "behaviour", "value [95% CI]", "status"], tablefmt="github"), ""]
        benchmarks = ", ".join(f"{b['name']} ({b['n_samples']} samples, {b['hash']})" for b in self.benchmarks)
        thresholds = ", ".join(f"{t['file']} v{t['version']}" for t in self.thresholds)
        environment = ", ".join(f"{k} {v}" for k, v in self.environment.items())
        parts += [f"Benchmarks: {benchmarks}", "", f"Thresholds: {thresholds}", "", f"Environment: {environment}", ""]
        parts += [f"- environment drift: {line}" for line in self.drift]
        parts += [f"- thresholds updated: {line}" for line in self.changes]
        return "\n".join(parts) + "\n"

    def to_html(self) -> str:
        from bias_suite.plots import layer_curves_svg, scatter_svg

        sections = []
        for model, benchmark in sorted({(r["model"], r["benchmark"]) for r in self.pooled() if r["layer"] is not None}):
            curves = "".join(layer_curves_svg([r for r in self.pooled() if r["model"] == model and r["benchmark"] == benchmark
                                                and r["metric"] == metric and r["layer"] is not None], metric)
                             for metric in CARD_METRICS)
            scatters = "".join(scatter_svg(p) for p in self.projections if p["model"] == model and p["benchmark"] == benchmark)
            sections.append(f"<h2>{html.escape(model)} · {html.escape(benchmark)}</h2><div class='row'>{curves}</div>"
                            f"<h3>Pre-RoPE keys on their top-2 principal components</h3><div class='row'>{scatters}</div>")
        markdown_table = tabulate(self.table_rows(), headers=["model", "benchmark", "layer", *CARD_METRICS, "beyond bound", "status"],
                                  tablefmt="html")
        verdicts = "".join(f"<li><b>{html.escape(m)}</b>: <span class='{v.lower()}'>{v}</span></li>" for m, v in self.verdicts().items())
        notes = "".join(f"<li>{html.escape(line)}</li>" for line in (*self.drift, *self.changes))
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>bias report card</title><style>"
            "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:2px 6px}.row{display:flex;flex-wrap:wrap;gap:12px}"
            ".fail,.error{color:#b00}.warn{color:#b60}.pass{color:#080}</style></head><body>"
            f"<h1>Bias report card</h1><p>suite {html.escape(__version__)} · {html.escape(self.created)} · "
            f"{html.escape(json.dumps(self.environment))}</p><ul>{verdicts}</ul><ul>{notes}</ul>"
            f"{''.join(sections)}<h2>All layers</h2>{markdown_table}</body></html>"
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n"
        elif suffix == ".md":
            text = self.to_markdown()
        elif suffix == ".html":
            text = self.to_html()
        else:
            raise ValueError(f"{path}: unknown report format; use .md, .json or .html")
        path.write_text(text, encoding="utf-8")

