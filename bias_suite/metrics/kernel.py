"""Kernel two-sample statistics between the key distributions of samples and modalities.

The population: a benchmark draws samples (an image with its prompt); sample ``s`` has an image-key
distribution ``P_s^I`` and a text-key distribution ``P_s^T``. Every statistic here is built from mean kernel
values between *blocks* (the tokens of one sample and modality) and estimates a population quantity whose
expected value depends neither on the number of samples nor on how many tokens each sample keeps (the
token cap):

* ``K_AB`` = mean over pairs of distinct samples ``s ≠ s'`` of the mean kernel between block ``(s, A)`` and
  block ``(s', B)``: ``E k(x, y)`` for keys of two independent samples.
* ``W_A`` = mean over samples of the within-block term of block ``(s, A)`` (below).
* ``mmd2`` = ``K_II + K_TT − 2 K_IT`` on the **Gaussian** kernel (median-heuristic bandwidth): squared MMD
  between the image-key and text-key distributions of the benchmark (each a mixture over samples).
* On the **energy-distance** kernel ``k(x, y) = −|x − y|`` (no bandwidth): ``intra_image`` = ``2 (W_I − K_II)``
  = mean over ``s ≠ s'`` of the energy distance between ``P_s^I`` and ``P_s'^I`` (how much the image keys of
  two different images differ), ``intra_text`` likewise, ``inter`` = ``W_I + W_T − 2 K_IT`` (image keys of one
  sample against text keys of another), and ``ratio`` = ``inter / ½(intra_image + intra_text)`` (formed in
  :mod:`~bias_suite.metrics.keyspace`): exactly 1 in expectation when the modalities are exchangeable, and it
  grows like the distance between the modalities (13× from a 3σ to a 30σ shift), with no cap.

**Template keys.** Chat-template tokens have the same pre-RoPE key in every sample. Keys that occur
bit-identically in at least two samples of one modality are *atoms* (:func:`shared_key_mask`); within a
block of ``m`` tokens, ``m_a`` atoms and ``m_v`` varying tokens the within-block term is

    W = ( Σ_{i≠j} k(x_i, x_j) + Σ_{atoms} k(x_i, x_i) + m_v · U_vv ) / m²   (U_vv: mean over pairs of varying tokens)

— the kernel mean of the block's key distribution, template keys included — so ``intra`` estimates a mean
of non-negative energy distances whose template part cancels exactly (the plain U-statistic, which this is
without atoms, read significantly negative with 24 of 32 text tokens from the template).

Mechanism: the squared distances of each head are evaluated once, in row chunks, and reduced to the
``[G, G]`` matrices of block means (``G = 2 · n_samples``) of the Gaussian kernel, its derivative in the
bandwidth and the energy kernel; resampling rows (sample weights), the delete-one-sample jackknife and
permutations (within-sample label swaps) are then small quadratic forms in those matrices. Pairs of the
*same* sample never enter ``K``: tokens of one image are dependent, and a shared per-sample offset of both
modalities must cancel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bias_suite.metrics.layout import IMAGE, TEXT, TokenLayout

MMD_ESTIMATOR = (
    "MMD² between image and text keys, Gaussian kernel (σ² = ¼ median d²(image, image) + ½ median d²(image, "
    "text) + ¼ median d²(text, text) over keys of different samples), U-statistic over pairs of distinct samples"
)
MEDIAN_TOKENS = 256  # per modality: beyond this the bandwidth is taken over a content-hashed subsample
CHUNK_ELEMENTS = 1 << 25  # kernel entries evaluated at once (128 MiB in float32)
SNAP = 1e-6  # relative: squared distances below SNAP·(|x|² + |y|²) are float32 rounding of identical keys
CANONICAL_SEED = 0  # of the digest that orders the tokens of a block (in_canonical_order)
ATOM_SEEDS = (0x5EED, 0xA70B)  # the two digests that identify a key bit for bit (shared_key_mask)


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


def in_canonical_order(keys: Tensor, layout: TokenLayout) -> Tensor:
    """``keys`` ``[P, n, d]`` (block order) with the tokens of every block sorted by :func:`tensor_digest` of the
    key: a within-block permutation (the layout stays valid) that depends only on the key values, so float
    sums run in the same order whatever order the tokens came in. Identical keys tie, and swapping identical
    values changes no arithmetic."""
    digest = tensor_digest(keys, CANONICAL_SEED)  # [P, n] in [0, 2^47)
    block = layout.token_block.to(keys.device)[None, :]
    order = torch.sort(block * (1 << 47) + digest, dim=1, stable=True).indices
    return keys.gather(1, order[..., None].expand_as(keys))


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


def bandwidths(keys: Tensor, centred: Tensor, layout: TokenLayout, seed: int, leave_one_out: bool = True) -> Tensor:
    """σ² per problem for ``exp(−|x − y|² / (2σ²))``: class-balanced median heuristic over keys of
    *different* samples, ``¼ med(d²_II) + ½ med(d²_IT) + ¼ med(d²_TT)`` (image–image, image–text and
    text–text pairs), so neither the token cap nor the modalities' token counts move it. keys (for the
    subsample) and centred (for the distances): ``[P, n, d]`` in block order.

    Row 0 is the data's; with ``leave_one_out``, row ``1 + s`` is re-estimated without sample s (the
    subsample of :func:`bandwidth_subsample` drawn again from the other samples): ``[1 + S, P]`` float64.
    One distance matrix over the candidates any row can draw serves every row."""
    device = keys.device
    is_image = layout.is_image.to(device)
    priority = tensor_digest(keys, seed)  # [P, n]
    n_problems = keys.shape[0]
    spare = int(layout.block_sizes.max()) if leave_one_out else 0
    candidates, capped = [], []
    for modality in (is_image, ~is_image):
        count = int(modality.sum())
        if count <= MEDIAN_TOKENS:
            candidates.append(modality.nonzero().flatten()[None].expand(n_problems, -1))
            capped.append(False)
        else:  # in ascending priority: the subsample is the first MEDIAN_TOKENS of those left
            ranked = torch.where(modality, priority, torch.full_like(priority, 2**62)).argsort(dim=1, stable=True)
            candidates.append(ranked[:, :min(count, MEDIAN_TOKENS + spare)])
            capped.append(True)
    index = torch.cat(candidates, dim=1)  # [P, m]: image candidates first
    n_image = candidates[0].shape[1]
    chosen = centred.float().gather(1, index[..., None].expand(-1, -1, centred.shape[-1]))
    samples = layout.token_sample.to(device)[index]  # [P, m]
    norms = chosen.square().sum(-1)
    squared = (norms[:, :, None] + norms[:, None, :] - 2 * chosen @ chosen.transpose(1, 2)).clamp_min(0)

    def selected(left_out: int | None) -> Tensor:
        """``[P, m]``: the candidates the subsample keeps when ``left_out`` (a sample, or None) is left out."""
        parts = []
        for part, is_capped in zip((slice(None, n_image), slice(n_image, None)), capped):
            of_part = samples[:, part]
            remaining = torch.ones_like(of_part, dtype=torch.bool) if left_out is None else of_part != left_out
            if is_capped:
                remaining = remaining & (remaining.long().cumsum(1) <= MEDIAN_TOKENS)
            parts.append(remaining)
        return torch.cat(parts, dim=1)

    m_total = index.shape[1]
    rows_out = [None, *range(layout.n_samples)] if leave_one_out else [None]
    keep = torch.stack([selected(left_out) for left_out in rows_out])  # [R, P, m]
    sigma2 = torch.zeros(len(rows_out), n_problems, dtype=torch.float64, device=device)
    spans = ((0, n_image, 0, n_image, 0.25), (0, n_image, n_image, m_total, 0.5),
             (n_image, m_total, n_image, m_total, 0.25))
    for row_start, row_stop, column_start, column_stop, mass in spans:
        if row_start == column_start:  # each unordered pair once
            first, second = torch.triu_indices(row_stop - row_start, row_stop - row_start, 1, device=device)
        else:
            grid = torch.cartesian_prod(torch.arange(row_stop - row_start, device=device),
                                        torch.arange(column_stop - column_start, device=device))
            first, second = grid[:, 0], grid[:, 1]
        first, second = first + row_start, second + column_start  # candidate positions of each pair
        values, order = squared[:, first, second].sort(dim=1)
        first, second = first[order], second[order]  # [P, pairs], ascending distance
        distinct = samples.gather(1, first) != samples.gather(1, second)
        step = max(1, CHUNK_ELEMENTS // max(1, n_problems * first.shape[1]))
        for start in range(0, len(rows_out), step):
            chosen = keep[start:start + step]
            expand = (chosen.shape[0], -1, -1)
            usable = (distinct[None] & chosen.gather(2, first[None].expand(*expand))
                      & chosen.gather(2, second[None].expand(*expand)))
            sigma2[start:start + step] += mass * _lower_median(values, usable)
    return torch.where(torch.isfinite(sigma2) & (sigma2 > 0), sigma2, torch.ones_like(sigma2))


def _lower_median(sorted_values: Tensor, usable: Tensor) -> Tensor:
    """The lower median (as ``nanmedian``) of the usable entries of each row of ascending ``sorted_values``
    ``[P, k]``, for each mask ``usable`` ``[R, P, k]``; 0 where none is usable: ``[R, P]`` float64."""
    counts = usable.int().cumsum(-1, dtype=torch.int32)
    total = counts[..., -1]
    wanted = (total - 1).div(2, rounding_mode="floor") + 1  # the k-th usable value, 1-based
    position = (counts >= wanted[..., None]).int().argmax(-1)
    median = sorted_values.double()[None].expand(usable.shape[0], -1, -1).gather(2, position[..., None])[..., 0]
    return torch.where(total > 0, median, torch.zeros_like(median))


def shared_key_mask(keys: Tensor, layout: TokenLayout) -> Tensor:
    """``[P, n]`` bool: tokens whose key (its float32 bits) also occurs in another sample's block of the same
    modality — chat-template tokens, and at decoder layer 0 any token id repeated across samples. Keys are
    identified by two independent 47-bit digests of their bits (:func:`tensor_digest`; a false match needs a
    94-bit collision). keys: ``[P, n, d]`` in block order."""
    n_problems = keys.shape[0]
    device = keys.device
    first, second = tensor_digest(keys, ATOM_SEEDS[0]), tensor_digest(keys, ATOM_SEEDS[1])
    modality = (~layout.is_image).long().to(device)[None].expand(n_problems, -1)
    problem = torch.arange(n_problems, device=device)[:, None].expand_as(first)
    identity = torch.stack([problem, modality, first, second], dim=-1).reshape(-1, 4)
    _, key_of = torch.unique(identity, dim=0, return_inverse=True)  # [P·n]: one id per distinct (problem, key)
    sample = layout.token_sample.to(device)[None].expand(n_problems, -1).reshape(-1)
    pair = torch.unique(key_of * layout.n_samples + sample)  # distinct (key, sample) pairs
    samples_per_key = torch.bincount(pair // layout.n_samples, minlength=int(key_of.max()) + 1)
    return (samples_per_key[key_of] >= 2).view(n_problems, -1)


@dataclass(frozen=True)
class BlockMeans:
    """Mean kernel values between every pair of blocks, ``[P, G, G]`` float64 each.

    ``gaussian``: exp(−|x − y|² / 2σ²) between distinct blocks (the diagonal is NaN: nothing uses it);
    ``bandwidth_slope``: its derivative in σ² (the linearised bandwidth jackknife of ``mmd2``);
    ``energy``: −|x − y|, with the template-robust within-block term on the diagonal (module docstring).
    """

    gaussian: Tensor
    bandwidth_slope: Tensor
    energy: Tensor


def block_means(keys: Tensor, layout: TokenLayout, sigma2: Tensor, atoms: Tensor | None = None) -> BlockMeans:
    """Every block mean of every kernel from one pass over the squared distances.

    keys: ``[P, n, d]`` in block order, centred by the caller (float32 distances then lose nothing); sigma2:
    ``[P]``; atoms: ``[P, n]`` bool (:func:`shared_key_mask`), None for none. Where atoms exist, distances
    below :data:`SNAP` × (|x|² + |y|²) are float32 rounding of identical keys and count as 0."""
    n_problems, n_tokens, _ = keys.shape
    keys = keys.float()
    device = keys.device
    norms = keys.square().sum(-1)  # [P, n]
    ones = torch.ones_like(norms)[..., None]
    # One matmul gives the squared distance: [−2x, |x|², 1] · [y, 1, |y|²] = |x − y|².
    rows_side = torch.cat([-2 * keys, norms[..., None], ones], dim=-1)
    columns_side = torch.cat([keys, ones, norms[..., None]], dim=-1).transpose(1, 2)  # [P, d + 2, n]
    inverse = (0.5 / sigma2.float())[:, None, None]  # 1 / (2σ²)
    snap = atoms is not None and bool(atoms.any())
    reduce_columns = _column_reducer(layout, device)
    onehot = torch.nn.functional.one_hot(layout.token_block.to(device), layout.n_blocks).float()  # [n, G]
    sums = torch.zeros(3, n_problems, layout.n_blocks, layout.n_blocks, dtype=torch.float64, device=device)
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(1, 4 * n_problems * n_tokens))
    buffer = torch.empty(3, n_problems, min(rows_per_chunk, n_tokens), n_tokens, device=device)  # reused
    for start in range(0, n_tokens, rows_per_chunk):
        stop = min(n_tokens, start + rows_per_chunk)
        values = buffer if stop - start == buffer.shape[2] else torch.empty(3, n_problems, stop - start, n_tokens,
                                                                               device=device)
        squared = torch.bmm(rows_side[:, start:stop], columns_side, out=values[2]).clamp_min_(0)
        if snap:
            identical = squared < SNAP * (norms[:, start:stop, None] + norms[:, None, :])
            squared.masked_fill_(identical, 0.0)
        torch.mul(squared, -inverse, out=values[0]).exp_()  # Gaussian kernel
        torch.mul(values[0], squared, out=values[1])  # k·d², times 1/(2σ⁴) after the reduction
        squared.sqrt_()  # the energy kernel's −d, negated after the reduction (in place: values[2])
        per_column_block = reduce_columns(values.view(-1, n_tokens)).view(3, n_problems, stop - start, -1)
        sums += (onehot[start:stop].T @ per_column_block).double()
    sizes = layout.block_sizes.to(device)
    means = sums / (sizes[:, None] * sizes[None, :])
    gaussian, slope, energy = means.unbind(0)
    slope = slope * (2 * inverse.double().square())  # ∂k/∂σ² = k·d²/(2σ⁴)
    energy = -energy
    nan = torch.full((n_problems, layout.n_blocks), float("nan"), dtype=torch.float64, device=device)
    gaussian.diagonal(dim1=1, dim2=2).copy_(nan)
    slope.diagonal(dim1=1, dim2=2).copy_(nan)
    energy.diagonal(dim1=1, dim2=2).copy_(_energy_within(keys, layout, atoms))
    return BlockMeans(gaussian, slope, energy)


def _column_reducer(layout: TokenLayout, device: torch.device):
    """``[rows, n] → [rows, G]``: sums over the tokens of each block. Blocks of one size per modality (the
    token cap's usual outcome) are a reshape; other layouts a matrix product with the block indicator."""
    sizes = layout.sizes.long()  # [S, 2]
    image, text = int(sizes[0, 0]), int(sizes[0, 1])
    if bool((sizes[:, 0] == image).all() and (sizes[:, 1] == text).all()) and image > 0 and text > 0:
        def by_reshape(values: Tensor) -> Tensor:
            if image == text:
                return values.view(values.shape[0], layout.n_blocks, image).sum(-1)
            per_sample = values.view(values.shape[0], layout.n_samples, image + text)
            return torch.stack([per_sample[..., :image].sum(-1), per_sample[..., image:].sum(-1)], -1).flatten(1)
        return by_reshape
    onehot = torch.nn.functional.one_hot(layout.token_block.to(device), layout.n_blocks).float()
    return lambda values: values @ onehot


def _energy_within(keys: Tensor, layout: TokenLayout, atoms: Tensor | None) -> Tensor:
    """The template-robust within-block term of the energy kernel for every block: ``[P, G]`` float64 (NaN
    for blocks of fewer than 2 tokens). Blocks are gathered into a padded ``[P, G, m, d]`` batch."""
    n_problems = keys.shape[0]
    device = keys.device
    sizes = layout.block_sizes.long()
    width = max(1, int(sizes.max()))
    slot = torch.arange(width)
    present = slot[None, :] < sizes[:, None]  # [G, m]
    index = torch.where(present, torch.tensor(layout.block_starts)[:, None] + slot[None, :], 0).to(device)
    present = present.to(device)
    pair = present[:, :, None] & present[:, None, :] & ~torch.eye(width, dtype=torch.bool, device=device)
    atoms = torch.zeros(n_problems, keys.shape[1], dtype=torch.bool, device=device) if atoms is None else atoms
    size = sizes.to(device).double()
    out = []
    step = max(1, CHUNK_ELEMENTS // max(1, 4 * layout.n_blocks * width * width))
    for start in range(0, n_problems, step):
        block_keys = keys[start:start + step][:, index]  # [p, G, m, d]
        norms = block_keys.square().sum(-1)
        squared = (norms[..., :, None] + norms[..., None, :] - 2 * block_keys @ block_keys.transpose(-1, -2))
        squared = squared.clamp_min_(0)
        squared.masked_fill_(squared < SNAP * (norms[..., :, None] + norms[..., None, :]), 0.0)
        kernel = -squared.sqrt().double() * pair  # [p, G, m, m], 0 off the block's distinct pairs
        varying = present & ~atoms[start:start + step][:, index]  # [p, G, m]
        both = varying[..., :, None] & varying[..., None, :]
        total = kernel.sum((-1, -2))
        n_varying = varying.sum(-1).double()
        u_all = total / (size * (size - 1)).clamp_min(1)
        u_varying = (kernel * both).sum((-1, -2)) / (n_varying * (n_varying - 1)).clamp_min(1)
        u_varying = torch.where(n_varying >= 2, u_varying, u_all)
        within = (total + n_varying * u_varying) / size.square()  # an atom's own pair adds k(x, x) = 0
        out.append(torch.where(size > 1, within, torch.full_like(within, float("nan"))))
    return torch.cat(out)


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


def pair_statistics(block_means: Tensor, layout: TokenLayout, sample_weights: Tensor,
                    within: bool = True) -> dict[str, Tensor]:
    """``between`` (``K_II + K_TT − 2 K_IT``: ``mmd2`` on the Gaussian kernel) and, with ``within``,
    ``intra_image``, ``intra_text`` and ``inter`` for each row of ``sample_weights`` (``[R, S]``; a row of ones
    is the data as observed, 0 leaves a sample out). Returns ``[R, P]`` tensors."""
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
    statistics = {"between": k_ii + k_tt - 2 * k_it}
    if within:
        w_i = _within_mean(means, sizes > 1, image_weights)
        w_t = _within_mean(means, sizes > 1, text_weights)
        statistics.update(intra_image=2 * (w_i - k_ii), intra_text=2 * (w_t - k_tt), inter=w_i + w_t - 2 * k_it)
    return statistics


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


TIE_TOLERANCE = 1e-6  # relative: the float32 kernel cannot order values closer than this


def permutation_pvalue(observed: Tensor, null: Tensor) -> Tensor:
    """``(1 + #{null ≥ observed}) / (1 + n_permutations)``; observed ``[P]``, null ``[F, P]``. Values within
    rounding of the observed one count as ties (swapping every sample's labels reproduces it exactly)."""
    slack = TIE_TOLERANCE * observed.abs() + 1e-12
    exceed = (null >= (observed - slack)[None, :]).sum(0).double()
    return (1 + exceed) / (1 + null.shape[0])
