"""Inline SVG plots for the HTML report card (no plotting dependency, deterministic output)."""

from __future__ import annotations

import html

WIDTH, HEIGHT, MARGIN = 260, 180, 34
IMAGE_COLOUR, TEXT_COLOUR = "#1f77b4", "#ff7f0e"


def _scale(values: list[float], low_px: float, high_px: float):
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return lambda v: low_px + (v - low) / span * (high_px - low_px)


def layer_curves_svg(rows: list[dict], metric: str) -> str:
    """A metric against decoder layer: the point estimates as a line, the bootstrap interval as a band,
    the bound (when one is gated) as a dashed line. ``rows``: pooled JSON rows of one model × benchmark."""
    points = sorted((r["layer"], r["value"], r.get("ci")) for r in rows if r.get("value") is not None)
    title = f"<text x='{WIDTH / 2}' y='14' text-anchor='middle' font-size='12'>{html.escape(metric)}</text>"
    if not points:
        return f"<svg width='{WIDTH}' height='{HEIGHT}' xmlns='http://www.w3.org/2000/svg'>{title}" \
               f"<text x='20' y='90' font-size='11'>not computed</text></svg>"
    bounds = sorted({r["bound"] for r in rows if r.get("bound") is not None})
    values = [v for _, v, _ in points] + [c for _, _, ci in points if ci for c in ci] + bounds
    y = _scale(values, HEIGHT - MARGIN, 22)
    layers = [layer for layer, _, _ in points]
    x = _scale(layers if len(layers) > 1 else [layers[0] - 1, layers[0] + 1], MARGIN, WIDTH - 10)
    band = ""
    if all(ci for _, _, ci in points):
        upper = [f"{x(layer):.1f},{y(ci[1]):.1f}" for layer, _, ci in points]
        lower = [f"{x(layer):.1f},{y(ci[0]):.1f}" for layer, _, ci in reversed(points)]
        band = f"<polygon points='{' '.join(upper + lower)}' fill='{IMAGE_COLOUR}' fill-opacity='0.2'/>"
    line = f"<polyline points='{' '.join(f'{x(layer):.1f},{y(v):.1f}' for layer, v, _ in points)}' fill='none' stroke='{IMAGE_COLOUR}'/>"
    dots = "".join(f"<circle cx='{x(layer):.1f}' cy='{y(v):.1f}' r='2.5' fill='{IMAGE_COLOUR}'/>" for layer, v, _ in points)
    bound_lines = "".join(f"<line x1='{MARGIN}' x2='{WIDTH - 10}' y1='{y(b):.1f}' y2='{y(b):.1f}' stroke='#b00' stroke-dasharray='4 3'/>"
                          for b in bounds)
    ticks = "".join(f"<text x='{x(layer):.1f}' y='{HEIGHT - MARGIN + 14}' text-anchor='middle' font-size='10'>{layer}</text>"
                    for layer in layers)
    extremes = f"<text x='2' y='26' font-size='9'>{max(values):.3g}</text>" \
               f"<text x='2' y='{HEIGHT - MARGIN}' font-size='9'>{min(values):.3g}</text>"
    axis = f"<text x='{WIDTH / 2}' y='{HEIGHT - 4}' text-anchor='middle' font-size='10'>decoder layer</text>"
    return (f"<svg width='{WIDTH}' height='{HEIGHT}' xmlns='http://www.w3.org/2000/svg'>{title}{band}{line}{dots}"
            f"{bound_lines}{ticks}{extremes}{axis}</svg>")


def scatter_svg(projection: dict) -> str:
    """Image (blue) and text (orange) keys of one layer on the top-2 principal components."""
    image, text = projection["image"], projection["text"]
    everything = image + text
    x = _scale([p[0] for p in everything], 10, WIDTH - 10)
    y = _scale([p[1] for p in everything], HEIGHT - 10, 22)
    dots = "".join(f"<circle cx='{x(px):.1f}' cy='{y(py):.1f}' r='2' fill='{colour}' fill-opacity='0.6'/>"
                   for points, colour in ((text, TEXT_COLOUR), (image, IMAGE_COLOUR)) for px, py in points)
    title = (f"<text x='{WIDTH / 2}' y='14' text-anchor='middle' font-size='12'>layer {projection['layer']}: "
             f"<tspan fill='{IMAGE_COLOUR}'>image</tspan> vs <tspan fill='{TEXT_COLOUR}'>text</tspan></text>")
    return f"<svg width='{WIDTH}' height='{HEIGHT}' xmlns='http://www.w3.org/2000/svg'>{title}{dots}</svg>"
