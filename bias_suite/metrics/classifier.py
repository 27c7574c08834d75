"""Held-out separability of image and text keys: the Jensen-Shannon lower bound and AUROC.

With a class-balanced pooled sample, JS(P_image, P_text) in bits equals the mutual information
I(X; modality), and for any classifier q fixed before it sees a token, ``1 − CE_bits(q)`` on that token
is a lower bound on it (Gibbs' inequality). The bound is tight only when q is good *and* calibrated,
and it must be able to reach 1 when the modalities separate completely — a penalised classifier caps
its own confidence and with it the bound (the previous estimator stopped at 0.992).

The classifier here:

1. **Shrinkage LDA** — the Gaussian shared-covariance discriminant with class-balanced priors: score
   ``z = wᵀx + b``, ``w = Σ_γ⁻¹ (μ_I − μ_T)``, ``b = −wᵀ(μ_I + μ_T)/2``, ``Σ`` the mean of the two class
   covariances and ``Σ_γ = (1 − γ) Σ + γ · tr(Σ)/d · I`` (scikit-learn's ``shrinkage``). Fitted from
   per-block sums, so a fit costs one ``d × d`` solve.
2. **Nested grouped cross-validation** — folds are whole samples. For each outer fold f, the inner
   folds g ≠ f are scored by fits that saw neither f nor g. On those inner held-out scores the γ of
   the grid whose scores separate the classes best (Fisher ratio) is kept, and a 1-D logistic
   calibration ``σ(a z + c)`` is fitted. Fold f is then scored by the γ fit on every other fold,
   calibrated with that ``(a, c)``. Nothing about fold f is used to score it, so the bound stays a bound.
3. The calibration slope carries only a tiny penalty (``CALIBRATION_L2`` on standardised scores), so
   for separated modalities the logits grow with the margin and the bound approaches 1; logits are
   clipped at ±``LOGIT_CAP`` only to keep the arithmetic finite.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor
from torch.nn.functional import softplus

from bias_suite.metrics.layout import IMAGE, TEXT, TokenLayout
from bias_suite.metrics.moments import BlockMoments

SHRINKAGE_GRID = (1e-3, 3e-2, 3e-1)
CALIBRATION_L2 = 1e-6
LOGIT_CAP = 50.0
LN2 = math.log(2.0)
JSD_ESTIMATOR = (
    "variational lower bound 1 − CE_bits of a shrinkage LDA classifier (class-balanced priors; shrinkage "
    f"from {list(SHRINKAGE_GRID)} chosen by inner grouped cross-validation; scores calibrated by a 1-D "
    "logistic fit on the inner held-out scores), evaluated on held-out folds grouped by sample; clipped at 0"
)
AUROC_ESTIMATOR = "AUROC of the held-out LDA scores (image = positive), folds grouped by sample"


def sample_folds(n_samples: int, n_folds: int, seed: int) -> Tensor:
    """Fold of each sample (``[n_samples]`` int64): a seeded shuffle dealt round-robin into folds."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_samples, generator=generator)
    folds = torch.empty(n_samples, dtype=torch.int64)
    folds[order] = torch.arange(n_samples) % n_folds
    return folds


def training_sets(n_folds: int) -> list[tuple[int, ...]]:
    """The folds each fit leaves out: every single fold (outer fits), then every pair (inner fits)."""
    return [(f,) for f in range(n_folds)] + list(itertools.combinations(range(n_folds), 2))


