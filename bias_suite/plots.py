"""The HTML report card: self-contained, plots as inline SVG (no plotting dependency, no script, deterministic).

* per benchmark and card metric, the metric against decoder layer with every model on the same axes
  (point estimates as lines, bootstrap intervals as bands, a legend above the plot area), each gated
  bound drawn at its own layer, labelled axes with round ticks, and the direction in which the metric
  means more text bias;
* per benchmark and key-space metric, a layers × KV-heads heatmap for every model on one shared colour
  scale, with a colour bar;
* for a few layers, the image and text keys on their top-2 principal components and by t-SNE;
* the verdicts, the gated rows with bound and margin, the change against a baseline and the
  environment as tables, statuses coloured.

Every SVG carries ``class`` (``curve``, ``heatmap``, ``pca``, ``tsne``) and ``data-*`` attributes naming
what it shows, so a test (or a reader's browser tools) can find it.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from bias_suite.gate import SEVERITY, Bound, ResultRow
from bias_suite.metrics.registry import spec_of

IMAGE_COLOUR, TEXT_COLOUR = "#1f77b4", "#ff7f0e"
BOUND_COLOUR = "#b00000"
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
STATUS_COLOURS = {"pass": "#d7f2d7", "warn": "#ffe9b3", "fail": "#f8c7c7", "error": "#f3a6a6", "unchecked": "#eeeeee"}
RING_COLOURS = {"fail": "#b00000", "warn": "#e69500", "error": "#b00000"}  # marker outline of a judged point
HEATMAP_METRICS = ("mmd2", "jsd", "ratio", "auroc")
HEAT_RAMP = ("#f7fbff", "#c6dbef", "#6baed6", "#2171b5", "#08306b")  # light → dark = low → high
LOG_SPAN = 100.0  # a positive axis spanning this factor or more is drawn on a log scale
FOLDED_ROWS = 20  # table rows shown before the rest fold into <details>

CURVE_WIDTH, CURVE_PLOT_HEIGHT = 410, 180
CURVE_LEFT, CURVE_RIGHT = 62, 14
SCATTER_WIDTH, SCATTER_HEIGHT = 300, 270
FONT = "font-family='system-ui,sans-serif'"
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


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------------------------------------- axes


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) from at or below ``low`` to at or
    above ``high``; about ``count`` of them."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    low, high = min(low, high), max(low, high)
    if high == low:
        pad = 0.5 * (abs(low) or 1.0)
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, count - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    digits = max(0, 2 - math.floor(math.log10(step)))
    return [round(k * step, digits) + 0.0 for k in range(first, last + 1)]


def _log_ticks(low: float, high: float) -> list[float]:
    first, last = math.floor(math.log10(low) + 1e-9), math.ceil(math.log10(high) - 1e-9)
    stride = max(1, math.ceil((last - first) / 6))
    return [10.0 ** k for k in range(first, last + stride, stride)]


@dataclass(frozen=True)
class Axis:
    """A value axis: ``ticks`` from ``ticks[0]`` to ``ticks[-1]``, linear or log10."""

    ticks: tuple[float, ...]
    log: bool = False

    @property
    def low(self) -> float:
        return self.ticks[0]

    @property
    def high(self) -> float:
        return self.ticks[-1]

    def fraction(self, value: float) -> float:
        """Where ``value`` lies from ``low`` (0) to ``high`` (1)."""
        if self.log:
            low, high = math.log10(self.low), math.log10(self.high)
            value = math.log10(max(value, self.low))
        else:
            low, high = self.low, self.high
        return (value - low) / ((high - low) or 1.0)

    def label(self, tick: float) -> str:
        """The tick's text, with as many decimals as the tick step needs (``0.05``: two)."""
        if self.log or tick == 0:
            return f"{tick:g}"
        if max(abs(self.low), abs(self.high)) >= 1e5 or abs(self.ticks[1] - self.ticks[0]) < 1e-4:
            digits = next((d for d in range(2, 13) if len({f"{t:.{d}g}" for t in self.ticks}) == len(self.ticks)), 12)
            return f"{tick:.{digits}g}".replace("-", "−")
        step = Decimal(repr(round(abs(self.ticks[1] - self.ticks[0]), 12))).normalize()
        return f"{tick:.{max(0, -step.as_tuple().exponent)}f}".replace("-", "−")


