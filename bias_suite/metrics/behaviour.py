"""Behaviour estimates: the rate of an outcome over samples, with an interval over samples.

The outcomes themselves (did the caption's answer win?) come from answer scoring
(:mod:`bias_suite.capture.scoring`); here they are only counted.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bias_suite.metrics.estimate import Estimate, bootstrap_weights, with_interval


def rate_estimate(outcomes: Tensor, n_bootstrap: int = 200, seed: int = 0) -> Estimate:
    """The fraction of samples whose outcome is True (``outcomes``: ``[n_samples]`` bool), with a bootstrap
    interval over samples; the replicates are kept so a later run can be compared sample-paired."""
    values = outcomes.double()
    weights = torch.cat([torch.ones(1, len(values), dtype=torch.float64),
                         bootstrap_weights(len(values), n_bootstrap, seed)])
    rates = (weights @ values) / weights.sum(1)
    return with_interval(rates[0], rates[1:], bounds=(0.0, 1.0), keep_replicates=True)
