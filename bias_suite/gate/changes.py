"""Paired changes: a candidate against the run it must not be worse than, sample by sample.

Two measurements of the same samples (same seed) are paired by their leave-one-sample-out values: the
change's interval is a jackknife-t on the differences of the two runs' jackknife values (Newcombe's paired
interval for rates), computed by :func:`bias_suite.metrics.estimate.paired_change`. A partner without
jackknife values (a card of an older version) is paired replicate by replicate instead: the two runs drew
the same bootstrap weights, so replicate ``r`` of the change is replicate ``r`` of the candidate minus
replicate ``r`` of its partner. The partner is a reference measured in the same run (``--bias-reference``),
the blessed run stored beside a family file, or a previous run's card (``--bias-baseline``).

Each change is taken in its metric's worse direction (positive: more text bias) and judged against a
tolerance ``t`` (a ``max_increase`` rule, a file's ``policy`` or the registry's default):

* **GO** (``pass``): the whole interval lies at or below ``t``;
* **NO-GO** (``fail``): the whole interval lies above ``t``;
* **INCONCLUSIVE**: the interval straddles ``t``, or the two runs cannot be paired (other samples, seed,
  another number of leave-one-out values or replicates), named in the message;
* ``error``: the change could not be computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from bias_suite.gate.rows import JACKKNIFE_DIGITS, ResultRow, stored_replicates
from bias_suite.metrics.estimate import Estimate
from bias_suite.metrics.estimate import paired_change as paired_estimate
from bias_suite.metrics.registry import HIGHER_IS_WORSE, LOWER_IS_WORSE, spec_of
from bias_suite.vocabulary import Status

# What a change is judged against: (tolerance, where it comes from), or None when nothing bounds it.
Tolerance = Callable[[ResultRow], "tuple[float, str] | None"]


@dataclass(frozen=True)
class Change:
    """The change of one pooled metric against its partner, in the worse direction (positive: more bias)."""

    model: str
    baseline_model: str  # the partner: the reference, the blessed model or the baseline card's model
    benchmark: str
    layer: int | None
    metric: str
    increase: float
    ci: tuple[float, float] | None
    status: Status
    bound: float | None = None  # the tolerance
    rule: str | None = None  # where the tolerance comes from ("ours.yaml rules[7]", "registry default", …)
    against: str = "baseline"  # reference, blessed or baseline
    baseline_value: float | None = None
    value: float | None = None
    message: str = ""
    detectable: float | None = None  # the smallest true increase beyond the tolerance detected with 80 % power
    interval: str | None = None  # how the change's interval was made

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    @property
    def straddles(self) -> bool:
        """An inconclusive change of two runs that could be paired: it may be a regression."""
        return self.status is Status.INCONCLUSIVE and not self.message.startswith("not comparable")

    @property
    def margin_units(self) -> float | None:
        """How far the interval end nearest the tolerance stays inside it, in multiples of the tolerance
        (negative: beyond)."""
        if self.bound is None or not self.bound or not math.isfinite(self.increase):
            return None
        nearest = self.ci[1] if self.ci else self.increase
        return (self.bound - nearest) / self.bound

    def to_json(self) -> dict:
        def finite(x):
            return x if x is not None and math.isfinite(x) else None

        data = {"model": self.model, "baseline_model": self.baseline_model, "benchmark": self.benchmark,
                "layer": self.layer, "metric": self.metric, "increase": finite(self.increase),
                "ci": list(self.ci) if self.ci and all(map(math.isfinite, self.ci)) else None,
                "bound": self.bound, "rule": self.rule, "status": self.status.value, "against": self.against,
                "baseline_value": finite(self.baseline_value), "value": finite(self.value)}
        if self.message:
            data["message"] = self.message
        if self.detectable is not None and math.isfinite(self.detectable):
            data["detectable"] = self.detectable
        if self.interval is not None:
            data["interval"] = self.interval
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> Change:
        def number(x):
            return float("nan") if x is None else x

        return cls(data["model"], data["baseline_model"], data["benchmark"], data["layer"], data["metric"],
                   number(data["increase"]), tuple(data["ci"]) if data.get("ci") else None, data["status"],
                   data.get("bound"), data.get("rule"), data.get("against", "baseline"),
                   data.get("baseline_value"), data.get("value"), data.get("message", ""), data.get("detectable"),
                   data.get("interval"))


def judge_change(increase: float, ci: tuple[float, float] | None, tolerance: float) -> tuple[Status, str]:
    """GO / NO-GO / INCONCLUSIVE of one change against ``tolerance`` (see the module docstring)."""
    values = [increase, *(ci or ())]
    if not all(math.isfinite(x) for x in values):
        return Status.ERROR, "the change could not be computed (NaN or inf)"
    low, high = ci if ci is not None else (increase, increase)
    if low > tolerance:
        return Status.FAIL, ""
    if high <= tolerance:
        return Status.PASS, ""
    return Status.INCONCLUSIVE, f"the interval [{low:.4g}, {high:.4g}] straddles the tolerance {tolerance:.4g}"


def worse_sign(metric: str) -> float:
    """+1 when higher values of ``metric`` mean more bias (or it has no direction), −1 when lower do."""
    return -1.0 if spec_of(metric).direction == LOWER_IS_WORSE else 1.0


def paired_change(row: ResultRow, partner: ResultRow, tolerance: tuple[float, str] | None, against: str,
                  not_comparable: str | None = None) -> Change:
    """The change of ``row`` against ``partner`` (the same metric, benchmark and layer of the other run).

    Paired by sample (:func:`bias_suite.metrics.estimate.paired_change`) when ``not_comparable`` is None and
    the two can be paired; otherwise the point difference only, INCONCLUSIVE for the reason given."""
    sign = worse_sign(row.metric)
    value, other = float(row.value), float(partner.value)
    increase = sign * (value - other)
    bound, source = tolerance if tolerance is not None else (None, None)
    base = Change(row.model, partner.model, row.benchmark, row.layer, row.metric, increase, None, Status.UNCHECKED,
                  bound, source, against, other, value)
    estimate = None
    if not_comparable is None:
        estimate = paired_estimate(_as_stored(row), _as_stored(partner), sign, against)
        if estimate.undefined_because is not None:
            not_comparable = estimate.undefined_because
    if not_comparable is not None:
        status = Status.UNCHECKED if tolerance is None else Status.INCONCLUSIVE
        return replace(base, status=status, message=not_comparable)
    paired = replace(base, increase=estimate.value, ci=estimate.ci, interval=estimate.interval,
                     detectable=estimate.detectable(HIGHER_IS_WORSE))
    if tolerance is None:
        return paired
    status, message = judge_change(estimate.value, estimate.ci, bound)
    return replace(paired, status=status, message=message)


def _as_stored(row: ResultRow) -> Estimate:
    """A row's value with its jackknife values and replicates as a card stores them (both sides of a change
    are rounded alike, so it is the same whether its partner came from this run or from a card)."""
    return Estimate(float(row.value), replicates=None if row.replicates is None else stored_replicates(row.replicates),
                    jackknife=None if row.jackknife is None else stored_replicates(row.jackknife, JACKKNIFE_DIGITS),
                    interval=row.interval)


def paired_changes(rows: Sequence[ResultRow], partners: Mapping[tuple, ResultRow], partner_model: str,
                   tolerance: Tolerance, against: str, not_comparable: str | None = None,
                   judged_only: bool = False) -> list[Change]:
    """The change of every pooled, finite row of ``rows`` that has a partner in ``partners`` (keyed by
    ``(partner_model, benchmark, layer, metric)``), judged by ``tolerance`` (``judged_only``: only the
    rows a tolerance bounds)."""
    changes = []
    for row in rows:
        if row.head is not None or row.value is None or not math.isfinite(row.value) or row.metric == "*":
            continue
        bound = tolerance(row)
        if judged_only and bound is None:
            continue
        partner = partners.get((partner_model, row.benchmark, row.layer, row.metric))
        if partner is None or partner.value is None or not math.isfinite(partner.value):
            continue
        changes.append(paired_change(row, partner, bound, against, not_comparable))
    return changes
