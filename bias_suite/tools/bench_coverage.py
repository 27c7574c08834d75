"""The statistical part of ``python -m bias_suite bench``: do the intervals cover, does a blessed gate stay
quiet on a re-run, and which changes does a paired comparison catch. Seeded synthetic populations with known
truth (:mod:`bias_suite.tools.populations`), a few dozen datasets per cell, so it runs in a few minutes.

* ``coverage_<metric>``: the share of datasets whose 95 % interval contains the metric's population value
  (``jsd``, ``auroc``: the estimator's expectation at the run's size), the worst over the cells — 8 and 16
  samples × a weak (2σ) and a strong (5σ) shift for the key-space metrics, 8 and 16 samples × two between-
  sample spreads for the attention metrics; ``text_preference_rate`` and ``rate_change`` (Newcombe, paired)
  are exact minima over the rate (8 and 16 samples). Target ≥ 0.90. (40 datasets per key-space cell, 160 per
  attention cell: a Monte-Carlo error of about ±0.03 and ±0.02.)
* ``false_alarm_rate``: a run is blessed (a ``max`` / ``min`` bound at its worst interval end plus the
  metric's tolerance, as ``--update-thresholds`` writes it) and the same checkpoint is gated again under 5
  other seeds (other samples, folds and draws): the share of gated rows that fail. Target 0.
* ``power_<metric>_shift<Δ>``: a checkpoint shifted by Δσ more than the blessed one on the same samples; the
  share of datasets whose paired change (paired jackknife-t) is judged beyond the metric's tolerance
  (``max_increase``). Δ = 0 is the change rule's false-alarm rate.
* ``ratio_<δ>sigma`` and ``ratio_30_over_3``: the mean ``ratio`` at 16 samples over planted shifts 0.5σ…30σ.
* ``template_intra_text``: ``intra_text`` with 24 of 32 text tokens from the template, and the share of
  datasets whose interval lies below 0 (``template_intra_text_negative``, target 0).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

import numpy as np
import torch

from bias_suite.gate.bless import _worst_end
from bias_suite.gate.rows import Bound, ResultRow, judge
from bias_suite.metrics import KeySpaceConfig, keyspace_metrics, summarise_attention
from bias_suite.metrics.behaviour import rate_estimate
from bias_suite.metrics.estimate import paired_change
from bias_suite.metrics.intervals import clopper_pearson, newcombe_paired
from bias_suite.metrics.registry import HIGHER_IS_WORSE, spec_of
from bias_suite.tools.populations import (
    ATTENTION_MEANS,
    AttentionPopulation,
    Population,
    attention_targets,
    binomial_coverage,
    classifier_targets,
    draw_attention,
    draw_keys,
    key_targets,
)
from bias_suite.vocabulary import Status

KEYSPACE_GATED = ("jsd", "auroc", "mmd2", "ratio", "centroid_cosine", "norm_ratio")
ATTENTION_GATED = (*ATTENTION_MEANS, "visual_heads_fraction")
SHIFTS = (2.0, 5.0)
SAMPLE_COUNTS = (8, 16)
SPREADS = (0.8, 1.5)
POWER_SHIFTS = (0.0, 0.5, 1.0, 2.0)
RATIO_SHIFTS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
CONFIG = KeySpaceConfig(n_bootstrap=200)  # the key-space intervals are jackknife-t: no replicate count matters


def keyspace_coverage(n_datasets: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{cell: {metric: coverage}}`` for the key-space metrics (cells ``"<S> samples, <δ>σ"``)."""
    out = {}
    for shift in SHIFTS:
        population = Population(delta=shift)
        for n_samples in SAMPLE_COUNTS:
            targets = {**key_targets(population),
                       **classifier_targets(population, n_samples, max(100, 2 * n_datasets), seed + 100_000)}
            hits = dict.fromkeys(KEYSPACE_GATED, 0)
            for i in range(n_datasets):
                pooled = keyspace_metrics(*draw_keys(population, n_samples, seed + i), CONFIG)[-1].metrics
                for name in KEYSPACE_GATED:
                    hits[name] += _covers(pooled[name], targets[name])
            out[f"{n_samples} samples, {shift:g}σ"] = {name: hits[name] / n_datasets for name in KEYSPACE_GATED}
    return out


