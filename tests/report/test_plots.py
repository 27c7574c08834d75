"""The card's SVG plots: round covering ticks, bounds at their own layers, models on one set of axes,
shared heatmap colour scales, honest scatter aspect."""

from __future__ import annotations

import math
import re
from xml.etree import ElementTree

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bias_suite.gate.rows import ResultRow
from bias_suite.metrics.registry import HIGHER_IS_WORSE
from bias_suite.report.svg import (
    BOUND_COLOUR,
    Axis,
    heatmap_axis,
    heatmap_svg,
    layer_curves_svg,
    nice_ticks,
    scatter_svg,
    value_axis,
)


def _row(model: str, layer: int, value: float, bound: float | None = None, head: int | None = None,
         metric: str = "mmd2", status: str | None = None) -> ResultRow:
    return ResultRow(model, "photos", layer, head, metric, value,
                     None if head is not None else (value - 0.02, value + 0.02),
                     status or ("unchecked" if bound is None else "pass"), bound=bound, direction=HIGHER_IS_WORSE,
                     rule=None if bound is None else "t.yaml rules[0]")


def _svg(text: str) -> ElementTree.Element:
    return ElementTree.fromstring(text)


def _point_x(svg: ElementTree.Element, model: str, layer: int) -> float:
    for circle in svg.iter("circle"):
        title = circle.find("title")
        if title is not None and title.text.startswith(f"{model}, layer {layer}:"):
            return float(circle.get("cx"))
    raise AssertionError(f"no point of {model} at layer {layer}")


def _bound_segments(svg: ElementTree.Element) -> list[ElementTree.Element]:
    return [line for line in svg.iter("line") if line.get("stroke") == BOUND_COLOUR and line.find("title") is not None]


# ------------------------------------------------------------------------------------------- ticks

_STEP_MANTISSAS = (1.0, 2.0, 2.5, 5.0)


@given(st.floats(-1e6, 1e6), st.floats(1e-6, 1e6), st.integers(3, 8))
def test_nice_ticks_are_round_equally_spaced_and_cover_the_range(low, span, count):
    assume(span > 1e-6 * abs(low))  # a range resolvable in float64 with room to spare
    high = low + span
    ticks = nice_ticks(low, high, count)
    step = float(f"{ticks[1] - ticks[0]:.6g}")
    assert ticks[0] <= low + 1e-6 * step and ticks[-1] >= high - 1e-6 * step
    assert 2 <= len(ticks) <= count + 2
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in _STEP_MANTISSAS), step
    for index, tick in enumerate(ticks):
        multiple = tick / step
        assert math.isclose(multiple, round(multiple), rel_tol=1e-9, abs_tol=1e-6), (tick, step)
        assert math.isclose(tick, ticks[0] + index * step, rel_tol=1e-9, abs_tol=1e-6 * step)


def test_nice_ticks_of_one_value_surround_it():
    ticks = nice_ticks(0.3, 0.3)
    assert ticks[0] < 0.3 < ticks[-1]
    assert nice_ticks(float("nan"), 1.0) == []


def test_tick_labels_share_the_decimals_their_step_needs():
    axis = value_axis([-0.0138, 0.00448])
    assert [axis.label(t) for t in axis.ticks] == ["−0.015", "−0.010", "−0.005", "0", "0.005"]
    assert [Axis((0.4, 0.6, 0.8, 1.0)).label(t) for t in (0.4, 0.6, 0.8, 1.0)] == ["0.4", "0.6", "0.8", "1.0"]


def test_a_wide_positive_range_is_drawn_on_a_log_axis_only_where_the_metric_allows_it():
    assert value_axis([0.5, 1000.0], allow_log=True) == Axis((0.1, 1.0, 10.0, 100.0, 1000.0), log=True)
    assert not value_axis([0.5, 1000.0]).log
    assert not value_axis([-1.0, 1000.0], allow_log=True).log


def test_values_equal_but_for_rounding_get_a_plain_axis_around_them():
    """Per-head ratios at their cap, 999.9999999999999 and 1000.0000000000001, are one value."""
    axis = value_axis([999.9999999999999, 1000.0, 1000.0000000000001])
    assert axis.low < 1000 < axis.high
    assert len({axis.label(t) for t in axis.ticks}) == len(axis.ticks)
    assert all("e" not in axis.label(t) for t in axis.ticks)


# ------------------------------------------------------------------------------------------- curves


