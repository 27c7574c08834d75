"""Synthetic populations with known truth, for the coverage, false-alarm and power figures of the bench and
the coverage tests: hierarchical keys (samples differ among themselves, tokens within a sample), attention
summaries per sample, and their population values.

**Keys** (per KV head, heads independent; sample ``s``, token ``t``)::

    image key  x = μ0 + δ·e1 + c_s + o_{s,I} + ε        text key  y = μ0 + c_s + o_{s,T} + ε
    c_s ~ N(0, τ_shared² I)  per-sample offset shared by both modalities (cancels within a sample)
    o_{s,A} ~ N(0, τ_mod² I) per-sample, per-modality offset (the between-sample variation)
    ε ~ N(0, σ² I), σ = 1    token noise: the shift δ is in units of σ;  μ0 = 4·e2

``n_template`` of the text tokens of every sample are the same vectors in every sample (chat-template keys).
Population values are analytic (:func:`key_targets`): ``mmd2`` at the population median-heuristic bandwidth,
the energy-distance ``ratio``, ``centroid_cosine``, ``norm_ratio``; ``jsd`` and ``auroc`` are size-dependent,
their target is the estimator's expectation at the run's size (Monte Carlo, :func:`classifier_targets`).

**Attention** (per sample: rows ~ U{6..20}, H query heads): ``visual_share = sigmoid(a_h + b_s + e)``, the
normalised share divides by the sample's image fraction, the share without sinks adds a shift and noise,
``logit_gap`` is right-skewed over samples (gamma), ``visual_log_odds`` is the share's log odds less the image
fraction's, the sink masses are small logistic shares; targets by Monte Carlo (:func:`attention_targets`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import integrate, stats

from bias_suite.metrics import KeySpaceConfig, RowShares
from bias_suite.metrics.classifier import auroc, heldout_bits, heldout_logits, jsd_bound
from bias_suite.metrics.keyspace import _as_heads
from bias_suite.metrics.layout import TokenLayout
from bias_suite.metrics.moments import BlockMoments


@dataclass(frozen=True)
class Population:
    """A hierarchical key population (module docstring); ``delta`` in units of the token noise."""

    d: int = 16  # head_dim
    heads: int = 2  # KV heads
    m_image: int = 32  # tokens per sample
    m_text: int = 32
    sigma: float = 1.0
    tau_shared: float = 0.5
    tau_mod: float = 0.5
    delta: float = 2.0
    mu0_norm: float = 4.0
    n_template: int = 0

    @property
    def v(self) -> float:
        """Marginal variance of one coordinate of a key."""
        return self.sigma**2 + self.tau_shared**2 + self.tau_mod**2

    def shifted(self, delta: float) -> Population:
        return replace(self, delta=delta)


def draw_keys(population: Population, n_samples: int, seed: int, delta: float | None = None):
    """One dataset: ``(image [S·m_I, H, d], image ids, text [S·m_T, H, d], text ids)`` float32. The same
    ``seed`` with another ``delta`` draws the same samples and tokens (a checkpoint shifted on the same data)."""
    g = torch.Generator().manual_seed(seed)
    p = population
    shift = p.delta if delta is None else delta
    heads, dim, n = p.heads, p.d, n_samples
    mean_text = torch.zeros(dim, dtype=torch.float64)
    mean_text[1] = p.mu0_norm
    direction = torch.zeros(dim, dtype=torch.float64)
    direction[0] = 1.0
    shared = p.tau_shared * torch.randn(n, 1, heads, dim, generator=g, dtype=torch.float64)
    image_offset = p.tau_mod * torch.randn(n, 1, heads, dim, generator=g, dtype=torch.float64)
    text_offset = p.tau_mod * torch.randn(n, 1, heads, dim, generator=g, dtype=torch.float64)
    image_noise = p.sigma * torch.randn(n, p.m_image, heads, dim, generator=g, dtype=torch.float64)
    image = mean_text + shift * direction + shared + image_offset + image_noise
    varying = p.m_text - p.n_template
    text = mean_text + shared + text_offset + p.sigma * torch.randn(n, varying, heads, dim, generator=g,
                                                                    dtype=torch.float64)
    if p.n_template:
        template = mean_text + math.sqrt(p.v) * torch.randn(1, p.n_template, heads, dim, generator=g,
                                                            dtype=torch.float64)
        text = torch.cat([template.expand(n, -1, -1, -1), text], dim=1)
    image_ids = torch.arange(n).repeat_interleave(p.m_image)
    text_ids = torch.arange(n).repeat_interleave(p.m_text)
    return image.reshape(-1, heads, dim).float(), image_ids, text.reshape(-1, heads, dim).float(), text_ids


def _median_squared(c: float, d: int, shift2: float) -> float:
    """Median of |z|² for z ~ N(m, c I_d), |m|² = shift2."""
    return c * (stats.chi2.median(d) if shift2 == 0 else stats.ncx2.median(d, shift2 / c))


def _gaussian_mean(c: float, d: int, shift2: float, sigma2: float) -> float:
    """E exp(−|z|² / 2σ²) for z ~ N(m, c I_d)."""
    return (1 + c / sigma2) ** (-d / 2) * math.exp(-shift2 / (2 * (sigma2 + c)))


def _mean_norm(c: float, d: int, shift2: float) -> float:
    """E |z| for z ~ N(m, c I_d) (quadrature of the (non-central) χ² density)."""
    lam = shift2 / c
    density = (lambda x: math.sqrt(x) * stats.chi2.pdf(x, d)) if lam == 0 else \
        (lambda x: math.sqrt(x) * stats.ncx2.pdf(x, d, lam))
    mean, sd = d + lam, math.sqrt(2 * (d + 2 * lam))
    value, _ = integrate.quad(density, 0, mean + 40 * sd, limit=400, points=[mean])
    return math.sqrt(c) * value


def key_targets(population: Population) -> dict[str, float]:
    """Population values of the size-invariant gateable key-space metrics (no template keys)."""
    p = population
    d, v, delta2 = p.d, p.v, p.delta**2
    sigma2 = 0.25 * _median_squared(2 * v, d, 0) * 2 + 0.5 * _median_squared(2 * v, d, delta2)
    mmd2 = 2 * _gaussian_mean(2 * v, d, 0, sigma2) - 2 * _gaussian_mean(2 * v, d, delta2, sigma2)
    between_same, between_other = _mean_norm(2 * v, d, 0), _mean_norm(2 * v, d, delta2)
    within = _mean_norm(2 * p.sigma**2, d, 0)
    intra, inter = 2 * (between_same - within), 2 * between_other - 2 * within
    mean_text = np.zeros(d)
    mean_text[1] = p.mu0_norm
    mean_image = mean_text.copy()
    mean_image[0] += p.delta
    cosine = float(mean_image @ mean_text / np.linalg.norm(mean_image) / np.linalg.norm(mean_text))
    norm_ratio = _mean_norm(v, d, float(mean_image @ mean_image)) / _mean_norm(v, d, float(mean_text @ mean_text))
    return {"mmd2": mmd2, "ratio": inter / intra, "intra": intra, "inter": inter, "centroid_cosine": cosine,
            "norm_ratio": norm_ratio}


def classifier_point(keys: tuple, config: KeySpaceConfig | None = None) -> dict[str, float]:
    """The pooled ``jsd`` and ``auroc`` point estimates alone (no intervals): the nested cross-validation once."""
    config = config if config is not None else KeySpaceConfig()
    image, image_ids, text, text_ids = keys
    layout = TokenLayout.of(image_ids, text_ids)
    arranged = layout.arrange(_as_heads(image, "image"), _as_heads(text, "text"))
    moments = BlockMoments.of(arranged, layout)
    logits = heldout_logits(arranged, layout, moments, min(config.n_folds, layout.n_samples), config.seed,
                            config.shrinkage)
    ones = torch.ones(1, layout.n_samples, dtype=torch.float64)
    return {"jsd": float(jsd_bound(heldout_bits(logits, layout.is_image), layout, ones).mean()),
            "auroc": float(auroc(logits, layout, ones).mean())}


def classifier_targets(population: Population, n_samples: int, n_datasets: int, seed: int) -> dict[str, float]:
    """The size-specific targets of ``jsd`` and ``auroc``: their expectation at this size (sample count, token
    count, folds), the mean point estimate over ``n_datasets`` independent datasets (seeds from ``seed``)."""
    points = [classifier_point(draw_keys(population, n_samples, seed + i)) for i in range(n_datasets)]
    return {name: float(np.mean([p[name] for p in points])) for name in ("jsd", "auroc")}


# ------------------------------------------------------------------------------------------------- attention

ATTENTION_MEANS = ("visual_share", "visual_share_norm", "visual_share_nosink", "logit_gap", "visual_log_odds",
                   "sink_mass", "visual_sink_mass")


@dataclass(frozen=True)
class AttentionPopulation:
    """Per-head population shares ``head_shares``, between-sample spread ``sd_sample`` (logit units)."""

    head_shares: tuple[float, ...] = (0.03, 0.06, 0.1, 0.16, 0.19, 0.23, 0.35, 0.5)
    sd_sample: float = 0.8


def draw_attention(population: AttentionPopulation, n_samples: int, seed: int) -> list[RowShares]:
    """Per-sample row statistics (module docstring)."""
    g = np.random.default_rng(seed)
    logits = np.log(np.array(population.head_shares) / (1 - np.array(population.head_shares)))
    heads = len(logits)
    out = []
    for _ in range(n_samples):
        rows = int(g.integers(6, 21))
        offset = g.normal(0, population.sd_sample)
        noise = g.normal(0, 0.7, (rows, heads))
        share = 1 / (1 + np.exp(-(logits + offset + noise)))
        fraction = g.uniform(0.4, 0.8)
        nosink = 1 / (1 + np.exp(-(logits + 0.8 + offset + noise + g.normal(0, 0.3, (rows, heads)))))
        gap = 0.3 + 0.1 * np.arange(heads) / heads + 0.5 * (g.gamma(2.0, 1.0) - 2) + g.normal(0, 0.5, (rows, heads))
        odds = np.log(share / (1 - share)) - np.log(fraction / (1 - fraction))
        sink = 1 / (1 + np.exp(-(-3.0 + g.normal(0, 0.5) + g.normal(0, 0.5, (rows, heads)))))
        out.append(RowShares(*(torch.tensor(x, dtype=torch.float32)
                               for x in (share, share / fraction, nosink, gap, odds, sink, 0.4 * sink))))
    return out


def attention_targets(population: AttentionPopulation, n: int = 400_000, seed: int = 123) -> dict[str, float]:
    """Population means of the per-sample means (Monte Carlo over ``n`` samples), and the fraction of heads
    whose population mean share exceeds 0.2."""
    g = np.random.default_rng(seed)
    logits = np.log(np.array(population.head_shares) / (1 - np.array(population.head_shares)))
    heads = len(logits)
    offset = g.normal(0, population.sd_sample, (n, 1))
    noise = g.normal(0, 0.7, (n, heads))
    share = 1 / (1 + np.exp(-(logits + offset + noise)))
    fraction = g.uniform(0.4, 0.8, (n, 1))
    nosink = 1 / (1 + np.exp(-(logits + 0.8 + offset + noise + g.normal(0, 0.3, (n, heads)))))
    gap = 0.3 + 0.1 * np.arange(heads) / heads + 0.5 * (g.gamma(2.0, 1.0, (n, 1)) - 2)
    odds = np.log(share / (1 - share)) - np.log(fraction / (1 - fraction))
    sink = 1 / (1 + np.exp(-(-3.0 + g.normal(0, 0.5, (n, 1)) + g.normal(0, 0.5, (n, heads)))))
    return {"visual_share": float(share.mean()), "visual_share_norm": float((share / fraction).mean()),
            "visual_share_nosink": float(nosink.mean()), "logit_gap": float(gap.mean()),
            "visual_log_odds": float(odds.mean()), "sink_mass": float(sink.mean()),
            "visual_sink_mass": float(0.4 * sink.mean()), "visual_heads_fraction": float((share.mean(0) > 0.2).mean())}


def binomial_coverage(n: int, interval, grid: int = 199) -> float:
    """The smallest coverage over p ∈ (0, 1) (a grid) of ``interval(k, n) -> (low, high)``, exactly."""
    bounds = [interval(k, n) for k in range(n + 1)]
    worst = 1.0
    for p in np.linspace(0.0, 1.0, grid + 2)[1:-1]:
        covered = sum(stats.binom.pmf(k, n, p) for k, (low, high) in enumerate(bounds) if low <= p <= high)
        worst = min(worst, covered)
    return float(worst)
