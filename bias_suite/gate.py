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

from bias_suite.metrics import ATTENTION_METRICS, KEYSPACE_METRICS
from bias_suite.metrics.attention_share import QUERY_SETS

STATUSES = ("pass", "warn", "fail", "error", "unchecked")
SEVERITY = {"unchecked": 0, "pass": 1, "warn": 2, "fail": 3, "error": 4}
BEHAVIOUR_METRICS = ("text_preference_rate", "answer_accuracy")

# Which direction means "more text bias" for every metric name a rule can gate.
HIGHER_IS_WORSE = "higher_is_worse"
LOWER_IS_WORSE = "lower_is_worse"
_KEYSPACE_DIRECTIONS = {
    "jsd": HIGHER_IS_WORSE, "jsd_proj": HIGHER_IS_WORSE, "auroc": HIGHER_IS_WORSE, "mmd2": HIGHER_IS_WORSE,
    "mmd2_pvalue": LOWER_IS_WORSE, "intra_image": HIGHER_IS_WORSE, "intra_text": HIGHER_IS_WORSE,
    "ratio": HIGHER_IS_WORSE, "centroid_cosine": LOWER_IS_WORSE, "norm_ratio": LOWER_IS_WORSE,
    "frechet": HIGHER_IS_WORSE, "frechet_mean_share": HIGHER_IS_WORSE,
}
_ATTENTION_DIRECTIONS = {
    "visual_share": LOWER_IS_WORSE, "visual_share_norm": LOWER_IS_WORSE, "visual_share_nosink": LOWER_IS_WORSE,
    "logit_gap": HIGHER_IS_WORSE, "visual_heads_fraction": LOWER_IS_WORSE,
}
METRIC_DIRECTIONS: Mapping[str, str] = {
    **_KEYSPACE_DIRECTIONS,
    **{f"{name}.{query_set}": _ATTENTION_DIRECTIONS[name] for name in ATTENTION_METRICS for query_set in QUERY_SETS},
    "text_preference_rate": HIGHER_IS_WORSE,
    "answer_accuracy": LOWER_IS_WORSE,
}
assert set(_KEYSPACE_DIRECTIONS) == set(KEYSPACE_METRICS)


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
    finite = math.isfinite(value) and (ci is None or all(math.isfinite(x) for x in ci))
    if not finite:
        return "error"
    if bound is None:
        return "unchecked"
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
