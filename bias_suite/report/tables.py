"""Text for every card format: numbers, estimates, metric headers, escaping, and the tables' headers."""

from __future__ import annotations

import html
import math

from bias_suite.gate.rows import ResultRow
from bias_suite.metrics.registry import spec_of

CARD_METRICS = ("jsd", "mmd2", "ratio", "logit_gap.question", "visual_share.question")


def format_number(value: float, sign: bool = False) -> str:
    """Three significant digits; no exponent from 1000 to 99999 (a ratio at its cap reads ``1000``, not
    ``1e+03``) and no negative zero. ``sign``: always show ``+`` or ``-``."""
    plus = "+" if sign else ""
    text = f"{value + 0.0:{plus}.3g}"  # + 0.0: -0.0 → 0.0
    if "e+03" in text or "e+04" in text:
        text = f"{float(text):{plus}.0f}"
    return text


def format_estimate(row: ResultRow | None) -> str:
    if row is None:
        return "—"
    if row.value is None or not math.isfinite(row.value):
        return "undefined" if row.status == "unchecked" else "error"
    text = format_number(row.value)
    if row.ci and all(map(math.isfinite, row.ci)):
        text += f" [{format_number(row.ci[0])}, {format_number(row.ci[1])}]"
    return text + (" *" if row.gated else "")


def arrow(metric: str) -> str:
    """``↑`` when higher values mean more text bias, ``↓`` when lower do, nothing for descriptive metrics."""
    return {"higher_is_worse": "↑", "lower_is_worse": "↓"}.get(spec_of(metric).direction or "", "")


def metric_header(metric: str) -> str:
    mark = arrow(metric)
    return f"{metric} ({mark} worse)" if mark else metric


def escape_markdown(text: object) -> str:
    """Text a user wrote (a model path, a benchmark file name) for Markdown: HTML special characters as
    entities (GitHub renders raw HTML in a comment), pipes escaped (table cells), newlines flattened."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def tolerance_of(metric: str) -> float | None:
    """The registry's tolerance of ``metric``: the unit the card's margins are counted in."""
    try:
        return spec_of(metric).tolerance
    except KeyError:
        return None


def escape_html(value: object) -> str:
    """Text for HTML (attributes too): ``& < > " '`` escaped."""
    return html.escape(str(value), quote=True)


def metric_family(metric: str) -> str | None:
    """``keyspace``, ``attention`` or ``behaviour`` for a row's metric; None for a row that names none (``*``)."""
    try:
        return spec_of(metric).family
    except KeyError:
        return None


# "detectable": the smallest true distance beyond a bound (or tolerance) this run flags with 80 % power, in the
# metric's units (about 1.4 half-widths of the interval on the side facing the bound)
GATED_HEADERS = ["model", "benchmark", "layer", "metric", "value [95% CI]", "bound", "margin (× tolerance)",
                 "detectable", "rule", "status"]
BEHAVIOUR_HEADERS = ["model", "benchmark", "behaviour", "value [95% CI]", "bound", "detectable", "status"]
CHANGE_HEADERS = ["model", "against", "benchmark", "layer", "metric", "baseline → candidate (change [95% CI])",
                  "tolerance", "detectable", "status"]
COUPLING_HEADERS = ["model", "benchmark", "layer", "visual_share", "visual_share_nosink", "logit_gap", "key_distance"]
SAMPLE_HEADERS = ["model", "benchmark", "sample", "image tokens", "margin (nats)", "correct", "layer",
                  "visual_share", "logit_gap", "key_distance"]
WORST_HEADERS = ["benchmark", "layer", "metric", "baseline → candidate (change [95% CI]) or value [95% CI]",
                 "bound or tolerance", "margin (× tolerance)", "detectable", "status"]


def format_detectable(value: float | None) -> str:
    """A detectable change for a table cell ("" when the row has no interval)."""
    return "" if value is None or not math.isfinite(value) else format_number(value)
