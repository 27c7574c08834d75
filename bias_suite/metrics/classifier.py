"""Held-out separability of image and text keys: the Jensen-Shannon lower bound and AUROC.

With a class-balanced pooled sample, JS(P_image, P_text) in bits equals the mutual information
I(X; modality), and for any classifier D, ``1 − CE_bits(D)`` on fresh data is a lower bound on it
(DESIGN §1). The classifier is an L2-regularised logistic regression on keys centred on the pooled mean and
scaled to unit RMS norm (so the fit is rotation-invariant), minimising the class-balanced mean log-loss
plus ``L2/2 · |β|²`` (scikit-learn's ``C = 1 / (L2 · n_train)``), fitted on the other folds with balanced
class weights; folds are whole samples, so no image is both trained and scored. The fit is a damped
Newton method batched over heads and folds (the same optimum scikit-learn's solver reaches; the bench
checks it against scikit-learn).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn.functional import softplus

L2 = 1e-3  # weak: the bound is only tight when the classifier may be confident
JSD_ESTIMATOR = (
    f"variational lower bound 1 - CE_bits of an L2 logistic regression (penalty {L2} on standardised keys, "
    "balanced class weights) "
    "scored on held-out folds grouped by sample; clipped at 0"
)
LN2 = math.log(2.0)


def sample_folds(n_samples: int, n_folds: int, seed: int) -> Tensor:
    """Fold of each sample (``[n_samples]`` int64): a seeded shuffle dealt round-robin into folds."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_samples, generator=generator)
    folds = torch.empty(n_samples, dtype=torch.int64)
    folds[order] = torch.arange(n_samples) % n_folds
    return folds


def standardise(keys: Tensor) -> Tensor:
    """Centre on the pooled mean and divide by the pooled RMS norm (per head). ``[H, n, d]`` float64."""
    centred = keys - keys.mean(dim=1, keepdim=True)
    scale = centred.square().sum(-1).mean(-1).sqrt().clamp_min(1e-30)
    return centred / scale[:, None, None]


def balanced_weights(is_image: Tensor, train_mask: Tensor) -> Tensor:
    """scikit-learn's ``class_weight="balanced"`` on each training set, 0 on held-out tokens.

    is_image: ``[n]`` bool; train_mask: ``[F, n]`` bool. Returns ``[F, n]`` float64.
    """
    train = train_mask.to(torch.float64)
    n_image = (train * is_image).sum(1, keepdim=True)
    n_text = (train * ~is_image).sum(1, keepdim=True)
    n_train = n_image + n_text
    per_class = torch.where(is_image, n_train / (2 * n_image.clamp_min(1)), n_train / (2 * n_text.clamp_min(1)))
    return train * per_class


def fit_logistic(
    features: Tensor, labels: Tensor, weights: Tensor, l2: float = L2, max_iter: int = 100, tol: float = 1e-10
) -> Tensor:
    """Minimise ``Σ_i w_i · logloss_i / Σ_i w_i + l2/2 · |β|²`` (intercept not penalised) for a batch
    of problems.

    features: ``[P, n, d]`` float64 (the intercept column is added here); labels: ``[n]`` {0, 1};
    weights: ``[P, n]``. Returns coefficients ``[P, d + 1]`` (last entry: intercept), float64.
    Newton steps with the Hessian in float32 (it only steers) and gradient and loss in float64 (they
    decide the optimum), halved until the loss decreases.
    """
    n_problems, n_tokens, dim = features.shape
    design = torch.cat([features, features.new_ones(n_problems, n_tokens, 1)], dim=2)
    design32 = design.float()
    penalty = torch.full((dim + 1,), l2, dtype=torch.float64)
    penalty[-1] = 0.0
    y = labels.to(torch.float64)
    weights = weights / weights.sum(1, keepdim=True)
    beta = torch.zeros(n_problems, dim + 1, dtype=torch.float64)

    def objective(b: Tensor) -> Tensor:
        z = torch.einsum("pnd,pd->pn", design, b)
        return (weights * (softplus(z) - y * z)).sum(1) + 0.5 * (penalty * b * b).sum(1)

    loss = objective(beta)
    for _ in range(max_iter):
        z = torch.einsum("pnd,pd->pn", design, beta)
        p = torch.sigmoid(z)
        gradient = torch.einsum("pnd,pn->pd", design, weights * (p - y)) + penalty * beta
        if float(gradient.abs().max()) < tol:
            break
        curvature = (weights * p * (1 - p)).float()
        hessian = torch.bmm(design32.transpose(1, 2), design32 * curvature[:, :, None]).double()
        hessian = hessian + torch.diag(penalty + 1e-9)
        step = torch.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        scale = torch.ones(n_problems, 1, dtype=torch.float64)
        for _ in range(30):
            candidate = beta - scale * step
            candidate_loss = objective(candidate)
            worse = candidate_loss > loss + 1e-12 * loss.abs()
            if not bool(worse.any()):
                break
            scale = torch.where(worse[:, None], scale / 2, scale)
        beta, loss = candidate, torch.minimum(candidate_loss, loss)
    return beta


