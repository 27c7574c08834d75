"""Behaviour estimates: the rate of an outcome over samples, with an interval over samples.

The outcomes themselves (did the caption's answer win?) come from answer scoring
(:mod:`bias_suite.capture.scoring`); here they are only counted.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bias_suite.metrics import intervals
from bias_suite.metrics.estimate import Estimate, bootstrap_weights


def rate_estimate(outcomes: Tensor, n_bootstrap: int = 200, seed: int = 0) -> Estimate:
    """The fraction of samples whose outcome is True (``outcomes``: ``[n_samples]`` bool) with its exact
    (Clopper–Pearson) interval, which covers the rate with probability ≥ 95 % whatever it is (the percentile
    bootstrap covered as little as 4 % near 0 and 1, and gives [1, 1] for 8 of 8). Kept for paired changes:
    the leave-one-out rates (``jackknife``, from which the outcomes are recovered for Newcombe's paired
    interval) and the bootstrap replicates (``n_bootstrap``, ``seed``) for partners without them."""
    values = outcomes.double()
    n = values.numel()
    k = int(values.sum())
    replicates = (bootstrap_weights(n, n_bootstrap, seed) @ values) / n
    low, high = intervals.clopper_pearson(k, n)
    jackknife = (k - values) / (n - 1) if n > 1 else torch.full_like(values, float("nan"))
    return Estimate(k / n, low, high, tuple(replicates.tolist()), jackknife=tuple(jackknife.tolist()),
                    interval=intervals.CLOPPER_PEARSON, n_samples=n)