def value_axis(values: Iterable[float], count: int = 5, allow_log: bool = False) -> Axis | None:
    """The axis covering finite ``values``; with ``allow_log``, log10 when they are positive and span
    ``LOG_SPAN`` or more (a ratio from 0.5 to its cap of 1000)."""
    finite = [value for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    if high - low <= 1e-9 * max(abs(low), abs(high)):  # equal but for rounding (a ratio at its cap)
        low = high = (low + high) / 2
    if allow_log and low > 0 and high / low >= LOG_SPAN:
        return Axis(tuple(_log_ticks(low, high)), log=True)
    return Axis(tuple(nice_ticks(low, high, count)))


def _integer_ticks(low: int, high: int, count: int = 10) -> list[int]:
    """Layer ticks: every layer, or every 2nd, 5th, 10th, … when there are more than about ``count``."""
    ticks = nice_ticks(low, high, count) if high > low else [low, low + 1]
    step = max(1, round(ticks[1] - ticks[0]))
    return [layer for layer in range(low - low % step, high + 1, step) if layer >= low]


def log_allowed(metric: str) -> bool:
    """Whether a metric may be drawn on a log axis: non-negative with a wide natural range (ratios)."""
    spec = spec_of(metric)
    return spec.low >= 0 and spec.high >= LOG_SPAN


def _fmt(value: float) -> str:
    return f"{value:.4g}"


# ---------------------------------------------------------------------------------------------- curves


@dataclass(frozen=True)
class _Legend:
    """Items laid out left to right, wrapping at ``width``; ``height`` in px."""

    svg: str
    height: int


def _legend(items: Sequence[tuple[str, str]], left: float, top: float, width: float) -> _Legend:
    """``items``: (swatch SVG drawn at the origin in a 16×10 box, label)."""
    parts, x, y = [], left, top
    for swatch, label in items:
        item_width = 22 + 6 * len(label) + 14
        if x + item_width > width and x > left:
            x, y = left, y + 14
        parts.append(f"<g transform='translate({x:.0f},{y:.0f})'>{swatch}<text x='20' y='9' font-size='10'>"
                     f"{_esc(label)}</text></g>")
        x += item_width
    return _Legend("".join(parts), int(y - top) + 14 if items else 0)


def _line_swatch(colour: str, dashed: bool = False) -> str:
    dash = " stroke-dasharray='4 2'" if dashed else ""
    return f"<line x1='0' x2='16' y1='5' y2='5' stroke='{colour}' stroke-width='2'{dash}/>"


@dataclass(frozen=True)
class _Curves:
    """What one curve plot shows, from the rows of every model."""

    series: dict[str, list[tuple]]  # model → [(layer, value, ci or None, status)], finite values, by layer
    errors: list[tuple]  # (model, layer, message) of values that could not be computed
    bounds: list[tuple]  # (layer, limit, direction), one per distinct bound

    @classmethod
    def of(cls, rows_by_model: Mapping[str, Sequence[ResultRow]]) -> _Curves:
        def finite_ci(row: ResultRow):
            return row.ci if row.ci and all(map(math.isfinite, row.ci)) else None

        series = {model: sorted((r.layer, r.value, finite_ci(r), r.status) for r in rows
                                if r.layer is not None and r.value is not None and math.isfinite(r.value))
                  for model, rows in rows_by_model.items()}
        errors = {(model, r.layer, r.message) for model, rows in rows_by_model.items() for r in rows
                  if r.layer is not None and r.status == "error" and (r.value is None or not math.isfinite(r.value))}
        bounds = {(r.layer, r.bound, r.direction) for rows in rows_by_model.values() for r in rows
                  if r.bound is not None and r.layer is not None and r.direction is not None}
        return cls({model: points for model, points in series.items() if points}, sorted(errors), sorted(bounds))

    @property
    def values(self) -> list[float]:
        return [v for points in self.series.values() for _, value, ci, _ in points for v in (value, *(ci or ()))]

    @property
    def layers(self) -> list[int]:
        return sorted({p[0] for points in self.series.values() for p in points} | {b[0] for b in self.bounds}
                      | {e[1] for e in self.errors})

    def legend_items(self, colours: Mapping[str, str], on_scale: Sequence[float]) -> list[tuple[str, str]]:
        items = [(_line_swatch(colours[model]) + f"<circle cx='8' cy='5' r='2.5' fill='{colours[model]}'/>", model)
                 for model in self.series]
        if any(ci for points in self.series.values() for _, _, ci, _ in points):
            items.append(("<rect x='0' y='0' width='16' height='10' fill='#888' fill-opacity='0.25'/>",
                          "95% bootstrap CI"))
        off_scale = sorted({Bound(limit, d).describe() for _, limit, d in self.bounds if limit not in on_scale})
        if self.bounds:
            label = "bound" + (f" (off the axis: {', '.join(off_scale[:2])})" if off_scale else "")
            items.append((_line_swatch(BOUND_COLOUR, dashed=True), label))
        statuses = {status for points in self.series.values() for *_, status in points}
        items += [(f"<circle cx='8' cy='5' r='4' fill='#fff' stroke='{RING_COLOURS[s]}' stroke-width='2'/>", s)
                  for s in ("warn", "fail") if s in statuses]
        if self.errors:
            items.append(("<text x='8' y='9' text-anchor='middle' font-size='11' fill='#555'>✕</text>",
                          "not computed"))
        return items


def layer_curves_svg(rows_by_model: Mapping[str, Sequence[ResultRow]], metric: str, benchmark: str,
                     colours: Mapping[str, str] | None = None) -> str:
    """One metric against decoder layer, every model on the same axes, each bound at its own layer.

    ``colours``: model → colour (default: ``MODEL_COLOURS`` in the order of ``rows_by_model``), so the
    same model has the same colour in every plot of a card."""
    colours = colours or {model: MODEL_COLOURS[i % len(MODEL_COLOURS)] for i, model in enumerate(rows_by_model)}
    worse = {"higher_is_worse": " (↑ worse)", "lower_is_worse": " (↓ worse)"}.get(spec_of(metric).direction or "", "")
    title = f"{metric} · {benchmark}"
    curves = _Curves.of(rows_by_model)
    series, errors, bounds, layers = curves.series, curves.errors, curves.bounds, curves.layers
    on_scale = _bounds_on_scale(curves.values, [limit for _, limit, _ in bounds])
    axis = value_axis(curves.values + on_scale, allow_log=log_allowed(metric))
    attributes = (f"class='curve' data-metric='{_esc(metric)}' data-benchmark='{_esc(benchmark)}' role='img' "
                  f"aria-label='{_esc(title)}' {FONT}")
    legend_items = curves.legend_items(colours, on_scale)
    legend = _legend(legend_items, CURVE_LEFT, 28, CURVE_WIDTH - CURVE_RIGHT)
    top = 28 + legend.height + 8
    bottom = top + CURVE_PLOT_HEIGHT
    height = bottom + 40
    parts = [f"<svg width='{CURVE_WIDTH}' height='{height}' {attributes}>",
             f"<title>{_esc(title)}: {_esc(spec_of(metric).summary)}</title>",
             (f"<text x='{CURVE_WIDTH / 2:.0f}' y='16' text-anchor='middle' font-size='13' font-weight='bold'>"
              f"{_esc(title)}</text>"), legend.svg]
    if axis is None or not layers:
        parts.append(f"<text x='{CURVE_WIDTH / 2:.0f}' y='{(top + bottom) / 2:.0f}' text-anchor='middle' "
                     "font-size='11' fill='#777'>no finite value to plot</text></svg>")
        return "".join(parts)

    def y(value: float) -> float:
        return bottom - axis.fraction(value) * (bottom - top)

    left, right = CURVE_LEFT, CURVE_WIDTH - CURVE_RIGHT
    x_low, x_high = layers[0] - 0.5, layers[-1] + 0.5  # half a layer either side: a bound's segment fits

    def x(layer: float) -> float:
        return left + (layer - x_low) / (x_high - x_low) * (right - left)

    for tick in axis.ticks:
        parts.append(f"<line x1='{left}' x2='{right}' y1='{y(tick):.1f}' y2='{y(tick):.1f}' stroke='#e6e6e6'/>"
                     f"<line x1='{left - 4}' x2='{left}' y1='{y(tick):.1f}' y2='{y(tick):.1f}' stroke='#444'/>"
                     f"<text x='{left - 7}' y='{y(tick) + 3.5:.1f}' text-anchor='end' font-size='10'>"
                     f"{axis.label(tick)}</text>")
    for layer in _integer_ticks(layers[0], layers[-1]):
        parts.append(f"<line x1='{x(layer):.1f}' x2='{x(layer):.1f}' y1='{bottom}' y2='{bottom + 4}' stroke='#444'/>"
                     f"<text x='{x(layer):.1f}' y='{bottom + 15}' text-anchor='middle' font-size='10'>{layer}</text>")
    parts += [f"<line x1='{left}' y1='{top}' x2='{left}' y2='{bottom}' stroke='#444'/>",
              f"<line x1='{left}' y1='{bottom}' x2='{right}' y2='{bottom}' stroke='#444'/>",
              (f"<text x='{(left + right) / 2:.0f}' y='{bottom + 32}' text-anchor='middle' font-size='11'>"
               "decoder layer</text>"),
              (f"<text transform='translate(14,{(top + bottom) / 2:.0f}) rotate(-90)' text-anchor='middle' "
               f"font-size='11'>{_esc(metric)}{_esc(worse)}{' · log scale' if axis.log else ''}</text>")]
    gaps = [b - a for a, b in itertools.pairwise(layers)]
    half = min(0.4 * min(gaps, default=1) * (right - left) / (x_high - x_low), 16)
    for layer, limit, bound_direction in bounds:
        tip = f"<title>bound at layer {layer}: {_esc(Bound(limit, bound_direction).describe())}</title>"
        if limit in on_scale:
            parts.append(f"<line x1='{x(layer) - half:.1f}' x2='{x(layer) + half:.1f}' y1='{y(limit):.1f}' "
                         f"y2='{y(limit):.1f}' stroke='{BOUND_COLOUR}' stroke-width='2' "
                         f"stroke-dasharray='4 2'>{tip}</line>")
        else:  # a triangle on the edge, pointing to where the bound lies
            tip_y, base = (top, top + 7) if limit > axis.high else (bottom, bottom - 7)
            parts.append(f"<polygon points='{x(layer) - 5:.1f},{base} {x(layer) + 5:.1f},{base} "
                         f"{x(layer):.1f},{tip_y}' "
                         f"fill='{BOUND_COLOUR}'>{tip}</polygon>")
    for model, points in series.items():
        colour = colours[model]
        if len(points) > 1 and all(ci for _, _, ci, _ in points):
            outline = [f"{x(layer):.1f},{y(ci[1]):.1f}" for layer, _, ci, _ in points]
            outline += [f"{x(layer):.1f},{y(ci[0]):.1f}" for layer, _, ci, _ in reversed(points)]
            parts.append(f"<polygon points='{' '.join(outline)}' fill='{colour}' fill-opacity='0.15'/>")
        else:
            parts += [f"<line x1='{x(layer):.1f}' x2='{x(layer):.1f}' y1='{y(ci[0]):.1f}' y2='{y(ci[1]):.1f}' "
                      f"stroke='{colour}' stroke-opacity='0.5' stroke-width='3'/>" for layer, _, ci, _ in points if ci]
    for model, points in series.items():
        colour = colours[model]
        parts.append(f"<polyline points='{' '.join(f'{x(layer):.1f},{y(v):.1f}' for layer, v, _, _ in points)}' "
                     f"fill='none' stroke='{colour}' stroke-width='1.6'/>")
        for layer, value, ci, status in points:
            ring = (f" r='4' stroke='{RING_COLOURS[status]}' stroke-width='2'" if status in RING_COLOURS
                    else " r='2.6'")
            interval = f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
            parts.append(f"<circle cx='{x(layer):.1f}' cy='{y(value):.1f}' fill='{colour}'{ring}><title>{_esc(model)}, "
                         f"layer {layer}: {_fmt(value)}{interval} ({status})</title></circle>")
    for model, layer, message in errors:
        parts.append(f"<text x='{x(layer):.1f}' y='{bottom - 4}' text-anchor='middle' font-size='12' "
                     f"fill='{colours.get(model, BOUND_COLOUR)}'>✕<title>{_esc(model)}, layer {layer}: not computed"
                     f"{': ' + _esc(message) if message else ''}</title></text>")
    parts.append("</svg>")
    return "".join(parts)


def _bounds_on_scale(data: Sequence[float], limits: Sequence[float]) -> list[float]:
    """The bounds the value axis stretches to include: those within the data's own span of the data (a
    bound far away would flatten every curve to a line; it is marked on the edge instead)."""
    if not data:
        return list(limits)
    low, high = min(data), max(data)
    span = (high - low) or abs(high) or 1.0
    return [limit for limit in limits if low - span <= limit <= high + span]


# ---------------------------------------------------------------------------------------------- heatmaps


def heat_colour(fraction: float) -> str:
    """A colour of ``HEAT_RAMP`` at ``fraction`` (0: lightest, 1: darkest), linearly interpolated."""
    fraction = min(1.0, max(0.0, fraction)) * (len(HEAT_RAMP) - 1)
    index = min(int(fraction), len(HEAT_RAMP) - 2)
    a, b = HEAT_RAMP[index], HEAT_RAMP[index + 1]
    t = fraction - index
    channels = (round(int(a[i:i + 2], 16) * (1 - t) + int(b[i:i + 2], 16) * t) for i in (1, 3, 5))
    return "#" + "".join(f"{channel:02x}" for channel in channels)


def heatmap_axis(rows: Iterable[ResultRow], metric: str) -> Axis | None:
    """One colour scale for several heatmaps (every model's of a metric and benchmark)."""
    return value_axis((r.value for r in rows if r.head is not None and r.value is not None), count=4,
                      allow_log=log_allowed(metric))


def heatmap_svg(rows: Sequence[ResultRow], metric: str, model: str, benchmark: str, axis: Axis | None = None) -> str:
    """Layers (rows) × KV heads (columns) of one metric, with a colour bar (darker: higher); cells that
    could not be computed grey. ``axis``: a colour scale shared with other heatmaps (default: this one's)."""
    cells = {(r.layer, r.head): r.value for r in rows if r.head is not None and r.layer is not None}
    if not cells:
        return ""
    axis = axis or heatmap_axis(rows, metric)
    layers = sorted({layer for layer, _ in cells})
    heads = sorted({head for _, head in cells})
    cell_w = max(8, min(40, 240 // len(heads)))
    cell_h = max(5, min(22, 240 // len(layers)))
    left, top = 44, 44
    grid_w, grid_h = cell_w * len(heads), cell_h * len(layers)
    bar_x = left + grid_w + 16
    arrow = spec_of(metric).worse_arrow()
    title = f"{metric}{f' ({arrow})' if arrow else ''} · {model}"
    width = max(bar_x + 70, 14 + 7.6 * len(title))
    bar_h = max(grid_h, 60)
    height = top + max(grid_h + 36, bar_h + 8)
    parts = [(f"<svg width='{width:.0f}' height='{height}' class='heatmap' data-metric='{_esc(metric)}' "
              f"data-model='{_esc(model)}' data-benchmark='{_esc(benchmark)}' role='img' "
              f"aria-label='{_esc(metric)} per layer and KV head, {_esc(model)}, {_esc(benchmark)}' {FONT}>"),
             f"<text x='6' y='16' font-size='12' font-weight='bold'>{_esc(title)}</text>",
             f"<text x='6' y='31' font-size='10' fill='#555'>{_esc(benchmark)}: layer × KV head</text>"]
    layer_stride = max(1, math.ceil(len(layers) * 11 / grid_h))
    head_stride = max(1, math.ceil(len(heads) * 14 / grid_w))
    for row, layer in enumerate(layers):
        if row % layer_stride == 0:
            parts.append(f"<text x='{left - 4}' y='{top + cell_h * (row + 0.5) + 3.5:.1f}' text-anchor='end' "
                         f"font-size='10'>L{layer}</text>")
        for column, head in enumerate(heads):
            value = cells.get((layer, head))
            if value is None:
                continue
            finite = math.isfinite(value) and axis is not None
            fill = heat_colour(axis.fraction(value)) if finite else "#bbbbbb"
            tip = _fmt(value) if finite else "not computed"
            parts.append(f"<rect x='{left + cell_w * column}' y='{top + cell_h * row}' "
                         f"width='{cell_w}' height='{cell_h}' "
                         f"fill='{fill}'><title>layer {layer}, KV head {head}: {tip}</title></rect>")
    for column, head in enumerate(heads):
        if column % head_stride == 0:
            parts.append(f"<text x='{left + cell_w * (column + 0.5):.1f}' y='{top + grid_h + 12}' text-anchor='middle' "
                         f"font-size='10'>{head}</text>")
    parts.append(f"<text x='{left + grid_w / 2:.1f}' y='{top + grid_h + 28}' text-anchor='middle' font-size='11'>"
                 "KV head</text>")
    if axis is not None:
        steps = 24
        parts += [f"<rect x='{bar_x}' y='{top + bar_h * (1 - (i + 1) / steps):.2f}' width='10' "
                  f"height='{bar_h / steps + 0.3:.2f}' "
                  f"fill='{heat_colour((i + 0.5) / steps)}'/>" for i in range(steps)]
        parts.append(f"<rect x='{bar_x}' y='{top}' width='10' height='{bar_h}' fill='none' stroke='#999'/>")
        for tick in axis.ticks:
            tick_y = top + bar_h * (1 - axis.fraction(tick))
            parts.append(f"<line x1='{bar_x + 10}' x2='{bar_x + 14}' y1='{tick_y:.1f}' "
                         f"y2='{tick_y:.1f}' stroke='#444'/>"
                         f"<text x='{bar_x + 16}' y='{tick_y + 3.5:.1f}' font-size='9'>{axis.label(tick)}</text>")
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- scatters


def scatter_svg(points: Mapping[str, Sequence[Sequence[float]]], kind: str, title: str) -> str:
    """Image (blue circles) and text (orange squares) keys of one layer in two dimensions, equal aspect.
    ``kind``: ``pca`` or ``tsne`` (names the axes)."""
    image, text = list(points.get("image", ())), list(points.get("text", ()))
    everything = image + text
    if not everything:
        return ""
    names = ("PC 1", "PC 2") if kind == "pca" else ("t-SNE 1", "t-SNE 2")
    left, right, top, bottom = 22, SCATTER_WIDTH - 8, 44, SCATTER_HEIGHT - 24
    xs, ys = [p[0] for p in everything], [p[1] for p in everything]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    scale = min((right - left - 16) / span_x, (bottom - top - 16) / span_y)  # same units on both axes
    mid_x, mid_y = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2

    def place(px: float, py: float) -> tuple[float, float]:
        return (left + right) / 2 + (px - mid_x) * scale, (top + bottom) / 2 - (py - mid_y) * scale

    marks = [f"<rect x='{cx - 1.8:.1f}' y='{cy - 1.8:.1f}' width='3.6' height='3.6' fill='{TEXT_COLOUR}' "
             f"fill-opacity='0.6'/>" for cx, cy in (place(px, py) for px, py in text)]
    marks += [f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='2' fill='{IMAGE_COLOUR}' fill-opacity='0.6'/>"
              for cx, cy in (place(px, py) for px, py in image)]
    legend = _legend([(f"<circle cx='8' cy='5' r='3' fill='{IMAGE_COLOUR}'/>", f"image keys ({len(image)})"),
                      (f"<rect x='5' y='2' width='6' height='6' fill='{TEXT_COLOUR}'/>", f"text keys ({len(text)})")],
                     8, 22, SCATTER_WIDTH)
    return (f"<svg width='{SCATTER_WIDTH}' height='{SCATTER_HEIGHT}' class='{_esc(kind)}' role='img' "
            f"aria-label='{_esc(title)}' {FONT}><text x='8' y='14' font-size='12' font-weight='bold'>"
            f"{_esc(title)}</text>"
            f"{legend.svg}<rect x='{left}' y='{top}' width='{right - left}' height='{bottom - top}' fill='none' "
            f"stroke='#bbb'/>{''.join(marks)}<text x='{(left + right) / 2:.0f}' y='{bottom + 16}' text-anchor='middle' "
            f"font-size='10'>{names[0]}</text><text transform='translate(14,{(top + bottom) / 2:.0f}) rotate(-90)' "
            f"text-anchor='middle' font-size='10'>{names[1]}</text></svg>")


# ---------------------------------------------------------------------------------------------- tables


def _status_class(cell: object) -> str:
    return str(cell).split(":")[0].split(",")[0].strip().lower()


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


def _verdict_rows(card) -> list[list[str]]:
    verdicts = card.verdicts()
    rows = []
    for model in card.model_names():
        lines = [line[len(model) + 2:] for line in card.model_lines() if line.startswith(f"{model}: ")]
        summary = lines[0].removeprefix(f"{verdicts[model]} (").removesuffix(")") if lines else ""
        rows.append([model, verdicts[model], "; ".join([summary, *lines[1:]])])
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
    from bias_suite.report import CARD_METRICS

    pooled = [row for row in card.pooled() if row.benchmark == benchmark and row.layer is not None]
    models = card.model_names()
    curves = []
    died = [row for row in pooled if row.metric == "*"]  # a case that recorded nothing: ✕ on every plot
    for metric in dict.fromkeys([*CARD_METRICS, *(row.metric for row in pooled if row.gated)]):
        by_model = {model: [r for r in pooled if r.model == model and r.metric == metric] for model in models}
        if any(by_model.values()):
            by_model = {model: rows + [r for r in died if r.model == model] for model, rows in by_model.items()}
            curves.append(layer_curves_svg(by_model, metric, benchmark, colours))
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
    projections = [p for p in card.projections if p["benchmark"] == benchmark]
    if projections:
        section += ["<h3>Image and text keys</h3>", f"<p class='caption'>{_esc(PROJECTION_CAPTION)}</p>"]
        for model in models:
            figures = [scatter_svg(p[kind], kind, f"{label} · {model} · layer {p['layer']}")
                       for p in projections if p["model"] == model
                       for kind, label in (("pca", "PCA"), ("tsne", "t-SNE")) if kind in p]
            if any(figures):
                section.append(f"<div class='row'>{''.join(figures)}</div>")
    return section


def _anchor(name: str) -> str:
    return "benchmark-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def card_html(card) -> str:
    """The whole card as one self-contained HTML page."""
    from bias_suite.report import BEHAVIOUR_HEADERS, CARD_METRICS, CHANGE_HEADERS, GATED_HEADERS, metric_header

    models = card.model_names()
    colours = {model: MODEL_COLOURS[index % len(MODEL_COLOURS)] for index, model in enumerate(models)}
    benchmarks = sorted({row.benchmark for row in card.pooled() if row.layer is not None})
    links = [f"<a href='#{_anchor(b)}'>{_esc(b)}</a>" for b in benchmarks]
    links += ["<a href='#gated'>gated rows</a>", "<a href='#all-layers'>all layers</a>"]
    sections = ["<h1>Bias report card</h1>",
                (f"<p class='caption'>bias-suite {_esc(card.to_json()['suite_version'])} · "
                 f"created {_esc(card.created)}</p>"),
                f"<nav>{''.join(links)}</nav>",
                "<h2>Verdicts</h2>", _table(["model", "verdict", "details"], _verdict_rows(card), status_column=1)]
    if card.notes():
        sections.append("<ul class='notes'>" + "".join(f"<li class='{_note_class(note)}'>{_esc(note)}</li>"
                                                       for note in card.notes()) + "</ul>")
    meta = [("Environment", _table(["what", "value"], list(card.environment.items())))]
    if card.settings:
        meta.append(("Settings", _table(["setting", "value"], list(card.settings.items()))))
    meta.append(("Benchmarks", _table(["benchmark", "samples", "content hash"],
                                      [[b["name"], b["n_samples"], b["hash"]] for b in card.benchmarks])))
    sections.append("<div class='meta'>" + "".join(f"<div><h3>{title}</h3>{table}</div>" for title, table in meta)
                    + "</div>")
    for benchmark in benchmarks:
        sections += _benchmark_section(card, benchmark, colours)
    gated = card.gated_rows()
    sections.append("<h2 id='gated'>Gated rows (nearest to their bound first)</h2>")
    sections.append(_folded_table(GATED_HEADERS, gated, len(GATED_HEADERS) - 1, "gated rows, further from their bound")
                    if gated else "<p>No row was gated: no threshold rule covers what this run measured.</p>")
    if card.behaviour_rows():
        sections += ["<h2>Behaviour</h2>", _table(BEHAVIOUR_HEADERS, card.behaviour_rows(), status_column=4)]
    changes = card.change_rows()
    if changes:
        judged = sorted((row for row in changes if row[-1] != "unchecked"), key=lambda row: -SEVERITY.get(row[-1], 0))
        unchecked = [row for row in changes if row[-1] == "unchecked"]
        sections += ["<h2>Change against the baseline (positive: more text bias)</h2>",
                     _table(CHANGE_HEADERS, judged, len(CHANGE_HEADERS) - 1) if judged else
                     "<p>No <code>max_increase</code> rule judged a change.</p>"]
        if unchecked:
            sections.append(f"<details><summary>{len(unchecked)} change(s) no rule bounds</summary>"
                            f"{_table(CHANGE_HEADERS, unchecked, len(CHANGE_HEADERS) - 1)}</details>")
    sections += ["<h2 id='all-layers'>All layers</h2>",
                 _table(["model", "benchmark", "layer", *map(metric_header, CARD_METRICS), "status"],
                        card.summary_rows(), status_column=len(CARD_METRICS) + 3),
                 "<p class='caption'>* gated; ↑/↓ worse: the direction in which a metric means more text bias</p>"]
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>bias report card</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n")
