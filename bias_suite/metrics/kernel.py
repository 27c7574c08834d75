"""Kernel two-sample statistics between the key distributions of samples and modalities.

The population: a benchmark draws samples (an image with its prompt); sample ``s`` has an image-key
distribution ``P_s^I`` and a text-key distribution ``P_s^T``. Every statistic here is built from
mean Gaussian-kernel values between *blocks* (the tokens of one sample and modality) and estimates a
population quantity whose expected value depends neither on the number of samples nor on how many
tokens each sample keeps (the token cap):

* ``K_AB`` = mean over pairs of distinct samples ``s ≠ s'`` of the mean kernel between block
  ``(s, A)`` and block ``(s', B)``: ``E k(x, y)`` for keys of two independent samples.
* ``W_A`` = mean over samples of the mean kernel between *distinct* tokens of block ``(s, A)``.
* ``mmd2`` = ``K_II + K_TT − 2 K_IT``: squared MMD between the image-key and text-key distributions of
  the benchmark (each a mixture over samples).
* ``intra_image`` = ``2 (W_I − K_II)`` = mean over ``s ≠ s'`` of MMD²(P_s^I, P_s'^I): how much the
  image keys of two different images differ. ``intra_text`` likewise.
* ``inter`` = ``W_I + W_T − 2 K_IT`` = mean over ``s ≠ s'`` of MMD²(P_s^I, P_s'^T), and
  ``ratio`` = ``inter / max(intra_image, intra_text, inter / 1000)``: 1 when the modalities are
  exchangeable, large when image keys of any image differ from text keys far more than images differ
  among themselves (the paper's "orders of magnitude"), at most 1000 (between-image variation below a
  thousandth of the inter-modal divergence cannot be told from zero). Undefined (NaN) only when neither
  modality varies between samples and they do not differ either.

Mechanism: the ``n × n`` kernel of each head is evaluated once, in row chunks, and reduced to the
``[G, G]`` matrix of block means (``G = 2 · n_samples``); bootstrap replicates (sample weights) and
permutations (within-sample label swaps) are then small quadratic forms in that matrix. Pairs of the
*same* sample never enter ``K``: tokens of one image are dependent, and a shared per-sample offset of
both modalities must cancel.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bias_suite.metrics.layout import IMAGE, TEXT, TokenLayout

MMD_ESTIMATOR = (
    "MMD² between image and text keys, Gaussian kernel (σ² = ¼ median d²(image, image) + ½ median d²(image, "
    "text) + ¼ median d²(text, text) over keys of different samples), U-statistic over pairs of distinct samples"
)
MEDIAN_TOKENS = 256  # per modality: beyond this the bandwidth is taken over a content-hashed subsample
CHUNK_ELEMENTS = 1 << 25  # kernel entries evaluated at once (128 MiB in float32)


def tensor_digest(keys: Tensor, seed: int) -> Tensor:
    """A pseudo-random int64 per key, a function of its float32 bits and ``seed`` only (not of where the
    token sits in the input): ``[P, n]``. Used to pick subsamples that do not depend on token order."""
    bits = keys.float().contiguous().view(torch.int32).long() & 0xFFFFFFFF  # [P, n, d]
    generator = torch.Generator().manual_seed(seed)
    multipliers = torch.randint(1, 2**31 - 1, (keys.shape[-1],), generator=generator, dtype=torch.int64) * 2 + 1
    mixed = (bits * multipliers.to(keys.device)).sum(-1) & 0x7FFFFFFFFFFF  # [P, n]
    for shift in (17, 31, 13):  # xorshift-multiply finaliser
        mixed = (mixed ^ (mixed >> shift)) * 0x5BD1E995 & 0x7FFFFFFFFFFF
    return mixed


def bandwidth_subsample(keys: Tensor, layout: TokenLayout, seed: int) -> Tensor:
    """Sorted-token indices each problem's bandwidth is taken over: every token of a modality that has at
    most :data:`MEDIAN_TOKENS`, else the :data:`MEDIAN_TOKENS` with the lowest :func:`tensor_digest` (so
    the choice depends neither on token order nor on which modality is called "image").
    keys: ``[P, n, d]`` (uncentred); returns ``[P, m]`` int64 (image tokens first)."""
    is_image = layout.is_image.to(keys.device)
    priority = tensor_digest(keys, seed)
    chosen = []
    for modality in (is_image, ~is_image):
        count = int(modality.sum())
        if count <= MEDIAN_TOKENS:
            chosen.append(modality.nonzero().flatten()[None].expand(keys.shape[0], -1))
        else:
            ranked = torch.where(modality, priority, torch.full_like(priority, 2**62)).argsort(dim=1, stable=True)
            chosen.append(ranked[:, :MEDIAN_TOKENS].sort(dim=1).values)
    return torch.cat(chosen, dim=1)


def median_bandwidth(keys: Tensor, centred: Tensor, layout: TokenLayout, seed: int) -> Tensor:
    """σ² per problem for ``exp(−|x − y|² / (2σ²))``: class-balanced median heuristic over keys of
    *different* samples, ``¼ med(d²_II) + ½ med(d²_IT) + ¼ med(d²_TT)`` (image–image, image–text and
    text–text pairs), so neither the token cap nor the modalities' token counts move it. keys (for the
    subsample) and centred (for the distances): ``[P, n, d]`` in block order. Returns ``[P]`` float64."""
    index = bandwidth_subsample(keys, layout, seed)  # [P, m]
    chosen = centred.float().gather(1, index[..., None].expand(-1, -1, centred.shape[-1]))
    device = keys.device
    samples = layout.token_sample.to(device)[index]  # [P, m]
    image = layout.is_image.to(device)[index]
    norms = chosen.square().sum(-1)
    squared = (norms[:, :, None] + norms[:, None, :] - 2 * chosen @ chosen.transpose(1, 2)).clamp_min(0)  # [P, m, m]
    n_image = int(image[0].sum())  # the subsample lists image tokens first, the same count for every problem
    blocks = {"II": (slice(None, n_image), slice(None, n_image)), "IT": (slice(None, n_image), slice(n_image, None)),
              "TT": (slice(n_image, None), slice(n_image, None))}
    sigma2 = torch.zeros(keys.shape[0], dtype=torch.float64, device=device)
    for kind, mass in (("II", 0.25), ("IT", 0.5), ("TT", 0.25)):
        rows, columns = blocks[kind]
        values = squared[:, rows, columns]
        distinct = samples[:, rows, None] != samples[:, None, columns]
        if kind != "IT":  # each unordered pair once
            distinct = distinct & torch.ones_like(distinct[0]).triu(1)
        pairs = torch.where(distinct, values, torch.full_like(values, float("nan"))).flatten(1)
        median = pairs.nanmedian(dim=1).values.double()
        sigma2 += mass * torch.nan_to_num(median, nan=0.0)
    return torch.where(torch.isfinite(sigma2) & (sigma2 > 0), sigma2, torch.ones_like(sigma2))


def block_kernel_means(keys: Tensor, layout: TokenLayout, sigma2: Tensor) -> Tensor:
    """Mean kernel value between every pair of blocks: ``[P, G, G]`` float64.

    Off the diagonal: the mean over all token pairs of the two blocks. On the diagonal: the mean over
    pairs of *distinct* tokens of the block (a U-statistic; NaN when the block has fewer than 2 tokens).
    Empty blocks give NaN. keys: ``[P, n, d]`` in block order, centred by the caller (so float32
    distances lose nothing); sigma2: ``[P]``.
    """
    n_problems, n_tokens, _ = keys.shape
    keys = keys.float()
    device = keys.device
    blocks = layout.token_block.to(device)
    onehot = torch.nn.functional.one_hot(blocks, layout.n_blocks).float()  # [n, G]
    # One matmul gives the exponent: [x, −½|x|², 1] · [y, 1, −½|y|²] / σ² = −|x − y|² / (2σ²).
    half_norms = -0.5 * keys.square().sum(-1, keepdim=True)  # [P, n, 1]
    ones = torch.ones_like(half_norms)
    rows_side = torch.cat([keys, half_norms, ones], dim=-1) / sigma2.float()[:, None, None]
    columns_side = torch.cat([keys, ones, half_norms], dim=-1).transpose(1, 2)  # [P, d + 2, n]
    sums = torch.zeros(n_problems, layout.n_blocks, layout.n_blocks, dtype=torch.float64, device=device)
    self_sums = torch.zeros(n_problems, layout.n_blocks, dtype=torch.float64, device=device)
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(1, n_problems * n_tokens))
    for start in range(0, n_tokens, rows_per_chunk):
        stop = min(n_tokens, start + rows_per_chunk)
        kernel = torch.bmm(rows_side[:, start:stop], columns_side).clamp_max_(0.0).exp_()  # [P, rows, n]
        per_column_block = kernel @ onehot  # [P, rows, G]
        sums += (onehot[start:stop].T @ per_column_block).double()
        diagonal = torch.diagonal(kernel, offset=start, dim1=1, dim2=2)  # k(x_i, x_i) of these rows
        self_sums.index_add_(1, blocks[start:stop], diagonal.double())
    sizes = layout.block_sizes.to(device)
    means = sums / (sizes[:, None] * sizes[None, :])
    within = (torch.diagonal(sums, dim1=1, dim2=2) - self_sums) / (sizes * (sizes - 1))
    means.diagonal(dim1=1, dim2=2).copy_(torch.where(sizes > 1, within, torch.full_like(within, float("nan"))))
    return means


def _pair_mean(block_means: Tensor, weights_a: Tensor, weights_b: Tensor) -> Tensor:
    """Weighted mean over pairs of distinct samples of the block means between set A and set B.

    block_means: ``[P, S, 2, S, 2]`` (NaN-free); weights_a/b: ``[Q, S, 2]``, a sample's weight on the
    block (modality) it contributes to the set (0 elsewhere). Returns ``[Q, P]``.
    """
    total = torch.einsum("qxa,pxayb,qyb->qp", weights_a, block_means, weights_b)
    same_sample = torch.diagonal(block_means, dim1=1, dim2=3).permute(0, 3, 1, 2)  # [P, S, 2, 2]
    total = total - torch.einsum("qxa,pxab,qxb->qp", weights_a, same_sample, weights_b)
    per_sample_a, per_sample_b = weights_a.sum(2), weights_b.sum(2)  # [Q, S]
    norm = per_sample_a.sum(1) * per_sample_b.sum(1) - (per_sample_a * per_sample_b).sum(1)
    return total / norm[:, None]


def _within_mean(block_means: Tensor, present: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean over samples of the within-block U-means of set A: ``[Q, P]``.

    present: ``[S, 2]`` bool, blocks with at least 2 tokens; weights: ``[Q, S, 2]`` as in :func:`_pair_mean`."""
    within = torch.diagonal(block_means, dim1=1, dim2=3).diagonal(dim1=1, dim2=2)  # [P, S, 2]
    usable = weights * present
    return torch.einsum("qxa,pxa->qp", usable, torch.nan_to_num(within)) / usable.sum((1, 2))[:, None]