def heldout_logits(keys: Tensor, is_image: Tensor, token_fold: Tensor, n_folds: int) -> Tensor:
    """Logit of "image" for every token from the classifier that did not see its sample.

    keys: ``[H, n, d]`` float64 (one problem per head); is_image: ``[n]`` bool; token_fold: ``[n]``.
    Returns ``[H, n]`` float64.
    """
    n_heads, n_tokens, dim = keys.shape
    features = standardise(keys)
    train_mask = token_fold[None, :] != torch.arange(n_folds)[:, None]  # [F, n]
    weights = balanced_weights(is_image, train_mask)  # [F, n]
    batch = features[:, None].expand(n_heads, n_folds, n_tokens, dim).reshape(-1, n_tokens, dim)
    beta = fit_logistic(batch, is_image, weights.repeat(n_heads, 1)).reshape(n_heads, n_folds, dim + 1)
    logits_per_fold = torch.einsum("hnd,hfd->hfn", features, beta[..., :dim]) + beta[..., dim:]  # [H, F, n]
    return logits_per_fold.gather(1, token_fold.expand(n_heads, 1, n_tokens)).squeeze(1)


def heldout_bits(logits: Tensor, is_image: Tensor) -> Tensor:
    """Cross-entropy of the true modality in bits, per token: ``[H, n]`` float64."""
    signed = torch.where(is_image, logits, -logits)
    return softplus(-signed) / LN2


def jsd_bound(bits: Tensor, is_image: Tensor, token_sample: Tensor, sample_weights: Tensor) -> Tensor:
    """``max(0, 1 − CE_bits)`` with class-balanced CE, for each row of ``sample_weights``.

    bits: ``[H, n]``; sample_weights: ``[R, S]`` multiplicities (row of ones = the data as observed).
    Returns ``[R, H]`` float64.
    """
    n_samples = sample_weights.shape[1]
    ce = 0.0
    for modality in (is_image, ~is_image):
        index = token_sample[modality]
        loss_per_sample = torch.zeros(bits.shape[0], n_samples, dtype=torch.float64).index_add_(1, index, bits[:, modality])
        count_per_sample = torch.zeros(n_samples, dtype=torch.float64).index_add_(0, index, torch.ones_like(index, dtype=torch.float64))
        ce = ce + 0.5 * (sample_weights @ loss_per_sample.T) / (sample_weights @ count_per_sample)[:, None]
    return (1.0 - ce).clamp_min(0.0)


def auroc(scores: Tensor, is_image: Tensor, token_sample: Tensor, sample_weights: Tensor) -> Tensor:
    """P(score of an image token > score of a text token) (+½ for ties), tokens weighted by their
    sample's multiplicity, for each row of ``sample_weights``. scores: ``[H, n]``. Returns ``[R, H]``."""
    results = []
    for head_scores in scores:
        order = torch.argsort(head_scores, stable=True)
        sorted_scores = head_scores[order]
        _, tie_group = torch.unique_consecutive(sorted_scores, return_inverse=True)
        n_groups = int(tie_group.max()) + 1 if tie_group.numel() else 0
        token_weight = sample_weights[:, token_sample[order]]  # [R, n]
        image = is_image[order]
        text_weight = token_weight * (~image)
        text_per_group = torch.zeros(sample_weights.shape[0], n_groups, dtype=torch.float64).index_add_(1, tie_group, text_weight)
        text_below = text_per_group.cumsum(1) - text_per_group
        beaten = text_below + 0.5 * text_per_group  # [R, G]
        image_weight = token_weight * image
        numerator = (image_weight * beaten[:, tie_group]).sum(1)
        results.append(numerator / (image_weight.sum(1) * text_weight.sum(1)))
    return torch.stack(results, dim=1)