def attention_coverage(n_datasets: int, seed: int = 0, n_bootstrap: int = 1000) -> dict[str, dict[str, float]]:
    """``{cell: {metric: coverage}}`` for the attention metrics (bootstrap-t means, the heads bracket)."""
    out = {}
    for spread in SPREADS:
        population = AttentionPopulation(sd_sample=spread)
        targets = attention_targets(population)
        for n_samples in SAMPLE_COUNTS:
            hits = dict.fromkeys(ATTENTION_GATED, 0)
            for i in range(n_datasets):
                result = summarise_attention(draw_attention(population, n_samples, seed + i), 0, "question",
                                             n_bootstrap, seed + i)
                for name in ATTENTION_GATED:
                    hits[name] += _covers(result.metrics[name], targets[name])
            out[f"{n_samples} samples, spread {spread:g}"] = {name: hits[name] / n_datasets for name in ATTENTION_GATED}
    return out


def rate_coverage() -> dict[str, float]:
    """Exact minimum coverage of the rate interval (Clopper–Pearson) and of the paired change (Newcombe)."""
    rate = min(binomial_coverage(n, clopper_pearson) for n in SAMPLE_COUNTS)
    return {"text_preference_rate": rate, "rate_change": min(paired_rate_coverage(n) for n in SAMPLE_COUNTS)}


def paired_rate_coverage(n: int) -> float:
    """The smallest exact coverage of Newcombe's paired interval over 45 joint distributions of two runs' 0/1
    outcomes on the same n samples (p11 ∈ {.1, .3, .6}, p10, p01 ∈ {0, .05, .15, .3})."""
    from scipy.stats import multinomial

    outcomes = [(a, b, c, n - a - b - c) for a in range(n + 1) for b in range(n + 1 - a) for c in range(n + 1 - a - b)]
    intervals = {counts: newcombe_paired(*counts) for counts in outcomes}
    worst = 1.0
    for p11 in (0.1, 0.3, 0.6):
        for p10 in (0.0, 0.05, 0.15, 0.3):
            for p01 in (0.0, 0.05, 0.15, 0.3):
                p00 = 1 - p11 - p10 - p01
                if p00 < 0:
                    continue
                truth = p01 - p10
                law = multinomial(n, [p11, p10, p01, p00])
                covered = sum(law.pmf(counts) for counts, (low, high) in intervals.items() if low <= truth <= high)
                worst = min(worst, float(covered))
    return worst


def false_alarm_rate(n_reruns: int = 5, n_samples: int = 16, seed: int = 0) -> tuple[float, int]:
    """``(share of failing rows, rows judged)``: bless once, gate 5 re-runs of the same checkpoints under other
    seeds. Checkpoints: the 2σ and 5σ key populations (``mmd2``, ``ratio``), two attention populations
    (``visual_share``, ``logit_gap``) and a 0/1 outcome of rate 0.3 (``text_preference_rate``)."""
    def runs(run_seed: int) -> Iterable[tuple[str, str, object]]:
        for shift in SHIFTS:
            pooled = keyspace_metrics(*draw_keys(Population(delta=shift), n_samples, run_seed), CONFIG)[-1].metrics
            yield from ((f"keys {shift:g}σ", name, pooled[name]) for name in ("mmd2", "ratio"))
        for spread in SPREADS:
            result = summarise_attention(draw_attention(AttentionPopulation(sd_sample=spread), n_samples, run_seed), 0,
                                         "question", 1000, run_seed)
            yield from ((f"attention {spread:g}", f"{name}.question", result.metrics[name])
                        for name in ("visual_share", "logit_gap"))
        outcomes = torch.from_numpy(np.random.default_rng(run_seed).random(n_samples) < 0.3)
        yield "conflict", "text_preference_rate", rate_estimate(outcomes, 1000, run_seed)

    bounds = {}
    for where, metric, estimate in runs(seed):
        spec = spec_of(metric)
        higher = spec.direction == HIGHER_IS_WORSE
        row = ResultRow("blessed", where, None, None, metric, estimate.value, estimate.ci, Status.UNCHECKED)
        bounds[where, metric] = Bound(_worst_end([row], higher, point=False, margin=spec.tolerance or 0.0),
                                      spec.direction)
    failures = judged = 0
    for rerun in range(1, n_reruns + 1):
        for where, metric, estimate in runs(seed + 1000 * rerun):
            judged += 1
            failures += judge(estimate.value, estimate.ci, bounds[where, metric]) is Status.FAIL
    return failures / judged, judged