def _as_five_d(block_means: Tensor, n_samples: int) -> Tensor:
    return torch.nan_to_num(block_means).view(block_means.shape[0], n_samples, 2, n_samples, 2)


def kernel_statistics(block_means: Tensor, layout: TokenLayout, sample_weights: Tensor) -> dict[str, Tensor]:
    """``mmd2``, ``intra_image``, ``intra_text``, ``inter``, ``ratio`` for each row of ``sample_weights``
    (``[R, S]`` multiplicities; a row of ones is the data as observed). Returns ``[R, P]`` tensors."""
    device = block_means.device
    means = _as_five_d(block_means, layout.n_samples)
    sizes = layout.sizes.to(device)
    weights = sample_weights.to(device)
    image = torch.zeros(1, layout.n_samples, 2, dtype=torch.float64, device=device)
    image[..., IMAGE] = 1.0
    text = 1.0 - image
    image_weights = weights[:, :, None] * image * (sizes > 0)
    text_weights = weights[:, :, None] * text * (sizes > 0)
    k_ii = _pair_mean(means, image_weights, image_weights)
    k_tt = _pair_mean(means, text_weights, text_weights)
    k_it = _pair_mean(means, image_weights, text_weights)
    w_i = _within_mean(means, sizes > 1, image_weights)
    w_t = _within_mean(means, sizes > 1, text_weights)
    intra_image, intra_text = 2 * (w_i - k_ii), 2 * (w_t - k_tt)
    inter = w_i + w_t - 2 * k_it
    # Between-image variation below 1/RATIO_CAP of the inter-modal divergence reads as the cap: the
    # estimate of a vanishing denominator is noise (it may even come out negative).
    denominator = torch.maximum(torch.maximum(intra_image, intra_text), inter / RATIO_CAP)
    ratio = torch.where(denominator > 0, inter.clamp_min(0) / denominator, torch.full_like(inter, float("nan")))
    return {"mmd2": k_ii + k_tt - 2 * k_it, "intra_image": intra_image, "intra_text": intra_text,
            "inter": inter, "ratio": ratio}


