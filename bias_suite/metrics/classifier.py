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
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.functional import softplus

from bias_suite.metrics.layout import IMAGE, TEXT, TokenLayout
from bias_suite.metrics.moments import BlockMoments

SHRINKAGE_GRID = (1e-3, 3e-2, 3e-1)
CALIBRATION_L2 = 1e-6
LOGIT_CAP = 50.0
LN2 = math.log(2.0)
REFIT_ELEMENTS = 1 << 25  # covariance and score entries of the refits held at once
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


def set_sums(moments: BlockMoments, sample_fold: Tensor, n_folds: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class sums of every training set (:func:`training_sets`): token counts ``[J, 2]``, centred totals
    ``[P, J, 2, d]`` (float64) and outer products ``[P, J, 2, d, d]`` (float32), class 0 = image.

    A training set's sums are the all-sample sums minus those of its left-out folds, formed for every set at
    once as one matrix product."""
    device = moments.total.device
    n_problems, _, dim = moments.total.shape
    sets = training_sets(n_folds)
    fold_of_sample = torch.nn.functional.one_hot(sample_fold, n_folds).double().to(device)  # [S, F]
    keep = torch.ones(len(sets), n_folds, dtype=torch.float64, device=device)  # [J, F]: folds a set trains on
    for j, excluded in enumerate(sets):
        keep[j, list(excluded)] = 0.0
    in_set = keep @ fold_of_sample.T  # [J, S]: 1 where the set trains on the sample
    counts = torch.stack([in_set @ moments.per_modality("count", m) for m in (IMAGE, TEXT)], -1)  # [J, 2]
    totals = torch.stack([torch.einsum("js,psd->pjd", in_set, moments.per_modality("total", m))
                          for m in (IMAGE, TEXT)], 2)
    outer = moments.outer.float().view(n_problems, -1, 2, dim * dim)  # [P, S, 2, d·d]
    outers = torch.einsum("js,psmx->pjmx", in_set.float(), outer).view(n_problems, len(sets), 2, dim, dim)
    return counts, totals, outers


def pooled_covariance(counts: Tensor, totals: Tensor, outers: Tensor) -> tuple[Tensor, Tensor]:
    """Class means ``[..., 2, d]`` and the pooled within-class covariance ``[..., d, d]`` (float32)
    ½ (O_I/n_I − μ_I μ_Iᵀ) + ½ (O_T/n_T − μ_T μ_Tᵀ) of training sets given by their class sums: counts
    ``[..., 2]``, totals ``[..., 2, d]``, outers ``[..., 2, d, d]``."""
    means = totals / counts[..., None]
    scale = (0.5 / counts).float()
    pooled = outers[..., 0, :, :] * scale[..., 0, None, None] + outers[..., 1, :, :] * scale[..., 1, None, None]
    class_means = means.float()
    return means, pooled - 0.5 * torch.einsum("...md,...me->...de", class_means, class_means)


def lda_solve(means: Tensor, pooled: Tensor, grid: tuple[float, ...] | Tensor) -> tuple[Tensor, Tensor]:
    """LDA weights and offsets (float32, centred coordinates) from class means ``[..., 2, d]`` and pooled
    covariances ``[..., d, d]``: ``[..., K, d]`` and ``[..., K]``, one per shrinkage of ``grid`` (K values), or
    ``[..., d]`` and ``[...]`` for one shrinkage per system (``grid`` a tensor ``[...]``). The ``d × d`` systems
    are solved in float32 (a classifier only has to be fixed before it scores, not exact)."""
    average_variance = torch.diagonal(pooled, dim1=-2, dim2=-1).mean(-1)  # [...]
    if isinstance(grid, Tensor):
        gammas = grid.to(pooled.dtype)
        shrunk = pooled * (1 - gammas)[..., None, None]
        torch.diagonal(shrunk, dim1=-2, dim2=-1).add_((gammas * average_variance)[..., None])
    else:
        gammas = torch.tensor(grid, dtype=pooled.dtype, device=pooled.device)
        shrunk = pooled[..., None, :, :] * (1 - gammas)[:, None, None]  # [..., K, d, d]
        torch.diagonal(shrunk, dim1=-2, dim2=-1).add_((gammas * average_variance[..., None])[..., None])
        means = means[..., None, :, :]  # [..., 1, 2, d]
    difference = (means[..., 0, :] - means[..., 1, :]).float()[..., :, None].expand(*shrunk.shape[:-1], 1)
    weights, info = torch.linalg.solve_ex(shrunk, difference)
    if bool((info != 0).any()):  # singular even after shrinkage (e.g. an all-zero key): least squares
        weights = torch.linalg.lstsq(shrunk.double(), difference.double()).solution.float()
    weights = weights[..., 0]
    midpoint = ((means[..., 0, :] + means[..., 1, :]) / 2).float()
    return weights, -(weights * midpoint).sum(-1)


def fit_calibration(scores: Tensor, labels: Tensor, weights: Tensor, l2: float = CALIBRATION_L2,
                    max_iter: int = 100, tolerance: float = 1e-12,
                    start: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Minimise ``Σ ω_i softplus(−y_i (a z_i + c)) + l2/2 · a²`` for a batch of 1-D problems.

    scores: ``[..., n]`` standardised (weighted mean 0, spread 1), labels: ``[n]`` in {−1, +1}, weights:
    ``[..., n]`` summing to 1 over n. Returns ``(a, c)``, each ``[...]``. Damped Newton from the Gaussian
    starting point (slope = difference of the class means) or from ``start`` (each ``[...]``) where that
    has the lower loss, stopped when every gradient entry is below ``tolerance``.
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
    if start is not None:
        start_a, start_c = (torch.nan_to_num(part.to(a.dtype)).expand_as(a) for part in start)
        start_loss = loss(start_a, start_c)
        better = start_loss < current
        a, c = torch.where(better, start_a, a), torch.where(better, start_c, c)
        current = torch.where(better, start_loss, current)
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
    return nested_fit(keys, layout, moments, n_folds, seed, grid).logits[0]


def nested_fit(keys: Tensor, layout: TokenLayout, moments: BlockMoments, n_folds: int, seed: int,
               grid: tuple[float, ...] = SHRINKAGE_GRID) -> _NestedFit:
    """The nested cross-validation on all samples: its ``logits[0]`` are :func:`heldout_logits`, and
    :func:`refit_jackknife` starts from it (pass it as ``full`` so it is fitted once)."""
    return _NestedFit.of(keys, layout, moments, n_folds, seed, grid)


def _inner_sets(n_folds: int) -> Tensor:
    """``[F, F]``: the training set (index into :func:`training_sets`) that leaves out folds f and g."""
    inner_set = torch.zeros(n_folds, n_folds, dtype=torch.long)
    for j, excluded in enumerate(training_sets(n_folds)):
        if len(excluded) == 2:
            f, g = excluded
            inner_set[f, g] = inner_set[g, f] = j
    return inner_set


def _scores(keys: Tensor, moments: BlockMoments, weights: Tensor, offsets: Tensor) -> Tensor:
    """Scores ``w·(x − centre) + b`` of every token under every direction: weights ``[P, *D, d]``, offsets
    ``[P, *D]`` → ``[P, *D, n]`` float64."""
    n_problems, n_tokens, dim = keys.shape
    centred = keys.float() - moments.centre.float()[:, None, :]
    scores = torch.bmm(centred, weights.reshape(n_problems, -1, dim).transpose(1, 2))  # [P, n, D]
    return (scores.transpose(1, 2).reshape(*offsets.shape, n_tokens) + offsets[..., None]).double()


def _token_weights(layout: TokenLayout, token_fold: Tensor, n_folds: int, keep: Tensor) -> Tensor:
    """``[B, F, n]``: each token's weight in outer fold f's inner evaluation — class-balanced over the tokens
    outside f that fit b may use (``keep`` ``[B, n]``), 0 elsewhere."""
    device = token_fold.device
    outside = (token_fold[None, :] != torch.arange(n_folds, device=device)[:, None])[None] & keep[:, None, :]
    is_image = layout.is_image.to(device)
    class_count = torch.stack([(outside & is_image).sum(-1), (outside & ~is_image).sum(-1)], -1).double()
    token_weight = torch.where(is_image, 0.5 / class_count[..., :1], 0.5 / class_count[..., 1:]) * outside
    return torch.nan_to_num(token_weight, nan=0.0, posinf=0.0)


def _best_shrinkage(inner_scores: Tensor, token_weight: Tensor, is_image: Tensor) -> Tensor:
    """The grid value whose inner held-out scores ``[B, P, F, K, n]`` separate the classes best (Fisher
    ratio), per fit, problem and outer fold: ``[B, P, F]``."""
    fisher = []
    for class_weight in (token_weight * is_image, token_weight * ~is_image):  # [B, F, n]
        mass = class_weight.sum(-1)[:, None, :, None]
        mean = torch.einsum("bpfkn,bfn->bpfk", inner_scores, class_weight) / mass
        second = torch.einsum("bpfkn,bfn->bpfk", inner_scores.square(), class_weight) / mass
        fisher.append((mean, (second - mean.square()).clamp_min(0)))
    separation = (fisher[0][0] - fisher[1][0]).square() / (0.5 * (fisher[0][1] + fisher[1][1])).clamp_min(1e-300)
    return torch.nan_to_num(separation, nan=-1.0).argmax(-1)


def _calibrated(inner_scores: Tensor, best: Tensor, outer_scores: Tensor, token_weight: Tensor, token_fold: Tensor,
                is_image: Tensor, start: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Logits ``[B, P, n]`` and calibrations ``(a, c)`` (``[B, P, F]``): per outer fold, a 1-D logistic fit on
    the standardised inner held-out scores at the chosen shrinkage, applied to the fold's own scores
    ``outer_scores`` ``[B, P, n]`` (each token scored by the fit without its fold, at its fold's shrinkage)."""
    n_fits, n_problems, _, _, n_tokens = inner_scores.shape
    chosen = inner_scores.gather(3, best[..., None, None].expand(-1, -1, -1, 1, n_tokens))[:, :, :, 0]  # [B, P, F, n]
    weight = token_weight[:, None].expand_as(chosen)
    centre = (weight * chosen).sum(-1, keepdim=True)
    spread = (weight * (chosen - centre).square()).sum(-1, keepdim=True).sqrt().clamp_min(1e-30)
    labels = torch.where(is_image, 1.0, -1.0).double()
    slope, intercept = fit_calibration((chosen - centre) / spread, labels, weight, start=start)  # [B, P, F]
    fold_of = token_fold[None, None, :].expand(n_fits, n_problems, -1)
    logits = (slope.gather(2, fold_of) * (outer_scores - centre[..., 0].gather(2, fold_of))
              / spread[..., 0].gather(2, fold_of) + intercept.gather(2, fold_of))
    return torch.nan_to_num(logits, nan=0.0).clamp(-LOGIT_CAP, LOGIT_CAP), (slope, intercept)


@dataclass(frozen=True)
class _NestedFit:
    """The nested grouped cross-validation of P problems on all samples (see the module docstring).

    For each outer fold f, the inner folds g ≠ f are scored by fits that saw neither f nor g. On those inner
    held-out scores the γ of the grid whose scores separate the classes best (Fisher ratio) is kept, and a
    1-D logistic calibration is fitted. Fold f is then scored by the γ fit on every other fold, calibrated
    with that ``(a, c)``. Nothing about fold f is used to score it, so the bound stays a bound."""

    sample_fold: Tensor  # [S]
    token_fold: Tensor  # [n]
    counts: Tensor  # [J, 2] class token counts of every training set
    totals: Tensor  # [P, J, 2, d]
    outers: Tensor  # [P, J, 2, d, d] float32
    scores: Tensor  # [P, J, K, n]: every token under every training set × shrinkage
    inner_scores: Tensor  # [P, F, K, n]: outer fold f's inner held-out scores (token i by the set without f, fold(i))
    best: Tensor  # [1, P, F]
    logits: Tensor  # [1, P, n]
    calibration: tuple[Tensor, Tensor]  # ([1, P, F], [1, P, F])

    @classmethod
    def of(cls, keys: Tensor, layout: TokenLayout, moments: BlockMoments, n_folds: int, seed: int,
           grid: tuple[float, ...]) -> _NestedFit:
        device = keys.device
        n_problems, n_tokens, _ = keys.shape
        sample_fold = sample_folds(layout.n_samples, n_folds, seed)
        token_fold = sample_fold.to(device)[layout.token_sample.to(device)]
        counts, totals, outers = set_sums(moments, sample_fold, n_folds)
        weights, offsets = lda_solve(*pooled_covariance(counts[None], totals, outers), grid)  # [P, J, K, d]
        scores = _scores(keys, moments, weights, offsets)  # [P, J, K, n]
        inner_index = _inner_sets(n_folds).to(device)[:, token_fold]  # [F, n]
        inner_scores = scores.gather(1, inner_index[None, :, None, :].expand(n_problems, -1, len(grid), -1))
        keep = torch.ones(1, n_tokens, dtype=torch.bool, device=device)
        token_weight = _token_weights(layout, token_fold, n_folds, keep)
        is_image = layout.is_image.to(device)
        best = _best_shrinkage(inner_scores[None], token_weight, is_image)  # [1, P, F]
        outer = _outer_scores(scores[None, :, :n_folds], best, token_fold)
        logits, calibration = _calibrated(inner_scores[None], best, outer, token_weight, token_fold, is_image)
        return cls(sample_fold, token_fold, counts, totals, outers, scores, inner_scores, best, logits, calibration)


def _outer_scores(scores: Tensor, best: Tensor, token_fold: Tensor) -> Tensor:
    """Each token's score under the outer fit of its fold at that fold's chosen shrinkage: scores
    ``[B, P, F, K, n]`` (the outer sets), best ``[B, P, F]`` → ``[B, P, n]``."""
    n_fits, n_problems, _, _, n_tokens = scores.shape
    outer = scores.gather(3, best[..., None, None].expand(-1, -1, -1, 1, n_tokens))[:, :, :, 0]  # [B, P, F, n]
    return outer.gather(2, token_fold[None, None, None, :].expand(n_fits, n_problems, 1, -1))[:, :, 0]


def refit_jackknife(keys: Tensor, layout: TokenLayout, moments: BlockMoments, n_folds: int, seed: int,
                    grid: tuple[float, ...] = SHRINKAGE_GRID, full: _NestedFit | None = None) -> tuple[Tensor, Tensor]:
    """``jsd`` and ``auroc`` with each sample left out and the **whole nested cross-validation refitted**
    without it (same folds; the sample's weight 0): ``([S, P], [S, P])`` float64; NaN for a refit in which a
    training set would have no token of a class (3 samples in 3 folds).

    Holding the fitted logits fixed ignores that the classifier varies with the samples as much as the
    evaluation does (those intervals covered 63–86 % of the value they estimate in simulation); the refit
    jackknife-t covered 0.93–0.98. What a refit shares with the full fit: the training sets that leave out
    the sample's fold (a third of them at 5 folds) keep their directions and scores; of the sets that
    change, the outer ones are solved at the shrinkage the refit's inner scores choose only; Newton's
    calibration starts from the full fit's (``full``: :func:`nested_fit` of the same arguments, when the caller
    has it)."""
    device = keys.device
    n_problems, n_tokens, dim = keys.shape
    n_samples, n_grid = layout.n_samples, len(grid)
    full = full or _NestedFit.of(keys, layout, moments, n_folds, seed, grid)
    sets = training_sets(n_folds)
    n_sets = len(sets)
    is_image = layout.is_image.to(device)
    inner_set = _inner_sets(n_folds).to(device)
    sample_counts = moments.count.view(-1, 2)  # [S, 2]
    sample_totals = moments.total.view(n_problems, -1, 2, dim)  # [P, S, 2, d]
    # every class's outer sums, of the training sets then of the samples, as rows of one matrix: a refit's
    # pooled covariance is a linear combination of them (its set's sums minus the left-out sample's)
    stacked = torch.cat([full.outers.permute(1, 2, 0, 3, 4).reshape(2 * n_sets, -1),
                         moments.outer.float().view(n_problems, -1, 2, dim, dim).permute(1, 2, 0, 3, 4)
                         .reshape(2 * n_samples, -1)])  # [2J + 2S, P·d·d]
    jsd = torch.empty(n_samples, n_problems, dtype=torch.float64, device=device)
    auc = torch.empty_like(jsd)
    per_refit = n_problems * n_sets * (n_grid + 1) * (dim * dim + n_tokens)
    step = max(1, REFIT_ELEMENTS // max(1, per_refit))
    for first in range(0, n_samples, step):
        index = torch.arange(first, min(n_samples, first + step), device=device)
        n_left = index.numel()
        left_fold = full.sample_fold.to(device)[index]  # [b]
        # the training sets that trained on the left-out sample: inner sets first, then outer sets
        changed_inner = torch.tensor([[j for j, excluded in enumerate(sets) if len(excluded) == 2
                                       and int(f) not in excluded] for f in left_fold.tolist()], device=device)
        changed_outer = torch.tensor([[j for j, excluded in enumerate(sets) if len(excluded) == 1
                                       and int(f) not in excluded] for f in left_fold.tolist()], device=device)
        changed = torch.cat([changed_inner, changed_outer], 1)  # [b, C]
        n_inner, n_changed = changed_inner.shape[1], changed.shape[1]
        counts = full.counts[changed] - sample_counts[index][:, None]  # [b, C, 2]
        impossible = (counts <= 0).any(-1).any(-1)  # [b]: a training set loses a class (3 samples, 3 folds)
        means = (full.totals[:, changed] - sample_totals[:, index][:, :, None]) / counts[..., None]  # [P, b, C, 2, d]
        scale = (0.5 / counts).float().reshape(-1, 2)  # [b·C, 2]
        coefficients = torch.zeros(n_left * n_changed, 2 * (n_sets + n_samples), device=device)
        rows = torch.arange(n_left * n_changed, device=device)
        for modality in (IMAGE, TEXT):
            coefficients[rows, 2 * changed.flatten() + modality] = scale[:, modality]
            coefficients[rows, 2 * n_sets + 2 * index.repeat_interleave(n_changed) + modality] = -scale[:, modality]
        pooled = (coefficients @ stacked).view(n_left, n_changed, n_problems, dim, dim).permute(2, 0, 1, 3, 4)
        class_means = means.float()
        pooled = pooled - 0.5 * torch.einsum("...md,...me->...de", class_means, class_means)  # [P, b, C, d, d]

        # inner held-out scores: the full fit's, where the inner set did not train on the left-out sample
        weights, offsets = lda_solve(means[:, :, :n_inner], pooled[:, :, :n_inner], grid)  # [P, b, C_in, K, d]
        refit_scores = _scores(keys, moments, weights, offsets).transpose(0, 1)  # [b, P, C_in, K, n]
        slot = torch.full((n_left, n_sets), -1, dtype=torch.long, device=device)
        slot.scatter_(1, changed_inner, torch.arange(n_inner, device=device).expand(n_left, -1))
        source = slot[:, inner_set[:, full.token_fold]]  # [b, F, n]: slot of (f, token's fold), -1 unchanged
        gathered = refit_scores.gather(2, source.clamp_min(0)[:, None, :, None, :].expand(
            -1, n_problems, -1, n_grid, -1))  # [b, P, F, K, n]
        inner_scores = torch.where((source >= 0)[:, None, :, None, :], gathered, full.inner_scores[None])
        keep = layout.token_sample.to(device)[None, :] != index[:, None]  # [b, n]
        token_weight = _token_weights(layout, full.token_fold, n_folds, keep)
        best = _best_shrinkage(inner_scores, token_weight, is_image)  # [b, P, F]

        # outer scores: the outer fits that trained on the sample, solved at the chosen shrinkage only
        outer_fold = changed_outer  # outer set j leaves out fold j
        gamma = torch.tensor(grid, device=device)[best.gather(2, outer_fold[None].expand(n_problems, -1, -1)
                                                             .transpose(0, 1))]  # [b, P, C_out]
        weights, offsets = lda_solve(means[:, :, n_inner:], pooled[:, :, n_inner:], gamma.transpose(0, 1))
        new_outer = _scores(keys, moments, weights, offsets).transpose(0, 1)  # [b, P, C_out, n]
        kept = _outer_scores(full.scores[None, :, :n_folds].expand(n_left, -1, -1, -1, -1), best, full.token_fold)
        position = torch.full((n_left, n_folds), -1, dtype=torch.long, device=device)
        position.scatter_(1, outer_fold, torch.arange(outer_fold.shape[1], device=device).expand(n_left, -1))
        of_token = position[:, full.token_fold]  # [b, n]: which new outer fit scores the token, -1: unchanged
        new = new_outer.gather(2, of_token.clamp_min(0)[:, None, None, :].expand(-1, n_problems, 1, -1))[:, :, 0]
        outer_scores = torch.where((of_token >= 0)[:, None, :], new, kept)
        start = tuple(part.expand(n_left, -1, -1) for part in full.calibration)
        logits, _ = _calibrated(inner_scores, best, outer_scores, token_weight, full.token_fold, is_image, start)

        sample_weights = 1.0 - torch.nn.functional.one_hot(index, n_samples).double()  # [b, S]
        jsd[first:first + n_left] = _jsd_rows(heldout_bits(logits, layout.is_image), layout, sample_weights)
        auc[first:first + n_left] = _auroc_kept(logits, is_image, keep)
        jsd[first:first + n_left][impossible] = float("nan")
        auc[first:first + n_left][impossible] = float("nan")
    return jsd, auc


def _auroc_kept(scores: Tensor, is_image: Tensor, keep: Tensor) -> Tensor:
    """:func:`auroc` of fit ``b``'s scores ``[B, P, n]`` over the tokens it keeps (``keep`` ``[B, n]``): the share
    of (image, text) pairs of kept tokens that the image token wins, ties counting ½. ``[B, P]``."""
    n_fits, n_problems, n_tokens = scores.shape
    kept = keep[:, None, :].expand(-1, n_problems, -1)
    order = torch.argsort(scores, dim=-1, stable=True)
    ordered = scores.gather(-1, order)
    image = is_image[order] & kept.gather(-1, order)
    text = ~is_image[order] & kept.gather(-1, order)
    new_group = torch.ones_like(ordered, dtype=torch.bool)
    new_group[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    group = new_group.long().cumsum(-1) - 1  # tie group of each sorted token
    text_per_group = torch.zeros(n_fits, n_problems, n_tokens, dtype=torch.float64, device=scores.device)
    text_per_group.scatter_add_(-1, group, text.double())
    beaten = text_per_group.cumsum(-1) - 0.5 * text_per_group  # text tokens strictly below + ½ tied
    wins = (beaten.gather(-1, group) * image).sum(-1)
    return wins / (image.sum(-1) * text.sum(-1)).double()


def _jsd_rows(bits: Tensor, layout: TokenLayout, sample_weights: Tensor) -> Tensor:
    """:func:`jsd_bound` of fit ``b``'s bits ``[B, P, n]`` under its own weight row ``[B, S]``: ``[B, P]``."""
    device = bits.device
    n_fits, n_problems, _ = bits.shape
    blocks = layout.token_block.to(device)
    per_block = torch.zeros(n_fits, n_problems, layout.n_blocks, dtype=torch.float64, device=device)
    per_block.index_add_(2, blocks, bits)
    per_block = per_block.view(n_fits, n_problems, layout.n_samples, 2)
    count = layout.sizes.to(device)
    weights = sample_weights.to(device)
    ce = 0.0
    for modality in (IMAGE, TEXT):
        ce = ce + 0.5 * torch.einsum("bs,bps->bp", weights, per_block[..., modality]) \
            / (weights @ count[:, modality])[:, None]
    return (1.0 - ce).clamp_min(0.0)


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