def lda_directions(moments: BlockMoments, sample_fold: Tensor, n_folds: int,
                   grid: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    """LDA weights and offsets of every training set × shrinkage: ``([P, J, K, d], [P, J, K])`` float32,
    in the centred coordinates of ``moments`` (J = :func:`training_sets`, K = ``len(grid)``).

    A training set's sums are the all-sample sums minus those of its left-out folds, formed for every set
    at once as one matrix product; the ``d × d`` systems are solved in float32 (a classifier only has to be
    fixed before it scores, not exact)."""
    device = moments.total.device
    n_problems, _, dim = moments.total.shape
    sets = training_sets(n_folds)
    fold_of_sample = torch.nn.functional.one_hot(sample_fold, n_folds).double().to(device)  # [S, F]
    keep = torch.ones(len(sets), n_folds, dtype=torch.float64, device=device)  # [J, F]: folds a set trains on
    for j, excluded in enumerate(sets):
        keep[j, list(excluded)] = 0.0
    counts, means, scatter_weights = [], [], []
    outer_per_fold = []
    for modality in (IMAGE, TEXT):
        count = keep @ (moments.per_modality("count", modality) @ fold_of_sample)  # [J]
        total = torch.einsum("jf,psd,sf->pjd", keep, moments.per_modality("total", modality), fold_of_sample)
        counts.append(count)
        means.append(total / count[None, :, None])  # [P, J, d]
        scatter_weights.append(keep * (0.5 / count)[:, None])  # [J, F]: ½ Σ_{kept folds} O_f / n
        outer_per_fold.append(torch.einsum("psde,sf->fpde", moments.per_modality("outer", modality).float(),
                                           fold_of_sample.float()))  # [F, P, d, d]
    # pooled within-class covariance: ½ (O_I/n_I − μ_I μ_Iᵀ) + ½ (O_T/n_T − μ_T μ_Tᵀ), every set at once
    coefficients = torch.cat(scatter_weights, dim=1).float()  # [J, 2F]
    stacked = torch.cat(outer_per_fold).reshape(2 * n_folds, -1)  # [2F, P·d·d]
    pooled = (coefficients @ stacked).view(len(sets), n_problems, dim, dim).transpose(0, 1)  # [P, J, d, d]
    class_means = torch.stack(means, dim=-1).float().reshape(n_problems * len(sets), dim, 2)
    pooled = torch.baddbmm(pooled.reshape(-1, dim, dim), class_means, class_means.transpose(1, 2), alpha=-0.5)
    pooled = pooled.view(n_problems, len(sets), dim, dim)
    average_variance = torch.diagonal(pooled, dim1=-2, dim2=-1).mean(-1)  # [P, J]
    shrunk = pooled[:, :, None].repeat(1, 1, len(grid), 1, 1)  # [P, J, K, d, d]
    for k, gamma in enumerate(grid):
        shrunk[:, :, k] *= 1 - gamma
        torch.diagonal(shrunk[:, :, k], dim1=-2, dim2=-1).add_((gamma * average_variance)[..., None])
    difference = (means[0] - means[1]).float()[:, :, None, :, None].expand(n_problems, len(sets), len(grid), dim, 1)
    weights, info = torch.linalg.solve_ex(shrunk, difference)
    if bool((info != 0).any()):  # singular even after shrinkage (e.g. an all-zero key): least squares
        weights = torch.linalg.lstsq(shrunk.double(), difference.double()).solution.float()
    weights = weights[..., 0]
    midpoint = ((means[0] + means[1]) / 2).float()[:, :, None, :]
    return weights, -(weights * midpoint).sum(-1)


def fit_calibration(scores: Tensor, labels: Tensor, weights: Tensor, l2: float = CALIBRATION_L2,
                    max_iter: int = 100, tolerance: float = 1e-12) -> tuple[Tensor, Tensor]:
    """Minimise ``Σ ω_i softplus(−y_i (a z_i + c)) + l2/2 · a²`` for a batch of 1-D problems.

    scores: ``[..., n]`` standardised (weighted mean 0, spread 1), labels: ``[n]`` in {−1, +1}, weights:
    ``[..., n]`` summing to 1 over n. Returns ``(a, c)``, each ``[...]``. Damped Newton from the Gaussian
    starting point (slope = difference of the class means), stopped when every gradient entry is below
    ``tolerance``.
    """
    positive = (labels > 0).to(weights.dtype)
    mass = (weights * positive).sum(-1), (weights * (1 - positive)).sum(-1)
    class_mean = (weights * positive * scores).sum(-1) / mass[0], (weights * (1 - positive) * scores).sum(-1) / mass[1]
    a = (class_mean[0] - class_mean[1]).clamp(-10.0, 10.0)
    c = -a * (class_mean[0] + class_mean[1]) / 2

    def loss(a: Tensor, c: Tensor) -> Tensor:
        margin = labels * (a[..., None] * scores + c[..., None])
        return (weights * softplus(-margin)).sum(-1) + 0.5 * l2 * a * a

    current = loss(a, c)
    for _ in range(max_iter):
        margin = labels * (a[..., None] * scores + c[..., None])
        p_wrong = torch.sigmoid(-margin)
        weighted = weights * p_wrong * labels
        grad_a = -(weighted * scores).sum(-1) + l2 * a
        grad_c = -weighted.sum(-1)
        if float(torch.maximum(grad_a.abs(), grad_c.abs()).max()) < tolerance:
            break
        curvature = weights * p_wrong * (1 - p_wrong)
        h_aa = (curvature * scores * scores).sum(-1) + l2
        h_ac = (curvature * scores).sum(-1)
        h_cc = curvature.sum(-1) + 1e-12
        determinant = h_aa * h_cc - h_ac * h_ac
        step_a = (h_cc * grad_a - h_ac * grad_c) / determinant
        step_c = (h_aa * grad_c - h_ac * grad_a) / determinant
        scale = torch.ones_like(a)
        slack = 1e-13 * current.abs() + 1e-300
        for _ in range(40):
            candidate_a, candidate_c = a - scale * step_a, c - scale * step_c
            candidate = loss(candidate_a, candidate_c)
            worse = ~(candidate <= current + slack)
            if not bool(worse.any()):
                break
            scale = torch.where(worse, scale / 2, scale)
        improved = candidate <= current + slack
        a, c = torch.where(improved, candidate_a, a), torch.where(improved, candidate_c, c)
        current = torch.where(improved, torch.minimum(candidate, current), current)
    return a, c


def heldout_logits(keys: Tensor, layout: TokenLayout, moments: BlockMoments, n_folds: int, seed: int,
                   grid: tuple[float, ...] = SHRINKAGE_GRID) -> Tensor:
    """Calibrated logit of "image" for every token, from a classifier that never saw its sample.

    keys: ``[P, n, d]`` in block order; returns ``[P, n]`` float64.
    """
    device = keys.device
    n_problems, n_tokens, dim = keys.shape
    sample_fold = sample_folds(layout.n_samples, n_folds, seed)
    token_fold = sample_fold[layout.token_sample].to(device)  # [n]
    weights, offsets = lda_directions(moments, sample_fold, n_folds, grid)  # [P, J, K, d], [P, J, K]
    centred = keys.float() - moments.centre.float()[:, None, :]
    scores = torch.bmm(centred, weights.reshape(n_problems, -1, dim).transpose(1, 2))  # [P, n, J·K]
    scores = (scores.transpose(1, 2).reshape(*offsets.shape, n_tokens) + offsets[..., None]).double()  # [P, J, K, n]

    inner_set = torch.zeros(n_folds, n_folds, dtype=torch.long)  # the fit that left out {f, g}
    for j, excluded in enumerate(training_sets(n_folds)):
        if len(excluded) == 2:
            f, g = excluded
            inner_set[f, g] = inner_set[g, f] = j
    # Inner held-out scores for outer fold f: token i (fold g ≠ f) scored by the fit without {f, g}.
    inner_index = inner_set.to(device)[:, token_fold]  # [F, n]
    inner_scores = scores.gather(1, inner_index[None, :, None, :].expand(n_problems, -1, len(grid), -1))  # [P, F, K, n]
    outside = token_fold[None, :] != torch.arange(n_folds, device=device)[:, None]  # [F, n]
    is_image = layout.is_image.to(device)
    class_count = torch.stack([(outside & is_image).sum(1), (outside & ~is_image).sum(1)], 1).double()  # [F, 2]
    token_weight = torch.where(is_image, 0.5 / class_count[:, :1], 0.5 / class_count[:, 1:]) * outside  # [F, n]

    # Shrinkage: the grid value whose inner held-out scores separate the classes best (Fisher ratio).
    image_weight, text_weight = token_weight * is_image, token_weight * ~is_image
    fisher = []
    for class_weight in (image_weight, text_weight):
        mass = class_weight.sum(-1)[None, :, None]
        mean = (class_weight[None, :, None] * inner_scores).sum(-1) / mass
        variance = (class_weight[None, :, None] * (inner_scores - mean[..., None]).square()).sum(-1) / mass
        fisher.append((mean, variance))
    separation = (fisher[0][0] - fisher[1][0]).square() / (0.5 * (fisher[0][1] + fisher[1][1])).clamp_min(1e-300)
    best = separation.argmax(-1)  # [P, F]

    chosen = inner_scores.gather(2, best[..., None, None].expand(-1, -1, 1, n_tokens))[:, :, 0]  # [P, F, n]
    weight = token_weight[None].expand_as(chosen)
    centre = (weight * chosen).sum(-1, keepdim=True)
    spread = (weight * (chosen - centre).square()).sum(-1, keepdim=True).sqrt().clamp_min(1e-30)
    labels = torch.where(is_image, 1.0, -1.0).double()
    slope, intercept = fit_calibration((chosen - centre) / spread, labels, weight)  # [P, F]

    outer = scores[:, :n_folds].gather(2, best[..., None, None].expand(-1, -1, 1, n_tokens))[:, :, 0]  # [P, F, n]
    outer = outer.gather(1, token_fold[None, None, :].expand(n_problems, 1, -1))[:, 0]  # [P, n]
    fold_of = token_fold[None, :].expand(n_problems, -1)
    logits = (slope.gather(1, fold_of) * (outer - centre[..., 0].gather(1, fold_of)) / spread[..., 0].gather(1, fold_of)
              + intercept.gather(1, fold_of))
    return logits.clamp(-LOGIT_CAP, LOGIT_CAP)


def heldout_bits(logits: Tensor, is_image: Tensor) -> Tensor:
    """Cross-entropy of the true modality in bits, per token: ``[P, n]`` float64."""
    signed = torch.where(is_image.to(logits.device), logits, -logits)
    return softplus(-signed) / LN2


def jsd_bound(bits: Tensor, layout: TokenLayout, sample_weights: Tensor) -> Tensor:
    """``max(0, 1 − CE_bits)`` with class-balanced CE, for each row of ``sample_weights``.

    bits: ``[P, n]``; sample_weights: ``[R, S]`` multiplicities (row of ones = the data as observed).
    Returns ``[R, P]`` float64.
    """
    device = bits.device
    sample_weights = sample_weights.to(device)
    blocks = layout.token_block.to(device)
    per_block = torch.zeros(bits.shape[0], layout.n_blocks, dtype=torch.float64,
                            device=device).index_add_(1, blocks, bits)
    per_block = per_block.view(bits.shape[0], layout.n_samples, 2)
    count = layout.sizes.to(device)
    ce = 0.0
    for modality in (IMAGE, TEXT):
        ce = ce + 0.5 * (sample_weights @ per_block[:, :, modality].T) / (sample_weights @ count[:, modality])[:, None]
    return (1.0 - ce).clamp_min(0.0)


def auroc(scores: Tensor, layout: TokenLayout, sample_weights: Tensor) -> Tensor:
    """P(score of an image token > score of a text token) (+½ for ties), tokens weighted by their
    sample's multiplicity, for each row of ``sample_weights``. scores: ``[P, n]``. Returns ``[R, P]``.

    The pairs are counted once per (image sample, text sample): ``U[s, s']`` = image tokens of s beating
    text tokens of s'; a replicate is then the quadratic form ``wᵀ U w`` over the pair count ``wᵀ N w``."""
    device = scores.device
    n_problems, n_tokens = scores.shape
    sample_weights = sample_weights.to(device)
    order = torch.argsort(scores, dim=1, stable=True)
    sorted_scores = scores.gather(1, order)
    new_group = torch.ones_like(sorted_scores, dtype=torch.bool)
    new_group[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    group = new_group.long().cumsum(1) - 1  # [P, n] tie group of each sorted token
    token_sample, is_image = layout.token_sample.to(device), layout.is_image.to(device)
    sorted_sample, sorted_image = token_sample[order], is_image[order]
    text_onehot = torch.nn.functional.one_hot(sorted_sample, layout.n_samples).double() * (~sorted_image)[..., None]
    per_group = torch.zeros(n_problems, n_tokens, layout.n_samples, dtype=torch.float64, device=device)
    per_group.scatter_add_(1, group[..., None].expand_as(text_onehot), text_onehot)
    beaten = per_group.cumsum(1) - 0.5 * per_group  # text tokens strictly below + ½ tied, per text sample
    image_beats = beaten.gather(1, group[..., None].expand_as(text_onehot)) * sorted_image[..., None]  # [P, n, S]
    # U[p, s, s']: summed over the image tokens of sample s.
    flat_index = (torch.arange(n_problems, device=device)[:, None] * layout.n_samples + sorted_sample).flatten()
    pairs = torch.zeros(n_problems * layout.n_samples, layout.n_samples, dtype=torch.float64, device=device)
    pairs.index_add_(0, flat_index, image_beats.reshape(-1, layout.n_samples))
    pairs = pairs.view(n_problems, layout.n_samples, layout.n_samples)
    sizes = layout.sizes.to(device)
    image_count, text_count = sample_weights @ sizes[:, IMAGE], sample_weights @ sizes[:, TEXT]
    numerator = torch.einsum("rs,pst,rt->rp", sample_weights, pairs, sample_weights)
    return numerator / (image_count * text_count)[:, None]
