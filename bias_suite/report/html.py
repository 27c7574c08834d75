"""The HTML report card: one self-contained page, plots inline (:mod:`bias_suite.report.svg`), no script.

The verdicts, the gated rows with bound and margin, per benchmark the per-layer curves, the per-head
heatmaps and the key projections, the behaviour table, the change against a baseline and the
environment, settings and benchmarks as tables, statuses coloured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bias_suite.report.svg import (
    HEATMAP_METRICS,
    MODEL_COLOURS,
    heatmap_axis,
    heatmap_svg,
    layer_curves_svg,
    scatter_svg,
)
from bias_suite.report.tables import (
    BEHAVIOUR_HEADERS,
    CARD_METRICS,
    CHANGE_HEADERS,
    COUPLING_HEADERS,
    GATED_HEADERS,
    SAMPLE_HEADERS,
    metric_header,
)
from bias_suite.report.tables import escape_html as _esc
from bias_suite.vocabulary import Status

STATUS_COLOURS = {"pass": "#d7f2d7", "warn": "#ffe9b3", "inconclusive": "#e4dcf7", "fail": "#f8c7c7",
                  "error": "#f3a6a6", "unchecked": "#eeeeee", "no-baseline": "#fde2c4", "reference": "#e6eef7"}
FOLDED_ROWS = 20  # table rows shown before the rest fold into <details>
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;padding:0 2em;color:#222;max-width:1400px;"
    "line-height:1.35}h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:2px;margin-top:1.8em}"
    "h3{margin:1.2em 0 .3em;font-size:15px}"
    "table{border-collapse:collapse;font-size:12px;margin:6px 0}"
    "td,th{border:1px solid #ccc;padding:2px 7px;text-align:left;vertical-align:top}"
    "td{font-variant-numeric:tabular-nums;max-width:640px;overflow-wrap:anywhere}th{background:#f4f4f4}"
    ".row{display:flex;flex-wrap:wrap;gap:16px 22px;align-items:flex-start}"
    ".meta{display:flex;flex-wrap:wrap;gap:8px 40px;align-items:flex-start}.meta h3{margin-top:.4em}"
    "figure{margin:0}figcaption,.caption{font-size:12px;color:#555;max-width:1000px}"
    "nav{font-size:13px;margin:.4em 0 1em}nav a{margin-right:1em}"
    ".groups{gap:18px 48px}.notes{font-size:14px}.notes li{margin:2px 0}.notes .problem{color:#a00000;font-weight:600}"
    "details{margin:4px 0 10px}summary{cursor:pointer;color:#444;font-size:13px}"
    + "".join(f".{status}{{background:{colour}}}" for status, colour in STATUS_COLOURS.items())
    + "td.fail,td.error{font-weight:600}"
)


# ---------------------------------------------------------------------------------------------- tables


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], status_column: int | None = None) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            css = f" class='{_esc(_status_class(cell))}'" if index == status_column else ""
            cells.append(f"<td{css}>{_esc(cell)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _folded_table(headers: Sequence[str], rows: Sequence[Sequence[object]], status_column: int | None,
                  rest: str) -> str:
    """The first ``FOLDED_ROWS`` rows, the others in a <details> block (opens without a script)."""
    shown = _table(headers, rows[:FOLDED_ROWS], status_column)
    if len(rows) <= FOLDED_ROWS:
        return shown
    return (shown + f"<details><summary>{len(rows) - FOLDED_ROWS} more {_esc(rest)}</summary>"
            f"{_table(headers, rows[FOLDED_ROWS:], status_column)}</details>")


def _status_class(cell: object) -> str:
    return str(cell).split(":")[0].split(",")[0].strip().lower().replace(" ", "-")


def _verdict_rows(card) -> list[list[str]]:
    rows = []
    for model in card.model_names():
        verdict = card.verdict_of(model)
        summary = card.headline(model).split(" — ", 1)[-1]
        gaps = [line.strip().removeprefix(f"{model}: ") for line in card.model_lines()
                if line.startswith(f"  {model}: ")]
        rows.append([model, verdict.label, "; ".join([summary, *gaps, *card.why(model, limit=8)]),
                     verdict.fix])
    return rows


def _note_class(note: str) -> str:
    return "problem" if note.startswith("problem:") or "failing" in note.split(":")[0] else "note"


# ---------------------------------------------------------------------------------------------- the page


CURVES_CAPTION = ("Lines: the point estimate at each decoder layer, one colour per model, all models on the same "
                  "axes; bands: the 95% bootstrap interval; dashed red: a gated bound, drawn at the layer it "
                  "gates (a red triangle on the edge: the bound lies beyond the axis, in that direction); ringed "
                  "points: warn (orange) or fail (red). ↑/↓ worse: the direction in which the metric means more "
                  "text bias. Hover a point or bound for its value.")
HEATMAP_CAPTION = ("Each key-space metric per layer and KV head (ungated detail behind the pooled values above). "
                   "Every model's map of a metric shares one colour scale: darker is higher; grey: not computed.")
PROJECTION_CAPTION = ("Pre-RoPE keys of all KV heads (a seeded subsample of tokens), image (blue circles) and text "
                      "(orange squares): on their top-2 principal components, and embedded by t-SNE (as in the "
                      "paper; t-SNE keeps neighbourhoods, not distances between clusters).")


def _benchmark_section(card, benchmark: str, colours: Mapping[str, str]) -> list[str]:
    pooled = [row for row in card.pooled() if row.benchmark == benchmark and row.layer is not None]
    models = card.model_names()
    curves = []
    died = [row for row in pooled if row.metric == "*"]  # a case that recorded nothing: ✕ on every plot
    for metric in dict.fromkeys([*CARD_METRICS, *(row.metric for row in pooled if row.gated)]):
        by_model = {model: [r for r in pooled if r.model == model and r.metric == metric] for model in models}
        if any(by_model.values()):
            by_model = {model: rows + [r for r in died if r.model == model] for model, rows in by_model.items()}
            curves.append(layer_curves_svg(by_model, metric, benchmark, colours, _partners(card, benchmark, metric)))
    section = [f"<h2 id='{_anchor(benchmark)}'>Benchmark: {_esc(benchmark)}</h2>",
               f"<p class='caption'>{_esc(CURVES_CAPTION)}</p>", f"<div class='row'>{''.join(curves)}</div>"]
    per_head = [row for row in card.rows if row.benchmark == benchmark and row.head is not None]
    maps = []
    for metric in HEATMAP_METRICS:
        rows = [row for row in per_head if row.metric == metric]
        axis = heatmap_axis(rows, metric)
        figures = [heatmap_svg([r for r in rows if r.model == model], metric, model, benchmark, axis)
                   for model in models]
        if any(figures):
            maps.append(f"<div class='row'>{''.join(figures)}</div>")  # one metric's maps stay together
    if maps:
        section += ["<h3>Per KV head</h3>", f"<p class='caption'>{_esc(HEATMAP_CAPTION)}</p>",
                    f"<div class='row groups'>{''.join(maps)}</div>"]
    projections = [p for p in card.projections if p.benchmark == benchmark]
    if projections:
        section += ["<h3>Image and text keys</h3>", f"<p class='caption'>{_esc(PROJECTION_CAPTION)}</p>"]
        for model in models:
            figures = [scatter_svg(p.points[kind], kind, f"{label} · {model} · layer {p.layer}")
                       for p in projections if p.model == model
                       for kind, label in (("pca", "PCA"), ("tsne", "t-SNE")) if kind in p.points]
            if any(figures):
                section.append(f"<div class='row'>{''.join(figures)}</div>")
    return section


def _partners(card, benchmark: str, metric: str) -> dict[str, list[tuple[int, float]]]:
    """The blessed run's or the baseline card's value at each layer (from the paired changes), by label, to
    draw beside the models' curves; a reference in the same run is already one of the models."""
    partners: dict[str, dict[int, float]] = {}
    for change in card.changes:
        if (change.benchmark, change.metric) != (benchmark, metric) or change.layer is None \
                or change.against == "reference" or change.baseline_value is None:
            continue
        label = f"{change.against}: {change.baseline_model}"
        partners.setdefault(label, {})[change.layer] = change.baseline_value
    return {label: sorted(points.items()) for label, points in sorted(partners.items())}


