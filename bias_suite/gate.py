"""The release gate: compare a measured estimate with a threshold rule.

* ``fail`` when the whole bootstrap interval lies beyond the bound (noise alone does not flip a release);
* ``warn`` when only the point estimate does;
* ``pass`` otherwise; ``unchecked`` when no rule covers the metric; ``error`` when the metric could not
  be computed (NaN/inf) — never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from bias_suite.metrics.registry import HIGHER_IS_WORSE, LOWER_IS_WORSE, metric_names, spec_of

STATUSES = ("pass", "warn", "fail", "error", "unchecked")
SEVERITY = {"unchecked": 0, "pass": 1, "warn": 2, "fail": 3, "error": 4}

# Which direction means "more text bias" for every metric name a row can carry (None: descriptive).
METRIC_DIRECTIONS: Mapping[str, str | None] = {name: spec_of(name).direction for name in metric_names()}


@dataclass(frozen=True)
class Bound:
    """A limit on one metric: ``limit`` with the direction in which values are worse."""

    limit: float
    direction: str  # HIGHER_IS_WORSE or LOWER_IS_WORSE

    def beyond(self, value: float) -> bool:
        return value > self.limit if self.direction == HIGHER_IS_WORSE else value < self.limit

    def describe(self) -> str:
        return f"{'≤' if self.direction == HIGHER_IS_WORSE else '≥'} {self.limit:.4g}"


@dataclass(frozen=True)
class ResultRow:
    """One line of the report card's ``results``: a metric of a model × benchmark × layer (× head)."""

    model: str
    benchmark: str
    layer: int | None
    head: int | None
    metric: str
    value: float | None
    ci: tuple[float, float] | None
    bound: float | None
    status: str
    direction: str | None = None
    message: str = ""

    def to_json(self) -> dict:
        row = asdict(self)
        row["ci"] = list(self.ci) if self.ci is not None else None
        for key in ("value", "bound"):
            if row[key] is not None and not math.isfinite(row[key]):
                row[key] = None
        if row["ci"] is not None and not all(math.isfinite(x) for x in row["ci"]):
            row["ci"] = None
        del row["direction"], row["message"]
        return row

    @property
    def sort_key(self) -> tuple:
        return (self.model, self.benchmark, -1 if self.layer is None else self.layer,
                -1 if self.head is None else self.head, self.metric)


def judge(value: float, ci: tuple[float, float] | None, bound: Bound | None) -> str:
    """The gate status of one estimate against one bound (see module docstring)."""
    if bound is None:
        return "unchecked"  # nothing gates it (an undefined descriptive value is shown as such)
    finite = math.isfinite(value) and (ci is None or all(math.isfinite(x) for x in ci))
    if not finite:
        return "error"
    if ci is None:
        return "fail" if bound.beyond(value) else "pass"
    nearest = ci[0] if bound.direction == HIGHER_IS_WORSE else ci[1]
    if bound.beyond(nearest):
        return "fail"
    if bound.beyond(value):
        return "warn"
    return "pass"


def worst(statuses) -> str:
    statuses = list(statuses)
    return max(statuses, key=SEVERITY.__getitem__) if statuses else "unchecked"