def flipped_mmd2(block_means: Tensor, layout: TokenLayout, flips: Tensor) -> Tensor:
    """``mmd2`` with the image and text labels swapped inside the samples ``flips`` marks:
    ``[n_flips, P]``. flips: ``[n_flips, S]`` in {0, 1}. Samples that lack one modality are never
    swapped (their only block stays where it is)."""
    device = block_means.device
    means = _as_five_d(block_means, layout.n_samples)
    present = (layout.sizes > 0).to(device)  # [S, 2]
    swappable = present.all(1)
    swap = flips.to(device).bool() & swappable
    a_modality = torch.where(swap, TEXT, IMAGE)  # [F, S]
    weights_a = torch.nn.functional.one_hot(a_modality, 2).double() * present
    weights_b = torch.nn.functional.one_hot(1 - a_modality, 2).double() * present
    return (_pair_mean(means, weights_a, weights_a) + _pair_mean(means, weights_b, weights_b)
            - 2 * _pair_mean(means, weights_a, weights_b))


RATIO_CAP = 1000.0
TIE_TOLERANCE = 1e-6  # relative: the float32 kernel cannot order values closer than this


def permutation_pvalue(observed: Tensor, null: Tensor) -> Tensor:
    """``(1 + #{null ≥ observed}) / (1 + n_permutations)``; observed ``[P]``, null ``[F, P]``. Values within
    rounding of the observed one count as ties (swapping every sample's labels reproduces it exactly)."""
    slack = TIE_TOLERANCE * observed.abs() + 1e-12
    exceed = (null >= (observed - slack)[None, :]).sum(0).double()
    return (1 + exceed) / (1 + null.shape[0])
