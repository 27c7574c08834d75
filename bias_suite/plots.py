"""The HTML report card: self-contained, plots as inline SVG (no plotting dependency, deterministic).

* per benchmark and card metric, the metric against decoder layer with every model on the same axes
  (point estimates as lines, bootstrap intervals as bands), each gated bound drawn at its own layer,
  labelled axes with ticks, and the direction in which the metric means more text bias;
* per model and benchmark, a layers × KV-heads heatmap of the key-space metrics;
* for a few layers, the image and text keys on their top-2 principal components and by t-SNE;
* the verdicts, the gated rows with bound and margin, the change against a baseline and the
  environment as tables, statuses coloured.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from bias_suite.gate import Bound, ResultRow
from bias_suite.metrics.registry import spec_of

WIDTH, HEIGHT = 320, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 26, 40
IMAGE_COLOUR, TEXT_COLOUR = "#1f77b4", "#ff7f0e"
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
STATUS_COLOURS = {"pass": "#d7f2d7", "warn": "#ffe9b3", "fail": "#f8c7c7", "error": "#f3a6a6", "unchecked": "#eeeeee"}
HEATMAP_METRICS = ("mmd2", "jsd", "ratio", "auroc")
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}"
    "table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
    "th{background:#f4f4f4}.row{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}"
    "figure{margin:0}figcaption{font-size:11px;color:#555}"
    + "".join(f".{status}{{background:{colour}}}" for status, colour in STATUS_COLOURS.items())
)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[low, high]`` (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        high, low = low + 0.5 * (abs(low) or 1.0), low - 0.5 * (abs(low) or 1.0)
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 12))
        value += step
    if ticks and ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _scale(low: float, high: float, low_px: float, high_px: float):
    span = (high - low) or 1.0
    return lambda v: low_px + (v - low) / span * (high_px - low_px)


def layer_curves_svg(rows_by_model: dict[str, list[ResultRow]], metric: str, benchmark: str) -> str:
    """One metric against decoder layer, every model on the same axes; bounds at their own layers."""
    direction = spec_of(metric).direction
    worse = {"higher_is_worse": "↑ worse", "lower_is_worse": "↓ worse"}.get(direction or "", "")
    title = f"{metric} · {benchmark}"
    series = {model: sorted((r.layer, r.value, r.ci) for r in rows if r.layer is not None and r.value is not None
                            and math.isfinite(r.value)) for model, rows in rows_by_model.items()}
    bounds = [(r.layer, r.bound, r.direction) for rows in rows_by_model.values() for r in rows
              if r.bound is not None and r.layer is not None]
    values = [v for points in series.values() for _, v, ci in points for v in (v, *(ci or ()))
              if v is not None and math.isfinite(v)] + [b for _, b, _ in bounds]
    layers = sorted({layer for points in series.values() for layer, _, _ in points} | {layer for layer, _, _ in bounds})
    head = (f"<svg width='{WIDTH}' height='{HEIGHT}' xmlns='http://www.w3.org/2000/svg' role='img' "
            f"aria-label='{_esc(title)}'><text x='{WIDTH / 2}' y='15' text-anchor='middle' font-size='12' "
            f"font-weight='bold'>{_esc(title)}</text>")
    if not values or not layers:
        return head + "<text x='60' y='110' font-size='11'>not computed</text></svg>"
    ticks = nice_ticks(min(values), max(values))
    y = _scale(ticks[0], ticks[-1], HEIGHT - BOTTOM, TOP)
    x_low, x_high = (layers[0], layers[-1]) if len(layers) > 1 else (layers[0] - 1, layers[0] + 1)
    x = _scale(x_low, x_high, LEFT + 8, WIDTH - RIGHT - 8)
    parts = [head, f"<line x1='{LEFT}' y1='{TOP}' x2='{LEFT}' y2='{HEIGHT - BOTTOM}' stroke='#444'/>",
             f"<line x1='{LEFT}' y1='{HEIGHT - BOTTOM}' x2='{WIDTH - RIGHT}' y2='{HEIGHT - BOTTOM}' stroke='#444'/>"]
    for tick in ticks:
        parts.append(f"<line x1='{LEFT - 4}' x2='{LEFT}' y1='{y(tick):.1f}' y2='{y(tick):.1f}' stroke='#444'/>"
                     f"<text x='{LEFT - 6}' y='{y(tick) + 3:.1f}' text-anchor='end' font-size='9'>{tick:.4g}</text>"
                     f"<line x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{y(tick):.1f}' y2='{y(tick):.1f}' stroke='#eee'/>")
    step = max(1, math.ceil(len(layers) / 12))
    for layer in layers[::step]:
        parts.append(f"<line x1='{x(layer):.1f}' x2='{x(layer):.1f}' y1='{HEIGHT - BOTTOM}' y2='{HEIGHT - BOTTOM + 4}' "
                     f"stroke='#444'/><text x='{x(layer):.1f}' y='{HEIGHT - BOTTOM + 14}' text-anchor='middle' "
                     f"font-size='9'>{layer}</text>")
    parts.append(f"<text x='{(LEFT + WIDTH - RIGHT) / 2}' y='{HEIGHT - 6}' text-anchor='middle' font-size='10'>"
                 "decoder layer</text>")
    parts.append(f"<text transform='translate(12,{(TOP + HEIGHT - BOTTOM) / 2}) rotate(-90)' text-anchor='middle' "
                 f"font-size='10'>{_esc(metric)} {_esc(worse)}</text>")
    for index, (model, points) in enumerate(series.items()):
        colour = MODEL_COLOURS[index % len(MODEL_COLOURS)]
        if points and all(ci for _, _, ci in points):
            upper = [f"{x(layer):.1f},{y(ci[1]):.1f}" for layer, _, ci in points]
            lower = [f"{x(layer):.1f},{y(ci[0]):.1f}" for layer, _, ci in reversed(points)]
            parts.append(f"<polygon points='{' '.join(upper + lower)}' fill='{colour}' fill-opacity='0.15'/>")
        parts.append(f"<polyline points='{' '.join(f'{x(layer):.1f},{y(v):.1f}' for layer, v, _ in points)}' "
                     f"fill='none' stroke='{colour}' stroke-width='1.5'/>")
        parts += [f"<circle cx='{x(layer):.1f}' cy='{y(v):.1f}' r='2.5' fill='{colour}'><title>{_esc(model)} layer "
                  f"{layer}: {v:.4g}</title></circle>" for layer, v, _ in points]
        parts.append(f"<text x='{LEFT + 6}' y='{TOP + 10 + 11 * index}' font-size='9' fill='{colour}'>{_esc(model)}</text>")
    half = (x(layers[1]) - x(layers[0])) / 2.5 if len(layers) > 1 else 12
    for layer, limit, bound_direction in bounds:
        parts.append(f"<line x1='{x(layer) - half:.1f}' x2='{x(layer) + half:.1f}' y1='{y(limit):.1f}' "
                     f"y2='{y(limit):.1f}' stroke='#b00' stroke-width='2'><title>bound at layer {layer}: "
                     f"{_esc(Bound(limit, bound_direction).describe())}</title></line>")
    parts.append("</svg>")
    return "".join(parts)


def heatmap_svg(rows: Sequence[ResultRow], metric: str, model: str, benchmark: str) -> str:
    """Layers (rows) × KV heads (columns) of one metric; darker = higher."""
    cells = {(r.layer, r.head): r.value for r in rows if r.head is not None and r.layer is not None
             and r.value is not None and math.isfinite(r.value)}
    if not cells:
        return ""
    layers = sorted({layer for layer, _ in cells})
    heads = sorted({head for _, head in cells})
    size = max(6, min(18, 360 // max(len(heads), 1)))
    width, height = LEFT + size * len(heads) + 10, TOP + size * len(layers) + 30
    low, high = min(cells.values()), max(cells.values())
    span = (high - low) or 1.0
    parts = [f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg' role='img' "
             f"aria-label='{_esc(metric)} heatmap'><text x='{LEFT}' y='15' font-size='11' font-weight='bold'>"
             f"{_esc(metric)} per KV head · {_esc(model)} · {_esc(benchmark)}</text>"]
    for row_index, layer in enumerate(layers):
        parts.append(f"<text x='{LEFT - 4}' y='{TOP + size * row_index + size * 0.75:.1f}' text-anchor='end' "
                     f"font-size='9'>L{layer}</text>")
        for column, head in enumerate(heads):
            value = cells.get((layer, head))
            if value is None:
                continue
            shade = int(245 - 200 * (value - low) / span)
            parts.append(f"<rect x='{LEFT + size * column}' y='{TOP + size * row_index}' width='{size}' height='{size}' "
                         f"fill='rgb({shade},{shade},255)'><title>layer {layer}, head {head}: {value:.4g}</title></rect>")
    parts.append(f"<text x='{LEFT}' y='{height - 8}' font-size='9'>KV head 0–{heads[-1]}; {low:.3g} (light) to "
                 f"{high:.3g} (dark)</text></svg>")
    return "".join(parts)


def scatter_svg(points: dict, title: str) -> str:
    """Image (blue) and text (orange) keys of one layer in two dimensions."""
    image, text = points["image"], points["text"]
    everything = image + text
    if not everything:
        return ""
    xs, ys = [p[0] for p in everything], [p[1] for p in everything]
    x = _scale(min(xs), max(xs), 10, WIDTH - 10)
    y = _scale(min(ys), max(ys), HEIGHT - 12, TOP)
    dots = "".join(f"<circle cx='{x(px):.1f}' cy='{y(py):.1f}' r='2' fill='{colour}' fill-opacity='0.6'/>"
                   for group, colour in ((text, TEXT_COLOUR), (image, IMAGE_COLOUR)) for px, py in group)
    return (f"<svg width='{WIDTH}' height='{HEIGHT}' xmlns='http://www.w3.org/2000/svg' role='img' "
            f"aria-label='{_esc(title)}'><text x='{WIDTH / 2}' y='15' text-anchor='middle' font-size='11'>"
            f"{_esc(title)}: <tspan fill='{IMAGE_COLOUR}'>image</tspan> vs <tspan fill='{TEXT_COLOUR}'>text</tspan>"
            f"</text>{dots}</svg>")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], status_column: int | None = None) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            css = ""
            if index == status_column:
                css = f" class='{_esc(str(cell).split(':')[0].split(',')[0].strip().lower())}'"
            cells.append(f"<td{css}>{_esc(cell)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def card_html(card) -> str:
    """The whole card as one self-contained HTML page."""
    from bias_suite.report import (
        BEHAVIOUR_HEADERS,
        CARD_METRICS,
        CHANGE_HEADERS,
        GATED_HEADERS,
        metric_header,
    )

    pooled = card.pooled()
    verdicts = card.verdicts()
    verdict_rows = [[model, verdicts[model], line.split("(", 1)[-1].rstrip(")")]
                    for model, line in zip(card.model_names(), card.model_lines())]
    sections = ["<h1>Bias report card</h1>",
                f"<p>bias-suite {_esc(card.to_json()['suite_version'])} · {_esc(card.created)}</p>",
                "<h2>Verdicts</h2>", _table(["model", "verdict", "details"], verdict_rows, status_column=1)]
    if card.problems or card.drift or card.updates:
        sections.append("<ul>" + "".join(f"<li>{_esc(line)}</li>" for line in card.notes()) + "</ul>")
    sections += ["<h2>Environment</h2>", _table(["what", "value"], [[k, v] for k, v in card.environment.items()]
                                                + [[f"setting {k}", v] for k, v in card.settings.items()])]
    sections += ["<h2>Benchmarks</h2>", _table(["benchmark", "samples", "content hash"],
                                               [[b["name"], b["n_samples"], b["hash"]] for b in card.benchmarks])]
    models = card.model_names()
    for benchmark in sorted({row.benchmark for row in pooled if row.layer is not None}):
        curves = []
        for metric in dict.fromkeys([*CARD_METRICS, *(row.metric for row in pooled if row.gated)]):
            by_model = {model: [r for r in pooled if r.model == model and r.benchmark == benchmark and r.metric == metric]
                        for model in models}
            if any(by_model.values()):
                curves.append(layer_curves_svg(by_model, metric, benchmark))
        sections += [f"<h2>{_esc(benchmark)}</h2>", f"<div class='row'>{''.join(curves)}</div>"]
        for model in models:
            maps = [heatmap_svg([r for r in card.rows if r.model == model and r.benchmark == benchmark and r.metric == metric],
                                metric, model, benchmark) for metric in HEATMAP_METRICS]
            if any(maps):
                sections.append(f"<div class='row'>{''.join(maps)}</div>")
        for projection in card.projections:
            if projection["benchmark"] != benchmark:
                continue
            title = f"{projection['model']} layer {projection['layer']}"
            figures = [f"<figure>{scatter_svg(projection[kind], f'{title} · {label}')}<figcaption>{caption}"
                       "</figcaption></figure>"
                       for kind, label, caption in (("pca", "PCA", "top-2 principal components of the pre-RoPE keys"),
                                                    ("tsne", "t-SNE", "t-SNE of the pre-RoPE keys (as in the paper)"))
                       if kind in projection]
            sections.append(f"<div class='row'>{''.join(figures)}</div>")
    sections += ["<h2>Gated rows (nearest to their bound first)</h2>",
                 _table(GATED_HEADERS, card.gated_rows(), status_column=len(GATED_HEADERS) - 1)]
    if card.behaviour_rows():
        sections += ["<h2>Behaviour</h2>", _table(BEHAVIOUR_HEADERS, card.behaviour_rows(), status_column=4)]
    if card.change_rows():
        sections += ["<h2>Change against the baseline (positive: more text bias)</h2>",
                     _table(CHANGE_HEADERS, card.change_rows(), status_column=len(CHANGE_HEADERS) - 1)]
    sections += ["<h2>All layers</h2>",
                 _table(["model", "benchmark", "layer", *map(metric_header, CARD_METRICS), "status"],
                        card.summary_rows(), status_column=len(CARD_METRICS) + 3),
                 "<p>* gated; ↑/↓ worse: the direction in which a metric means more text bias</p>"]
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>bias report card</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n")
