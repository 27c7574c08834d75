"""Kernel two-sample statistics (MMD²) computed from block sums of one Gaussian kernel matrix.

Tokens are grouped in blocks, one per (sample, modality). The ``n × n`` kernel is evaluated once per
head, in row chunks, and immediately reduced to the ``[G, G]`` matrix of block sums. Every statistic
below — the unbiased MMD², its permutation null, the split-half intra-modal baselines and all
bootstrap replicates — is then a small weighted quadratic form in that matrix, so resampling and
permuting whole samples costs nothing extra. A set of tokens is described by block multiplicities
``a`` (``[R, G]``): 1 for a block in the set, 0 otherwise, or a bootstrap count.
"""

from __future__ import annotations

import torch
from torch import Tensor

MMD_ESTIMATOR = "unbiased MMD² (U-statistic), Gaussian kernel, bandwidth σ = median pairwise distance of the pooled keys"
MEDIAN_SUBSAMPLE = 2048  # pooled tokens beyond this: the median distance is taken on a seeded subsample
CHUNK_ELEMENTS = 1 << 23  # kernel entries evaluated at once (32 MiB in float32)


def median_bandwidth(keys: Tensor, seed: int) -> float:
    """σ² for ``exp(−|x − y|² / (2σ²))``: the median squared distance between distinct pooled keys.

    keys: ``[n, d]``. All pairs when ``n ≤ 2048`` (exact and order-invariant), otherwise a seeded
    subsample of 2048 keys.
    """
    if keys.shape[0] > MEDIAN_SUBSAMPLE:
        generator = torch.Generator().manual_seed(seed)
        keys = keys[torch.randperm(keys.shape[0], generator=generator)[:MEDIAN_SUBSAMPLE]]
    squared = torch.cdist(keys.double(), keys.double()).square()
    upper = torch.triu_indices(keys.shape[0], keys.shape[0], offset=1)
    median = float(squared[upper[0], upper[1]].median()) if upper.shape[1] else 0.0
    return median if median > 0 else 1.0


def block_kernel_sums(keys: Tensor, token_block: Tensor, n_blocks: int, sigma2: float) -> Tensor:
    """``Σ_{i∈g, j∈h} k(x_i, x_j)`` for every pair of blocks: ``[G, G]`` float64.

    keys: ``[n, d]`` (centred by the caller so float32 distances lose nothing); token_block: ``[n]``.
    """
    keys = keys.float()
    squared_norms = keys.square().sum(1)
    sums = torch.zeros(n_blocks, n_blocks, dtype=torch.float64)
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(1, keys.shape[0]))
    for start in range(0, keys.shape[0], rows_per_chunk):
        rows = keys[start : start + rows_per_chunk]
        distances = torch.addmm(squared_norms[None, :], rows, keys.T, alpha=-2.0)
        distances += squared_norms[start : start + rows_per_chunk, None]
        kernel = torch.exp(distances.clamp_min_(0.0).mul_(-0.5 / sigma2))
        per_column_block = torch.zeros(rows.shape[0], n_blocks).index_add_(1, token_block, kernel)
        sums.index_add_(0, token_block[start : start + rows_per_chunk], per_column_block.double())
    return sums


def mmd2_unbiased(block_sums: Tensor, block_sizes: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Unbiased MMD² between token sets ``a`` and ``b`` (``[R, G]`` block multiplicities).

    Copies of a block drawn twice are distinct tokens; only a token paired with itself is left out
    (its kernel value is 1). Returns ``[R]`` float64.
    """
    n_a, n_b = a @ block_sizes, b @ block_sizes
    within_a = ((a @ block_sums) * a).sum(1) - n_a
    within_b = ((b @ block_sums) * b).sum(1) - n_b
    across = ((a @ block_sums) * b).sum(1)
    return within_a / (n_a * (n_a - 1)) + within_b / (n_b * (n_b - 1)) - 2 * across / (n_a * n_b)


def mmd2_biased(block_sums: Tensor, block_sizes: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """V-statistic MMD² (self-pairs included), ``[R]``: positive, with a noise floor of about
    ``c · (1/n_a + 1/n_b)`` when both sets come from one distribution (``c = 1 − mean cross kernel``)."""
    n_a, n_b = a @ block_sizes, b @ block_sizes
    a_sums = a @ block_sums
    return (a_sums * a).sum(1) / n_a**2 + ((b @ block_sums) * b).sum(1) / n_b**2 - 2 * (a_sums * b).sum(1) / (n_a * n_b)


def mmd2_size_normalised(block_sums: Tensor, block_sizes: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """V-statistic MMD² divided by its size factor ``1/n_a + 1/n_b``, ``[R]``.

    Under the null this is ≈ ``c`` whatever the set sizes, so an inter-modal value and intra-modal
    baselines built from sets of different sizes (576 image tokens vs 40 text tokens per sample)
    compare fairly: their ratio is ≈ 1 when the modalities do not differ.
    """
    n_a, n_b = a @ block_sizes, b @ block_sizes
    return mmd2_biased(block_sums, block_sizes, a, b) / (1 / n_a + 1 / n_b)


def permutation_sets(n_blocks_a: int, n_blocks: int, n_permutations: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random relabellings of whole blocks: ``n_blocks_a`` of the ``n_blocks`` blocks go to set a.

    Returns ``(a, b)`` indicator matrices ``[n_permutations, n_blocks]`` float64.
    """
    generator = torch.Generator().manual_seed(seed)
    ranks = torch.rand(n_permutations, n_blocks, generator=generator, dtype=torch.float64).argsort(1).argsort(1)
    a = (ranks < n_blocks_a).to(torch.float64)
    return a, 1.0 - a


def permutation_pvalue(observed: Tensor, null: Tensor) -> Tensor:
    """``(1 + #{null ≥ observed}) / (1 + n_permutations)``; observed ``[H]``, null ``[P, H]``."""
    return (1 + (null >= observed[None, :] - 1e-12 * observed.abs()[None, :]).sum(0)) / (1 + null.shape[0])