def test_a_bound_is_drawn_at_its_own_layer_only():
    rows = [_row("m", 0, 0.1), _row("m", 1, 0.2), _row("m", 2, 0.25, bound=0.3), _row("m", 3, 0.2)]
    svg = _svg(layer_curves_svg({"m": rows}, "mmd2", "photos"))
    (segment,) = _bound_segments(svg)
    x1, x2 = float(segment.get("x1")), float(segment.get("x2"))
    assert (x1 + x2) / 2 == pytest.approx(_point_x(svg, "m", 2), abs=0.11)
    assert _point_x(svg, "m", 1) < x1 < x2 < _point_x(svg, "m", 3)
    assert "bound at layer 2: ≤ 0.3" in segment.find("title").text


def test_bounds_of_different_layers_sit_at_their_own_heights():
    rows = [_row("m", 0, 0.1, bound=0.4), _row("m", 1, 0.2), _row("m", 2, 0.3, bound=0.5)]
    svg = _svg(layer_curves_svg({"m": rows}, "mmd2", "photos"))
    segments = sorted(_bound_segments(svg), key=lambda line: float(line.get("x1")))
    assert [s.find("title").text for s in segments] == ["bound at layer 0: ≤ 0.4", "bound at layer 2: ≤ 0.5"]
    assert float(segments[0].get("y1")) > float(segments[1].get("y1"))  # 0.4 lower on the page than 0.5


def test_a_bound_far_beyond_the_data_is_marked_on_the_edge_not_stretching_the_axis():
    rows = [_row("m", layer, 0.001 * layer, bound=10.0, metric="logit_gap.question") for layer in range(3)]
    text = layer_curves_svg({"m": rows}, "logit_gap.question", "photos")
    svg = _svg(text)
    assert not _bound_segments(svg)
    markers = [p for p in svg.iter("polygon") if p.get("fill") == BOUND_COLOUR]
    assert len(markers) == 3
    assert "off the axis: ≤ 10" in text
    labels = [t.text for t in svg.iter("text") if t.get("text-anchor") == "end"]
    assert "10" not in labels


def test_a_bound_inside_the_drawn_axis_is_a_line_not_an_off_axis_marker():
    """A bound too far to stretch the axis for, but which the axis (rounded out for another bound) still
    covers, is drawn where it is: a triangle above a 0–0.3 axis once read as ≤ 0.285 lying off it."""
    values = (0.02, 0.04, 0.08, 0.12)  # with their intervals (± 0.02): a span of 0.14, from 0 to 0.14
    bounds = {1: 0.27, 3: 0.285}  # 0.27 lies within the span above the data, 0.285 does not
    rows = [_row("m", layer, value, bound=bounds.get(layer)) for layer, value in enumerate(values)]
    svg = _svg(layer_curves_svg({"m": rows}, "mmd2", "photos"))
    markers = [p for p in svg.iter("polygon") if p.get("fill") == BOUND_COLOUR]
    segments = sorted(_bound_segments(svg), key=lambda line: float(line.get("x1")))
    assert not markers
    assert [s.find("title").text for s in segments] == ["bound at layer 1: ≤ 0.27", "bound at layer 3: ≤ 0.285"]


def test_the_blessed_run_is_drawn_beside_the_models_curves():
    rows = [_row("m", layer, 0.1 * layer) for layer in range(3)]
    partners = {"blessed: ours-v1": [(0, 0.02), (1, 0.08), (2, 0.15)]}
    text = layer_curves_svg({"m": rows}, "mmd2", "photos", partners=partners)
    svg = _svg(text)
    (dashed,) = [line for line in svg.iter("polyline") if line.get("stroke-dasharray")]
    assert dashed.find("title").text == "blessed: ours-v1" and len(dashed.get("points").split()) == 3
    assert "blessed: ours-v1" in text.split("<polyline")[0]  # in the legend, before the curves


def test_models_are_overlaid_on_one_set_of_axes_with_a_legend():
    by_model = {"a": [_row("a", layer, 0.1 * layer) for layer in range(3)],
                "b": [_row("b", layer, 0.05 + 0.1 * layer) for layer in range(3)]}
    text = layer_curves_svg(by_model, "mmd2", "photos")
    svg = _svg(text)
    assert text.count("<svg") == 1
    polylines = list(svg.iter("polyline"))
    assert len(polylines) == 2 and polylines[0].get("stroke") != polylines[1].get("stroke")
    tick_labels = [t.text for t in svg.iter("text") if t.get("text-anchor") == "end"]
    assert len(tick_labels) == len(set(tick_labels)) >= 2  # one value axis, its ticks drawn once
    legend = [t.text for t in svg.iter("text")]
    assert "a" in legend and "b" in legend
    assert sum(1 for t in legend if t == "decoder layer") == 1
    for layer in range(3):
        assert _point_x(svg, "a", layer) == _point_x(svg, "b", layer)


