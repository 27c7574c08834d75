"""Point estimates with bootstrap intervals over samples (images), and the replicate weights behind them.

Tokens of one image are dependent, so every interval in bias-suite resamples **whole samples**: a
replicate is a vector of multiplicities ``w[s]`` (how often sample ``s`` was drawn), and each statistic
is recomputed from per-sample sufficient statistics weighted by ``w``. No token-level resampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

CI_LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A metric value with its percentile bootstrap interval (``ci_low``/``ci_high`` are None for
    quantities that have no interval, e.g. a permutation p-value).

    ``replicates``: the bootstrap replicates behind the interval, kept for pooled results so that a later
    run on the same samples and seed can be compared replicate by replicate (a paired bootstrap).
    ``undefined_because``: why ``value`` is NaN, when the statistic knows (the gate reports it).
    """

    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    replicates: tuple[float, ...] | None = field(default=None, repr=False, compare=False)
    undefined_because: str | None = field(default=None, compare=False)

    @property
    def ci(self) -> tuple[float, float] | None:
        return None if self.ci_low is None or self.ci_high is None else (self.ci_low, self.ci_high)

    def is_finite(self) -> bool:
        return math.isfinite(self.value)


def bootstrap_weights(n_samples: int, n_replicates: int, seed: int) -> Tensor:
    """Multiplicities of each sample in each replicate: ``[n_replicates, n_samples]`` float64.

    Deterministic in ``seed``; samples are indexed in sorted-id order by the callers, so the draw does
    not depend on the order the tokens arrived in.
    """
    if n_samples < 1:
        raise ValueError("bootstrap needs at least one sample")
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n_samples, (n_replicates, n_samples), generator=generator)
    weights = torch.zeros(n_replicates, n_samples, dtype=torch.float64)
    weights.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    return weights


def sample_flips(n_samples: int, n_flips: int, seed: int) -> Tensor:
    """Random modality swaps within samples for permutation tests: ``[n_flips, n_samples]`` int64 in {0, 1}.

    Row ``r`` says, for each sample, whether its image and text blocks trade labels. Swapping labels
    *within* a sample keeps one block of every sample in each set, so anything the two modalities of a
    sample share (a per-image offset) cancels exactly as it does in the observed statistic.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n_flips, n_samples), generator=generator)


def with_interval(
    value: float | Tensor,
    replicates: Tensor,
    level: float = CI_LEVEL,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    keep_replicates: bool = False,
) -> Estimate:
    """``Estimate`` of ``value`` with a bootstrap interval from ``replicates`` (``[n_replicates]``).

    The interval is the percentile interval of the replicates, shifted so that their median sits on
    the point estimate, then clipped to the statistic's natural ``bounds``. The shift matters: a sample
    drawn twice makes plug-in statistics (histogram JS, V-statistic MMD², Fréchet) look less noisy
    than the data, so raw replicates sit above the estimate; the spread is what the interval keeps.
    Undefined replicates (NaN: e.g. a draw without any image token) are left out; if none is
    defined the interval is NaN, which the gate reports as an error.
    """
    replicates = replicates.to(torch.float64)
    value = float(value)
    kept = tuple(replicates.tolist()) if keep_replicates else None
    alpha = (1.0 - level) / 2
    finite = replicates[torch.isfinite(replicates)]
    if finite.numel() == 0 or not math.isfinite(value):
        return Estimate(value, float("nan"), float("nan"), kept)
    low, middle, high = torch.quantile(finite, torch.tensor([alpha, 0.5, 1 - alpha], dtype=torch.float64)).tolist()
    shift = value - middle
    return Estimate(value, min(max(low + shift, bounds[0]), value), max(min(high + shift, bounds[1]), value), kept)
