"""What the gate judges and writes: a bound, a result row, and the status of one estimate against a bound.

* ``fail`` when the whole bootstrap interval lies beyond the bound (noise alone does not flip a release);
* ``warn`` when only the point estimate does;
* ``pass`` otherwise; ``unchecked`` when no rule covers the metric; ``error`` when a gated metric could
  not be computed (NaN/inf) or its rule cannot gate this run (settings it was not made with) — never a
  pass.

Rows stay typed (:class:`ResultRow`) until they cross a process boundary (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bias_suite.metrics.registry import HIGHER_IS_WORSE
from bias_suite.vocabulary import Status

REPLICATE_DIGITS = 6  # significant digits kept of each bootstrap replicate in reports
JACKKNIFE_DIGITS = 10  # of each leave-one-out value: a paired jackknife-t reads the differences between them


def stored_replicates(replicates: Iterable[float], digits: int = REPLICATE_DIGITS) -> tuple[float, ...]:
    """Replicates (or jackknife values, with :data:`JACKKNIFE_DIGITS`) as a card stores them (``digits``
    significant digits): paired changes use this form on both sides, so a change is the same whether its
    partner came from this run or from a card."""
    return tuple(float(f"{x:.{digits}g}") if math.isfinite(x) else x for x in replicates)


@dataclass(frozen=True)
class Bound:
    """A limit on one metric: ``limit`` with the direction in which values are worse."""

    limit: float
    direction: str  # HIGHER_IS_WORSE or LOWER_IS_WORSE

    @property
    def higher_is_worse(self) -> bool:
        return self.direction == HIGHER_IS_WORSE

    def beyond(self, value: float) -> bool:
        return value > self.limit if self.higher_is_worse else value < self.limit

    def describe(self) -> str:
        return f"{'≤' if self.higher_is_worse else '≥'} {self.limit:.4g}"

    def can_fail(self, natural_range: tuple[float, float]) -> bool:
        """False when no value in the metric's range lies beyond the bound."""
        low, high = natural_range
        return self.limit < high if self.higher_is_worse else self.limit > low

    def margin(self, value: float, ci: tuple[float, float] | None) -> float:
        """How far the interval end nearest to the bound stays inside it (negative: beyond), in the
        metric's units."""
        nearest = value if ci is None else (ci[0] if self.higher_is_worse else ci[1])
        return self.limit - nearest if self.higher_is_worse else nearest - self.limit


@dataclass(frozen=True)
class ResultRow:
    """One line of the report card: a metric of a model × benchmark × layer (× head; None: pooled)."""

    model: str
    benchmark: str
    layer: int | None
    head: int | None
    metric: str
    value: float | None
    ci: tuple[float, float] | None
    status: Status
    bound: float | None = None
    direction: str | None = None  # the metric's worse direction (None: descriptive)
    rule: str | None = None  # "file.yaml rules[3]" of the rule that set the status
    message: str = ""  # why a gated row errored
    replicates: tuple[float, ...] | None = field(default=None, compare=False)  # pooled rows, for --bias-baseline
    # pooled rows: the leave-one-sample-out values (samples in sorted-id order), for paired jackknife changes
    jackknife: tuple[float, ...] | None = field(default=None, compare=False)
    interval: str | None = field(default=None, compare=False)  # how the interval was made
    # the smallest true distance to a bound (metric units) this run detects with 80 % power
    detectable: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))  # "pass" and Status.PASS are the same status

    @property
    def gated(self) -> bool:
        return self.rule is not None

    @property
    def margin(self) -> float | None:
        """Distance from the interval end nearest to the bound to the bound (negative: beyond)."""
        if self.bound is None or self.value is None or self.direction is None:
            return None
        return Bound(self.bound, self.direction).margin(self.value, self.ci)

    @property
    def key(self) -> tuple:
        return (self.model, self.benchmark, self.layer, self.head, self.metric)

    @property
    def sort_key(self) -> tuple:
        return (self.model, self.benchmark, -1 if self.layer is None else self.layer,
                -1 if self.head is None else self.head, self.metric)

    def to_json(self, with_replicates: bool = True) -> dict:
        """A JSON-safe dict (non-finite numbers become null). ``with_replicates``: the leave-one-out values
        (``jackknife``), or where a row has none its bootstrap ``replicates``, for later paired changes."""
        def finite(x):
            return x if x is not None and math.isfinite(x) else None

        ci = list(self.ci) if self.ci is not None and all(math.isfinite(x) for x in self.ci) else None
        row = {"model": self.model, "benchmark": self.benchmark, "layer": self.layer, "head": self.head,
               "metric": self.metric, "value": finite(self.value), "ci": ci, "bound": finite(self.bound),
               "status": self.status.value, "direction": self.direction, "rule": self.rule}
        margin = self.margin
        row["margin"] = finite(margin) if margin is not None else None
        if self.message:
            row["message"] = self.message
        if self.interval is not None:
            row["interval"] = self.interval
        if self.detectable is not None and math.isfinite(self.detectable):
            row["detectable"] = self.detectable
        if with_replicates and self.jackknife is not None:
            row["jackknife"] = [x if math.isfinite(x) else None
                                for x in stored_replicates(self.jackknife, JACKKNIFE_DIGITS)]
        elif with_replicates and self.replicates is not None:
            row["replicates"] = [x if math.isfinite(x) else None for x in stored_replicates(self.replicates)]
        return row

    @classmethod
    def from_json(cls, row: Mapping) -> ResultRow:
        def values(key: str) -> tuple[float, ...] | None:
            stored = row.get(key)
            return None if stored is None else tuple(float("nan") if x is None else x for x in stored)

        return cls(
            model=row["model"], benchmark=row["benchmark"], layer=row["layer"], head=row["head"], metric=row["metric"],
            value=float("nan") if row["value"] is None else row["value"],
            ci=tuple(row["ci"]) if row.get("ci") else None, status=Status(row["status"]), bound=row.get("bound"),
            direction=row.get("direction"), rule=row.get("rule"), message=row.get("message", ""),
            replicates=values("replicates"), jackknife=values("jackknife"), interval=row.get("interval"),
            detectable=row.get("detectable"),
        )


def judge(value: float, ci: tuple[float, float] | None, bound: Bound | None) -> Status:
    """The gate status of one estimate against one bound (see module docstring)."""
    if bound is None:
        return Status.UNCHECKED  # nothing gates it (an undefined descriptive value is shown as such)
    finite = math.isfinite(value) and (ci is None or all(math.isfinite(x) for x in ci))
    if not finite:
        return Status.ERROR
    if ci is None:
        return Status.FAIL if bound.beyond(value) else Status.PASS
    nearest = ci[0] if bound.higher_is_worse else ci[1]
    if bound.beyond(nearest):
        return Status.FAIL
    if bound.beyond(value):
        return Status.WARN
    return Status.PASS


def worst(statuses: Iterable[Status | str]) -> Status:
    """The most severe of ``statuses`` (``unchecked`` when there are none)."""
    return max(map(Status, statuses), key=lambda status: status.severity, default=Status.UNCHECKED)