def _anchor(name: str) -> str:
    return "benchmark-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def card_html(card) -> str:
    """The whole card as one self-contained HTML page."""
    models = card.model_names()
    colours = {model: MODEL_COLOURS[index % len(MODEL_COLOURS)] for index, model in enumerate(models)}
    benchmarks = sorted({row.benchmark for row in card.pooled() if row.layer is not None})
    links = [f"<a href='#{_anchor(b)}'>{_esc(b)}</a>" for b in benchmarks]
    links += ["<a href='#gated'>gated rows</a>", "<a href='#changes'>changes</a>",
              "<a href='#all-layers'>all layers</a>"]
    sections = ["<h1>Bias report card</h1>",
                (f"<p class='caption'>bias-suite {_esc(card.suite_version)} · "
                 f"created {_esc(card.created)}</p>"),
                f"<nav>{''.join(links)}</nav>",
                "<h2>Verdicts</h2>", _table(["model", "verdict", "details", "what to do"], _verdict_rows(card),
                                            status_column=1)]
    if card.notes():
        sections.append("<ul class='notes'>" + "".join(f"<li class='{_note_class(note)}'>{_esc(note)}</li>"
                                                       for note in card.notes()) + "</ul>")
    meta = [("Environment", _table(["what", "value"], list(card.environment.items())))]
    if card.settings:
        meta.append(("Settings", _table(["setting", "value"], list(card.settings.items()))))
    meta.append(("Benchmarks", _table(["benchmark", "samples", "content hash"],
                                      [[b.name, b.n_samples, b.hash] for b in card.benchmarks])))
    sections.append("<div class='meta'>" + "".join(f"<div><h3>{title}</h3>{table}</div>" for title, table in meta)
                    + "</div>")
    for benchmark in benchmarks:
        sections += _benchmark_section(card, benchmark, colours)
    gated = card.gated_rows()
    sections.append("<h2 id='gated'>Gated rows (nearest to their bound first)</h2>")
    sections.append(_folded_table(GATED_HEADERS, gated, len(GATED_HEADERS) - 1, "gated rows, further from their bound")
                    if gated else "<p>No row was gated: no threshold rule covers what this run measured.</p>")
    if card.behaviour_rows():
        sections += ["<h2>Behaviour</h2>",
                     _table(BEHAVIOUR_HEADERS, card.behaviour_rows(), status_column=len(BEHAVIOUR_HEADERS) - 1)]
    if card.coupling_rows():
        sections += ["<h2 id='coupling'>Coupling of internals with behaviour</h2>",
                     "<p class='caption'>Spearman ρ [95% CI, bootstrap over items] over samples between each "
                     "internal measure and the answer margin (nats the image-true answer wins by): does less visual "
                     "attention go with answering from the text?</p>",
                     _folded_table(COUPLING_HEADERS, card.coupling_rows(), None, "rows")]
    if card.samples:
        sections += [f"<h2 id='samples'>Per-sample records ({len(card.samples)})</h2>",
                     _folded_table(SAMPLE_HEADERS, card.sample_rows(), None, "rows")]
    changes = card.change_rows()
    if changes:
        judged = sorted((row for row in changes if not row[-1].startswith("unchecked")),
                        key=lambda row: -Status(_status_class(row[-1])).severity)
        unchecked = [row for row in changes if row[-1].startswith("unchecked")]
        sections += ["<h2 id='changes'>Paired changes (positive: more text bias)</h2>",
                     _table(CHANGE_HEADERS, judged, len(CHANGE_HEADERS) - 1) if judged else
                     "<p>No tolerance judged a change.</p>"]
        if unchecked:
            sections.append(f"<details><summary>{len(unchecked)} change(s) no rule bounds</summary>"
                            f"{_table(CHANGE_HEADERS, unchecked, len(CHANGE_HEADERS) - 1)}</details>")
    sections += ["<h2 id='all-layers'>All layers</h2>",
                 _table(["model", "benchmark", "layer", *map(metric_header, CARD_METRICS), "status"],
                        card.summary_rows(), status_column=len(CARD_METRICS) + 3),
                 "<p class='caption'>* gated; ↑/↓ worse: the direction in which a metric means more text bias</p>"]
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>bias report card</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n")
