"""The card's plots as inline SVG (no plotting dependency, no script, deterministic):

* per benchmark and card metric, the metric against decoder layer with every model on the same axes
  (point estimates as lines, bootstrap intervals as bands, a legend above the plot area), each gated
  bound drawn at its own layer, labelled axes with round ticks, and the direction in which the metric
  means more text bias;
* per benchmark and key-space metric, a layers × KV-heads heatmap for every model on one shared colour
  scale, with a colour bar;
* for a few layers, the image and text keys on their top-2 principal components and by t-SNE.

Every SVG carries ``class`` (``curve``, ``heatmap``, ``pca``, ``tsne``) and ``data-*`` attributes naming
what it shows, so a test (or a reader's browser tools) can find it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from bias_suite.gate.rows import Bound, ResultRow
from bias_suite.metrics.registry import spec_of
from bias_suite.report.tables import escape_html as _esc

IMAGE_COLOUR, TEXT_COLOUR = "#1f77b4", "#ff7f0e"
BOUND_COLOUR = "#b00000"
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
RING_COLOURS = {"fail": "#b00000", "warn": "#e69500", "inconclusive": "#6a4fb3", "error": "#b00000"}  # outline
PARTNER_COLOUR = "#555555"  # the blessed run or baseline card a model's changes are paired with
HEATMAP_METRICS = ("mmd2", "jsd", "ratio", "auroc")
HEAT_RAMP = ("#f7fbff", "#c6dbef", "#6baed6", "#2171b5", "#08306b")  # light → dark = low → high
LOG_SPAN = 100.0  # a positive axis spanning this factor or more is drawn on a log scale

CURVE_WIDTH, CURVE_PLOT_HEIGHT = 410, 180
CURVE_LEFT, CURVE_RIGHT = 62, 14
SCATTER_WIDTH, SCATTER_HEIGHT = 300, 270
FONT = "font-family='system-ui,sans-serif'"


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

    def contains(self, value: float) -> bool:
        """True when ``value`` lies on the drawn axis (a log axis holds positive values only)."""
        return self.low <= value <= self.high and (value > 0 or not self.log)

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

    def legend_items(self, colours: Mapping[str, str], axis: Axis | None,
                     partners: Mapping[str, Sequence[tuple[int, float]]] = ()) -> list[tuple[str, str]]:
        items = [(_line_swatch(colours[model]) + f"<circle cx='8' cy='5' r='2.5' fill='{colours[model]}'/>", model)
                 for model in self.series]
        items += [(_line_swatch(PARTNER_COLOUR, dashed=True), label) for label in partners]
        if any(ci for points in self.series.values() for _, _, ci, _ in points):
            items.append(("<rect x='0' y='0' width='16' height='10' fill='#888' fill-opacity='0.25'/>",
                          "95% bootstrap CI"))
        off_scale = sorted({Bound(limit, d).describe() for _, limit, d in self.bounds
                            if axis is None or not axis.contains(limit)})
        if self.bounds:
            label = "bound" + (f" (off the axis: {', '.join(off_scale[:2])})" if off_scale else "")
            items.append((_line_swatch(BOUND_COLOUR, dashed=True), label))
        statuses = {status for points in self.series.values() for *_, status in points}
        items += [(f"<circle cx='8' cy='5' r='4' fill='#fff' stroke='{RING_COLOURS[s]}' stroke-width='2'/>", s)
                  for s in ("warn", "inconclusive", "fail") if s in statuses]
        if self.errors:
            items.append(("<text x='8' y='9' text-anchor='middle' font-size='11' fill='#555'>✕</text>",
                          "not computed"))
        return items


def layer_curves_svg(rows_by_model: Mapping[str, Sequence[ResultRow]], metric: str, benchmark: str,
                     colours: Mapping[str, str] | None = None,
                     partners: Mapping[str, Sequence[tuple[int, float]]] | None = None) -> str:
    """One metric against decoder layer, every model on the same axes, each bound at its own layer.

    ``colours``: model → colour (default: ``MODEL_COLOURS`` in the order of ``rows_by_model``), so the
    same model has the same colour in every plot of a card. ``partners``: label → ``[(layer, value)]`` of
    what the models were paired with (the blessed run, a baseline card), drawn dashed grey on the same axes."""
    partners = dict(partners or {})
    colours = colours or {model: MODEL_COLOURS[i % len(MODEL_COLOURS)] for i, model in enumerate(rows_by_model)}
    worse = {"higher_is_worse": " (↑ worse)", "lower_is_worse": " (↓ worse)"}.get(spec_of(metric).direction or "", "")
    title = f"{metric} · {benchmark}"
    curves = _Curves.of(rows_by_model)
    series, errors, bounds, layers = curves.series, curves.errors, curves.bounds, curves.layers
    partner_values = [value for points in partners.values() for _, value in points if math.isfinite(value)]
    data = curves.values + partner_values
    on_scale = _bounds_on_scale(data, [limit for _, limit, _ in bounds])
    axis = value_axis(data + on_scale, allow_log=log_allowed(metric))
    attributes = (f"class='curve' data-metric='{_esc(metric)}' data-benchmark='{_esc(benchmark)}' role='img' "
                  f"aria-label='{_esc(title)}' {FONT}")
    legend_items = curves.legend_items(colours, axis, partners)
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
        if axis.contains(limit):
            parts.append(f"<line x1='{x(layer) - half:.1f}' x2='{x(layer) + half:.1f}' y1='{y(limit):.1f}' "
                         f"y2='{y(limit):.1f}' stroke='{BOUND_COLOUR}' stroke-width='2' "
                         f"stroke-dasharray='4 2'>{tip}</line>")
        else:  # a triangle on the edge, pointing to where the bound lies
            tip_y, base = (top, top + 7) if limit > axis.high else (bottom, bottom - 7)  # beyond the top / bottom
            parts.append(f"<polygon points='{x(layer) - 5:.1f},{base} {x(layer) + 5:.1f},{base} "
                         f"{x(layer):.1f},{tip_y}' "
                         f"fill='{BOUND_COLOUR}'>{tip}</polygon>")
    for label, points in partners.items():
        drawn = [(layer, value) for layer, value in points if math.isfinite(value) and axis.contains(value)
                 and x_low <= layer <= x_high]
        if drawn:
            parts.append(f"<polyline points='{' '.join(f'{x(layer):.1f},{y(v):.1f}' for layer, v in drawn)}' "
                         f"fill='none' stroke='{PARTNER_COLOUR}' stroke-width='1.4' stroke-dasharray='5 3'>"
                         f"<title>{_esc(label)}</title></polyline>")
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
