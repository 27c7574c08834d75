"""Coupling: does what a sample does inside the model predict what it does outside?

Per model, layer and benchmark, the **Spearman rank correlation** over samples between an internal
per-sample measure (``visual_share``, ``visual_share_nosink``, ``logit_gap`` of the question rows, the
sample's ``key_distance``; :class:`~bias_suite.metrics.samples.SampleRecord`) and a continuous behaviour
outcome (by default the probe answer's ``margin``: the nats by which the image-true answer beats the best
other candidate). A rank correlation asks only whether more of one goes with more of the other, so it is
unchanged by any monotone rescaling of either — the units of attention shares and log-likelihoods do not
matter — and robust to the heavy tails of margins.

The interval is a percentile interval of a **cluster bootstrap**: whole clusters (items) are drawn with
replacement, so observations that share an item (queries of one item, pooled) move together. Each
replicate's Spearman is computed exactly on the resample (mid-ranks of tied and duplicated values) from
multiplicity weights, without materialising it. Its coverage is measured on synthetic data with a known
population value (``tests/metrics/test_coupling.py``); the coupling metrics are gateable only because it
held there (:data:`bias_suite.metrics.registry.COUPLING_COVERAGE_OK`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from bias_suite.metrics.estimate import Estimate, bootstrap_weights, with_interval

MIN_COUPLING_SAMPLES = 5
UNDEFINED_CONSTANT = "one of the two per-sample values is the same for every sample, so no rank correlation exists"


def average_ranks(values: Tensor, weights: Tensor) -> Tensor:
    """Mid-ranks of ``values`` (``[n]``) in the samples that ``weights`` (``[R, n]`` multiplicities) describe:
    ``[R, n]``, the rank each observation has (ties and copies share the mean of their positions, 1-based)."""
    unique, inverse = torch.unique(values, return_inverse=True)
    counts = torch.zeros(weights.shape[0], unique.numel(), dtype=weights.dtype).index_add_(1, inverse, weights)
    below = counts.cumsum(1) - counts
    return (below + (counts + 1) / 2)[:, inverse]


def weighted_pearson(x: Tensor, y: Tensor, weights: Tensor) -> Tensor:
    """Pearson correlation of ``x`` and ``y`` (``[R, n]``) with observation weights ``[R, n]``: ``[R]``, NaN
    where either has no spread."""
    total = weights.sum(1, keepdim=True)
    dx = x - (weights * x).sum(1, keepdim=True) / total
    dy = y - (weights * y).sum(1, keepdim=True) / total
    covariance = (weights * dx * dy).sum(1)
    scale = ((weights * dx * dx).sum(1) * (weights * dy * dy).sum(1)).sqrt()
    return torch.where(scale > 1e-12 * total.squeeze(1) ** 3, covariance / scale, torch.full_like(scale, math.nan))


def weighted_spearman(x: Tensor, y: Tensor, weights: Tensor) -> Tensor:
    """Spearman's ρ of ``x`` and ``y`` (``[n]``) in each resample ``weights`` (``[R, n]``): ``[R]``."""
    return weighted_pearson(average_ranks(x, weights), average_ranks(y, weights), weights)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ (mid-ranks for ties) of two equally long sequences."""
    x_, y_ = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    return float(weighted_spearman(x_, y_, torch.ones(1, len(x_), dtype=torch.float64))[0])


def rank_coupling(internal: Sequence[float], outcome: Sequence[float], clusters: Sequence[str] | None = None,
                  n_bootstrap: int = 200, seed: int = 0) -> Estimate:
    """Spearman ρ between ``internal`` and ``outcome`` (one value each per observation) with a percentile
    interval of a bootstrap over ``clusters`` (the item id of each observation; None: every observation its
    own cluster), replicates kept. Observations with a non-finite value are left out; fewer than
    :data:`MIN_COUPLING_SAMPLES` of them, or no spread in either value, make the estimate undefined."""
    x = torch.tensor(list(internal), dtype=torch.float64)
    y = torch.tensor(list(outcome), dtype=torch.float64)
    if x.shape != y.shape:
        raise ValueError(f"need one outcome per internal value, got {x.numel()} and {y.numel()}")
    ids = list(clusters) if clusters is not None else [str(i) for i in range(x.numel())]
    if len(ids) != x.numel():
        raise ValueError(f"need one cluster id per observation, got {len(ids)} for {x.numel()}")
    finite = torch.isfinite(x) & torch.isfinite(y)
    kept = finite.nonzero().flatten().tolist()
    if len(kept) < MIN_COUPLING_SAMPLES:
        return Estimate(math.nan, math.nan, math.nan, undefined_because=(
            f"{len(kept)} samples with both values; at least {MIN_COUPLING_SAMPLES} are needed"))
    x, y = x[kept], y[kept]
    names = sorted({ids[i] for i in kept})  # sorted ids: the draw does not depend on the observations' order
    index = torch.tensor([names.index(ids[i]) for i in kept])
    cluster_weights = torch.cat([torch.ones(1, len(names), dtype=torch.float64),
                                 bootstrap_weights(len(names), n_bootstrap, seed)])
    rho = weighted_spearman(x, y, cluster_weights[:, index])
    estimate = with_interval(rho[0], rho[1:], bounds=(-1.0, 1.0), keep_replicates=True)
    if not math.isfinite(estimate.value):
        return Estimate(math.nan, math.nan, math.nan, estimate.replicates, UNDEFINED_CONSTANT)
    return estimate
