"""Comparing a run with a baseline run's JSON card: the change of every metric, paired by replicate.

Both runs drew the same bootstrap replicates when they measured the same samples with the same seed
(the replicate weights depend on nothing else), so the change of a metric has a paired bootstrap
interval: replicate ``r`` of the change is replicate ``r`` of the run minus replicate ``r`` of the
baseline. Runs on other samples, seeds or settings are refused, naming the difference.

The change is reported in each metric's worse direction ("increase" = more bias): ``max_increase``
rules bound it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from bias_suite.errors import BaselineError
from bias_suite.gate.judge import rule_reference
from bias_suite.gate.rows import Bound, ResultRow, judge
from bias_suite.metrics.estimate import with_interval
from bias_suite.metrics.registry import HIGHER_IS_WORSE, spec_of
from bias_suite.vocabulary import Status

COMPARED_SETTINGS = ("n_samples", "max_tokens_per_modality", "seed")


@dataclass(frozen=True)
class Baseline:
    """A previous run's JSON card, as far as comparing needs it."""

    path: Path
    models: tuple[str, ...]
    rows: Mapping[tuple, ResultRow]  # pooled rows with replicates, by (model, benchmark, layer, metric)
    benchmarks: Mapping[str, Mapping]  # name → {n_samples, hash}
    settings: Mapping[str, object]


@dataclass(frozen=True)
class Change:
    """The change of one pooled metric against the baseline, in its worse direction (positive: more bias)."""

    model: str
    baseline_model: str
    benchmark: str
    layer: int | None
    metric: str
    increase: float
    ci: tuple[float, float] | None
    status: Status  # judged by a max_increase rule, else unchecked
    bound: float | None = None
    rule: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    def to_json(self) -> dict:
        def finite(x):
            return x if x is not None and math.isfinite(x) else None

        return {"model": self.model, "baseline_model": self.baseline_model, "benchmark": self.benchmark,
                "layer": self.layer, "metric": self.metric, "increase": finite(self.increase),
                "ci": list(self.ci) if self.ci and all(map(math.isfinite, self.ci)) else None,
                "bound": self.bound, "rule": self.rule, "status": Status(self.status).value}


def load_baseline(path: str | Path) -> Baseline:
    """Read a card written with ``--bias-report=….json``; it must carry replicates (cards do)."""
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"--bias-baseline {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BaselineError(f"--bias-baseline {path}: not a JSON card ({error})") from None
    if not isinstance(card, dict) or "results" not in card:
        raise BaselineError(f"--bias-baseline {path}: not a bias report card (no 'results')")
    rows = {}
    for entry in card["results"]:
        row = ResultRow.from_json(entry)
        if row.head is None and row.replicates is not None:
            rows[(row.model, row.benchmark, row.layer, row.metric)] = row
    if not rows:
        raise BaselineError(f"--bias-baseline {path}: the card has no bootstrap replicates to pair with "
                            "(write it with this version of bias-suite)")
    return Baseline(path, tuple(model["spec"] for model in card.get("models", [])), rows,
                    {b["name"]: b for b in card.get("benchmarks", [])}, card.get("settings") or {})


def incompatibilities(baseline: Baseline, benchmarks: Mapping[str, Mapping],
                      settings: Mapping[str, object]) -> list[str]:
    """Why the run cannot be paired with the baseline (empty when it can)."""
    problems = []
    for key in COMPARED_SETTINGS:
        if key in baseline.settings and baseline.settings[key] != settings.get(key):
            problems.append(f"{key}: baseline {baseline.settings[key]}, this run {settings.get(key)}")
    for name, info in sorted(benchmarks.items()):
        other = baseline.benchmarks.get(name)
        if other is None:
            problems.append(f"benchmark {name!r} is not in the baseline ({', '.join(baseline.benchmarks) or 'none'})")
        elif other.get("hash") != info.get("hash"):
            problems.append(f"benchmark {name!r}: other samples (hash {info.get('hash')}, "
                            f"baseline {other.get('hash')})")
    return problems


def compare(rows: Sequence[ResultRow], baseline: Baseline, thresholds: Mapping[str, object],
            n_layers: Mapping[str, int]) -> list[Change]:
    """The change of every pooled row that has replicates and a counterpart in the baseline; judged by the
    ``max_increase`` rules of each model's threshold file (``thresholds``: model → ThresholdFile)."""
    changes = []
    for row in rows:
        if row.head is not None or row.replicates is None or row.value is None or not math.isfinite(row.value):
            continue
        baseline_model = row.model if row.model in baseline.models or len(baseline.models) != 1 else baseline.models[0]
        other = baseline.rows.get((baseline_model, row.benchmark, row.layer, row.metric))
        if other is None or other.value is None or len(other.replicates) != len(row.replicates):
            continue
        sign = 1.0 if spec_of(row.metric).direction in (HIGHER_IS_WORSE, None) else -1.0
        increase = sign * (row.value - other.value)
        paired = sign * (torch.tensor(row.replicates, dtype=torch.float64)
                         - torch.tensor(other.replicates, dtype=torch.float64))
        estimate = with_interval(increase, paired)
        status, bound, reference = Status.UNCHECKED, None, None
        threshold = thresholds.get(row.model)
        if threshold is not None:
            for rule in threshold.rules_for(row.metric, row.benchmark, row.layer, n_layers.get(row.model, 0)):
                if rule.on_change:
                    judged = judge(estimate.value, estimate.ci, Bound(rule.bound.limit, HIGHER_IS_WORSE))
                    if status is Status.UNCHECKED or judged in (Status.FAIL, Status.ERROR) or (
                            judged is Status.WARN and status is Status.PASS):
                        status, bound, reference = judged, rule.bound.limit, rule_reference(threshold, rule)
        changes.append(Change(row.model, baseline_model, row.benchmark, row.layer, row.metric, estimate.value,
                              estimate.ci, status, bound, reference))
    return changes