def power(n_datasets: int, n_samples: int = 16, base_shift: float = 2.0, seed: int = 0) -> dict[str, float]:
    """``{"<metric>_shift<Δ>": share of datasets whose paired change is judged beyond the tolerance}``."""
    population = Population(delta=base_shift)
    out = {}
    blessed = [keyspace_metrics(*draw_keys(population, n_samples, seed + i), CONFIG)[-1].metrics
               for i in range(n_datasets)]
    for extra in POWER_SHIFTS:
        caught = {"mmd2": 0, "ratio": 0}
        for i in range(n_datasets):
            candidate = (blessed[i] if extra == 0 else keyspace_metrics(
                *draw_keys(population, n_samples, seed + i, delta=base_shift + extra), CONFIG)[-1].metrics)
            for name in caught:
                change = paired_change(candidate[name], blessed[i][name])
                caught[name] += bool(change.ci is not None and change.ci_low > spec_of(name).tolerance)
        out.update({f"{name}_shift{extra:g}": hits / n_datasets for name, hits in caught.items()})
    return out


def ratio_curve(n_datasets: int, n_samples: int = 16, seed: int = 0) -> dict[float, float]:
    """Mean ``ratio`` over datasets at each planted shift (σ)."""
    return {shift: statistics.fmean(
        keyspace_metrics(*draw_keys(Population(delta=shift), n_samples, seed + i), CONFIG)[-1].metrics["ratio"].value
        for i in range(n_datasets)) for shift in RATIO_SHIFTS}


def template_intra(n_datasets: int, n_samples: int = 16, seed: int = 0) -> tuple[float, float]:
    """``(mean intra_text, share of intervals below 0)`` with 24 of 32 text tokens from the template."""
    population = Population(delta=2.0, n_template=24)
    values, negative = [], 0
    for i in range(n_datasets):
        estimate = keyspace_metrics(*draw_keys(population, n_samples, seed + i), CONFIG)[-1].metrics["intra_text"]
        values.append(estimate.value)
        negative += estimate.ci_high < 0
    return statistics.fmean(values), negative / n_datasets


def _covers(estimate, target: float) -> bool:
    return bool(estimate.ci is not None and math.isfinite(estimate.ci_low)
                and estimate.ci_low <= target <= estimate.ci_high)


def run_coverage(quick: bool = False) -> dict[str, float]:
    """Every figure of this module (``quick``: a handful of datasets, figures not meaningful)."""
    n_datasets = 4 if quick else 40
    figures: dict[str, float] = {"coverage_datasets_per_cell": n_datasets}
    cells = {**keyspace_coverage(n_datasets), **attention_coverage(4 * n_datasets)}  # attention is cheap
    for name in (*KEYSPACE_GATED, *ATTENTION_GATED):
        figures[f"coverage_{name}"] = min(cell[name] for cell in cells.values() if name in cell)
    figures.update({f"coverage_{name}": value for name, value in rate_coverage().items()})
    figures["false_alarm_rate"], figures["false_alarm_rows"] = false_alarm_rate(n_reruns=2 if quick else 5)
    figures.update({f"power_{name}": value for name, value in power(n_datasets // 2).items()})
    curve = ratio_curve(2 if quick else 5)
    figures.update({f"ratio_{shift:g}sigma": value for shift, value in curve.items()})
    figures["ratio_30_over_3"] = curve[30.0] / curve[3.0]
    figures["template_intra_text"], figures["template_intra_text_negative"] = template_intra(n_datasets // 2)
    return figures
