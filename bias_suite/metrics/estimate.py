"""Point estimates with intervals over samples (images), the replicate weights behind them, and paired changes.

Tokens of one image are dependent, so every interval in bias-suite treats **whole samples** as the unit: a
replicate is a vector of per-sample weights ``w[s]`` — multiplicities for a bootstrap draw, 0 for the sample
a delete-one-sample jackknife row leaves out — and each statistic is recomputed from per-sample sufficient
statistics weighted by ``w``. No token-level resampling. Which interval a metric gets is recorded with each
estimate (``Estimate.interval``; the methods are in :mod:`bias_suite.metrics.intervals`).

A change between two runs on the same samples (:func:`paired_change`) pairs their leave-one-sample-out
values (paired jackknife-t; Newcombe's interval for rates), or their bootstrap replicates when a partner
has no jackknife values (a card of an older version).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bias_suite.metrics import intervals
from bias_suite.metrics.intervals import LEVEL as CI_LEVEL
from bias_suite.metrics.registry import HIGHER_IS_WORSE, LOWER_IS_WORSE


@dataclass(frozen=True)
class Estimate:
    """A metric value with its 95 % interval over samples (``ci_low``/``ci_high`` are None for quantities that
    have no interval, e.g. a permutation p-value).

    ``replicates``: bootstrap replicates, kept for pooled results so that a later run on the same samples and
    seed can be compared replicate by replicate (the paired bootstrap, for partners without jackknife values).
    ``undefined_because``: why ``value`` is NaN (or why a change could not be paired), when known.
    ``jackknife``: the S leave-one-sample-out values (samples in sorted-id order; for a rate, the rates
    without each item), kept for pooled results: a change against another run on the same samples is a
    paired jackknife-t on their differences (:func:`paired_change`).
    ``interval``: how the interval was made (:mod:`bias_suite.metrics.intervals`); ``n_samples``: how many
    samples it rests on; ``scale``: the scale it was made on (None, ``"log"`` or ``"logit"``).
    """

    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    replicates: tuple[float, ...] | None = field(default=None, repr=False, compare=False)
    undefined_because: str | None = field(default=None, compare=False)
    jackknife: tuple[float, ...] | None = field(default=None, repr=False, compare=False)
    interval: str | None = field(default=None, compare=False)
    n_samples: int | None = field(default=None, compare=False)
    scale: str | None = field(default=None, compare=False)

    @property
    def ci(self) -> tuple[float, float] | None:
        return None if self.ci_low is None or self.ci_high is None else (self.ci_low, self.ci_high)

    def is_finite(self) -> bool:
        return math.isfinite(self.value)

    def detectable(self, direction: str | None = None) -> float | None:
        """The smallest true distance to a bound (in the metric's units) that this run would flag — its
        whole interval beyond the bound — with 80 % power: about 1.4 half-widths of the interval on the side
        facing a bound in the worse ``direction`` (the wider side when None). None without an interval."""
        side = {HIGHER_IS_WORSE: "low", LOWER_IS_WORSE: "high"}.get(direction)
        return intervals.detectable_change(self.value, self.ci_low, self.ci_high, self.n_samples, side, self.scale)


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
    n_samples: int | None = None,
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
        return Estimate(value, float("nan"), float("nan"), kept, interval=intervals.PERCENTILE, n_samples=n_samples)
    low, middle, high = torch.quantile(finite, torch.tensor([alpha, 0.5, 1 - alpha], dtype=torch.float64)).tolist()
    shift = value - middle
    return Estimate(value, min(max(low + shift, bounds[0]), value), max(min(high + shift, bounds[1]), value), kept,
                    interval=intervals.PERCENTILE, n_samples=n_samples)


def jackknife_estimate(value: float | Tensor, jackknife: Tensor, bounds: tuple[float, float] = (-math.inf, math.inf),
                       scale: str | None = None, interval: str = intervals.JACKKNIFE_T,
                       replicates: Tensor | None = None, keep: bool = False,
                       undefined_because: str | None = None) -> Estimate:
    """``Estimate`` with the delete-one-sample jackknife-t interval from the S leave-one-out values ``[S]``,
    on ``scale`` (``"log"``: positive ratios, ``"logit"``: probabilities; the linear scale when a value lies
    outside its domain, e.g. an AUROC of exactly 1). ``keep``: keep the jackknife values (and ``replicates``)
    for paired changes (pooled results)."""
    value = float(value)
    jackknife = jackknife.double()
    if scale is not None and not intervals.on_scale(value, jackknife, scale):
        scale = None
    low, high = intervals.jackknife_t(value, jackknife, scale=scale, bounds=bounds)
    return Estimate(value, low, high,
                    tuple(replicates.double().tolist()) if keep and replicates is not None else None,
                    undefined_because, tuple(jackknife.tolist()) if keep else None, interval, jackknife.numel(), scale)


def mean_estimate(values: Tensor, bootstrap: Tensor, bounds: tuple[float, float] = (-math.inf, math.inf),
                  keep: bool = True) -> Estimate:
    """Mean of per-sample values ``[S]`` (NaN: undefined there, left out) with the bootstrap-t interval from
    bootstrap multiplicities ``[B, S]`` (Student's t when B < :data:`~bias_suite.metrics.intervals.MIN_BOOTSTRAP_T`).
    Keeps the leave-one-out means of the defined samples (``jackknife``) and the bootstrap means
    (``replicates``, the draws of the undefined samples ignored) for paired changes."""
    values = values.double()
    defined = torch.isfinite(values)
    weights = bootstrap.double()
    replicates = (weights @ torch.nan_to_num(values * defined)) / (weights @ defined.double())
    kept = values[defined]
    n = kept.numel()
    mean = float(kept.mean()) if n else math.nan
    if n < 2:
        return Estimate(mean, math.nan, math.nan, tuple(replicates.tolist()) if keep else None, n_samples=n)
    if weights.shape[0] >= intervals.MIN_BOOTSTRAP_T:
        low, high = intervals.bootstrap_t_mean(kept, weights[:, defined], bounds=bounds)
        method = intervals.BOOTSTRAP_T
    else:
        low, high = intervals.student_t_mean(kept, bounds=bounds)
        method = intervals.STUDENT_T
    jackknife = (kept.sum() - kept) / (n - 1)
    return Estimate(mean, low, high, tuple(replicates.tolist()) if keep else None,
                    jackknife=tuple(jackknife.tolist()) if keep else None, interval=method, n_samples=n)


def paired_change(candidate: Estimate, partner: Estimate, sign: float = 1.0, partner_name: str = "the partner",
                  level: float = CI_LEVEL) -> Estimate:
    """The change ``sign · (candidate − partner)`` of one metric between two runs on the same samples, with a
    paired interval: Newcombe's (method 10) for rates (Clopper–Pearson estimates: the 0/1 outcomes are
    recovered from the leave-one-out rates), a jackknife-t on the differences of the leave-one-out values for
    every other jackknifed metric, else a percentile interval of the differences of the bootstrap replicates
    (partners without jackknife values). ``undefined_because`` starts with "not comparable" when the two
    cannot be paired (other samples: another number of leave-one-out values or replicates)."""
    increase = sign * (candidate.value - partner.value)
    if candidate.jackknife is not None and partner.jackknife is not None:
        ours, theirs = (torch.tensor(e.jackknife, dtype=torch.float64) for e in (candidate, partner))
        if ours.numel() != theirs.numel():
            return Estimate(increase, undefined_because=(
                f"not comparable: {ours.numel()} samples here, {theirs.numel()} in {partner_name} (other samples)"))
        if candidate.interval == partner.interval == intervals.CLOPPER_PEARSON:
            new = intervals.outcomes_from_jackknife(candidate.value, ours)
            old = intervals.outcomes_from_jackknife(partner.value, theirs)
            if new is not None and old is not None:
                counts = [int((new & old).sum()), int((old & ~new).sum()), int((new & ~old).sum()),
                          int((~new & ~old).sum())]
                low, high = intervals.newcombe_paired(*counts, level)
                low, high = (low, high) if sign > 0 else (-high, -low)
                return Estimate(increase, min(low, increase), max(high, increase), interval=intervals.NEWCOMBE,
                                n_samples=ours.numel())
        difference = sign * (ours - theirs)
        low, high = intervals.jackknife_t(increase, difference, level)
        if math.isfinite(low) and math.isfinite(high):
            return Estimate(increase, low, high, interval=intervals.PAIRED_JACKKNIFE_T, n_samples=ours.numel())
        if candidate.replicates is None or partner.replicates is None:
            return Estimate(increase, undefined_because=(
                "no paired interval: a leave-one-sample-out value of this metric is not finite (undefined without "
                "that sample) in this run or in " + partner_name))
    if candidate.replicates is None or partner.replicates is None \
            or len(candidate.replicates) != len(partner.replicates):
        return Estimate(increase, undefined_because=(
            f"not comparable: {len(candidate.replicates or ())} bootstrap replicates here, "
            f"{len(partner.replicates or ())} in {partner_name} (run with the same --bias-bootstrap)"))
    paired = sign * (torch.tensor(candidate.replicates, dtype=torch.float64)
                     - torch.tensor(partner.replicates, dtype=torch.float64))
    estimate = with_interval(increase, paired, level, n_samples=candidate.n_samples)
    return dataclasses.replace(estimate, interval=intervals.PAIRED_PERCENTILE)