def test_the_worse_direction_labels_the_value_axis():
    text = layer_curves_svg({"m": [_row("m", 0, 0.5, metric="visual_share.question")]}, "visual_share.question", "p")
    assert "visual_share.question (↓ worse)" in text


def test_warn_and_fail_points_are_ringed_and_explained_in_the_legend():
    rows = [_row("m", 0, 0.25, bound=0.3), _row("m", 1, 0.32, bound=0.3, status="warn"),
            _row("m", 2, 0.5, bound=0.3, status="fail")]
    svg = _svg(layer_curves_svg({"m": rows}, "mmd2", "photos"))
    rings = {c.find("title").text.rsplit("(", 1)[-1]: c.get("stroke") for c in svg.iter("circle") if c.get("stroke")
             and c.find("title") is not None}
    assert set(rings) == {"warn)", "fail)"}
    assert {"warn", "fail"} <= {t.text for t in svg.iter("text")}


def test_a_value_that_could_not_be_computed_is_marked_at_its_layer():
    rows = [_row("m", 0, 0.1), ResultRow("m", "photos", 1, None, "mmd2", float("nan"), None, "error",
                                         message="NaN keys")]
    text = layer_curves_svg({"m": rows}, "mmd2", "photos")
    assert "m, layer 1: not computed: NaN keys" in text


# ------------------------------------------------------------------------------------------- heatmaps


def _cell_fills(svg: ElementTree.Element) -> dict[str, str]:
    return {rect.find("title").text: rect.get("fill") for rect in svg.iter("rect") if rect.find("title") is not None}


def test_heatmaps_of_one_metric_share_a_colour_scale_with_a_colour_bar():
    rows_a = [_row("a", layer, 0.1 * (layer + head), head=head) for layer in range(3) for head in range(2)]
    rows_b = [_row("b", layer, 0.2, head=head) for layer in range(3) for head in range(2)]
    axis = heatmap_axis(rows_a + rows_b, "mmd2")
    svg_a = _svg(heatmap_svg(rows_a, "mmd2", "a", "photos", axis))
    svg_b = _svg(heatmap_svg(rows_b, "mmd2", "b", "photos", axis))
    assert _cell_fills(svg_a)["layer 1, KV head 1: 0.2"] == _cell_fills(svg_b)["layer 0, KV head 0: 0.2"]
    bar_labels = [t.text for t in svg_a.iter("text") if t.get("font-size") == "9"]
    assert bar_labels == [axis.label(t) for t in axis.ticks]
    assert {t.text for t in svg_a.iter("text")} >= {"L0", "L1", "L2", "0", "1", "KV head"}


def test_a_heatmap_cell_that_could_not_be_computed_is_grey():
    rows = [_row("a", 0, 0.1, head=0), _row("a", 0, float("nan"), head=1)]
    fills = _cell_fills(_svg(heatmap_svg(rows, "mmd2", "a", "photos")))
    assert fills["layer 0, KV head 1: not computed"] == "#bbbbbb"


# ------------------------------------------------------------------------------------------- scatters


def test_scatter_keeps_the_aspect_of_its_coordinates():
    points = {"image": [[0.0, 0.0], [10.0, 0.0]], "text": [[0.0, 2.0]]}
    svg = _svg(scatter_svg(points, "pca", "PCA · m · layer 0"))
    (text_mark,) = [r for r in svg.iter("rect") if r.get("width") == "3.6"]
    circles = sorted((float(c.get("cx")), float(c.get("cy"))) for c in svg.iter("circle") if c.get("r") == "2")
    (x0, y0), (x1, _) = circles
    text_y = float(text_mark.get("y")) + 1.8
    assert (x1 - x0) / (y0 - text_y) == pytest.approx(5.0, rel=0.02)
    assert svg.get("class") == "pca"
    assert re.search(r"image keys \(2\)", scatter_svg(points, "pca", "t"))
