"""Key-space separation between image and text keys (DESIGN §1), per KV head and pooled over heads.

Input: the keys of each modality with the sample (image) each token came from. Output: one
:class:`KeySpaceResult` per KV head plus one pooled result (``head=None``: the mean over KV heads of
each statistic, its bootstrap replicates averaged the same way). Every interval is a bootstrap over
samples; the permutation test relabels whole (sample, modality) blocks; classifier folds are whole
samples. Results depend only on the multiset of (sample id, key) pairs and the seed, not on token order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from bias_suite.errors import NonFiniteKeysError
from bias_suite.metrics import classifier, kernel, moments
from bias_suite.metrics.estimate import Estimate, bootstrap_weights, with_interval

KEYSPACE_METRICS = (
    "jsd", "jsd_proj", "auroc", "mmd2", "mmd2_pvalue", "intra_image", "intra_text", "ratio",
    "centroid_cosine", "norm_ratio", "frechet", "frechet_mean_share",
)
ESTIMATORS: Mapping[str, str] = {
    "jsd": classifier.JSD_ESTIMATOR,
    "jsd_proj": moments.JSD_PROJ_ESTIMATOR,
    "auroc": "AUROC of the held-out logistic scores (image = positive), folds grouped by sample",
    "mmd2": kernel.MMD_ESTIMATOR,
    "mmd2_pvalue": "permutation p-value of mmd2: whole (sample, modality) blocks relabelled, (1 + #≥) / (1 + B)",
    "intra_image": "size-normalised V-statistic MMD² (÷ (1/n_a + 1/n_b)) between the image keys of two "
                   "halves of the samples (mean over 10 seeded splits), same kernel as mmd2",
    "intra_text": "size-normalised V-statistic MMD² between the text keys of two halves of the samples",
    "ratio": "size-normalised V-statistic MMD² image(half A) vs text(half B), averaged with B vs A, "
             "÷ max(intra_image, intra_text); ≈ 1 when the modalities do not differ",
    "centroid_cosine": "cosine similarity of the mean image key and the mean text key",
    "norm_ratio": "mean |k| of image keys ÷ mean |k| of text keys",
    "frechet": "Fréchet distance |Δμ|² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) between Gaussian fits",
    "frechet_mean_share": "share of the Fréchet distance due to the mean term |Δμ|²",
}

RANGES: Mapping[str, tuple[float, float]] = {
    "jsd": (0.0, 1.0), "jsd_proj": (0.0, 1.0), "auroc": (0.0, 1.0), "frechet_mean_share": (0.0, 1.0),
    "centroid_cosine": (-1.0, 1.0), "intra_image": (0.0, math.inf), "intra_text": (0.0, math.inf),
    "ratio": (0.0, math.inf), "norm_ratio": (0.0, math.inf), "frechet": (0.0, math.inf),
}
N_SPLITS = 10  # sample half-splits averaged for the intra-modal baselines


@dataclass(frozen=True)
class KeySpaceConfig:
    """Estimation settings. ``n_folds`` is capped by the number of samples."""

    n_bootstrap: int = 200
    n_permutations: int = 200
    n_folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_bootstrap < 1 or self.n_permutations < 1:
            raise ValueError("n_bootstrap and n_permutations must be >= 1")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be >= 2, not {self.n_folds}")


@dataclass(frozen=True)
class KeySpaceResult:
    """Separation of image vs text keys for one layer and one KV head (``head=None``: pooled)."""

    layer: int | None
    head: int | None
    n_samples: int
    n_image_tokens: int
    n_text_tokens: int
    metrics: Mapping[str, Estimate] = field(repr=False)
    estimators: Mapping[str, str] = field(default_factory=lambda: dict(ESTIMATORS), repr=False)


def _sample_codes(image_samples: Sequence | Tensor, text_samples: Sequence | Tensor) -> tuple[Tensor, Tensor, int]:
    """Dense sample indices in sorted-id order (so nothing depends on the order tokens arrive in)."""
    def as_array(ids):
        return ids.cpu().numpy() if isinstance(ids, Tensor) else np.asarray(ids)

    image_ids, text_ids = as_array(image_samples), as_array(text_samples)
    unique, inverse = np.unique(np.concatenate([image_ids, text_ids]), return_inverse=True)
    inverse = torch.from_numpy(inverse.astype(np.int64))
    return inverse[: len(image_ids)], inverse[len(image_ids):], len(unique)


def _as_heads(keys: Tensor, name: str) -> Tensor:
    """``[n, d]`` or ``[n, H, d]`` → ``[H, n, d]`` float64, refusing NaN/inf."""
    if keys.ndim == 2:
        keys = keys[:, None, :]
    if keys.ndim != 3:
        raise ValueError(f"{name}: expected [n_tokens, head_dim] or [n_tokens, n_heads, head_dim], got {tuple(keys.shape)}")
    if keys.shape[0] == 0:
        raise ValueError(f"{name}: no tokens")
    if not bool(torch.isfinite(keys).all()):
        raise NonFiniteKeysError(f"{name}: contains NaN or inf values; the model's activations overflowed")
    return keys.detach().to("cpu", torch.float64).permute(1, 0, 2).contiguous()


def keyspace_metrics(
    image_keys: Tensor,
    image_samples: Sequence | Tensor,
    text_keys: Tensor,
    text_samples: Sequence | Tensor,
    config: KeySpaceConfig = KeySpaceConfig(),
    layer: int | None = None,
) -> tuple[KeySpaceResult, ...]:
    """Every key-space statistic, per head and pooled.

    image_keys / text_keys: ``[n_tokens, head_dim]`` or ``[n_tokens, n_kv_heads, head_dim]``, any
    float dtype (computed in float64/float32 on CPU); image_samples / text_samples: the sample id of
    each token (``[n_tokens]`` strings or integers). Returns one result per head, then the pooled one.
    """
    image, text = _as_heads(image_keys, "image keys"), _as_heads(text_keys, "text keys")
    if image.shape[0] != text.shape[0] or image.shape[2] != text.shape[2]:
        raise ValueError(f"image keys {tuple(image_keys.shape)} and text keys {tuple(text_keys.shape)} differ in heads or head_dim")
    if len(image_samples) != image.shape[1] or len(text_samples) != text.shape[1]:
        raise ValueError("need exactly one sample id per token for each modality")
    image_sample, text_sample, n_samples = _sample_codes(image_samples, text_samples)
    if n_samples < 2:
        raise ValueError(f"key-space statistics need keys from at least 2 samples, got {n_samples}")

    # Pooled tokens sorted by block = 2·sample + modality (0 image, 1 text).
    is_image = torch.cat([torch.ones(image.shape[1], dtype=torch.bool), torch.zeros(text.shape[1], dtype=torch.bool)])
    token_sample = torch.cat([image_sample, text_sample])
    token_block = 2 * token_sample + (~is_image).long()
    order = torch.argsort(token_block, stable=True)
    pooled = torch.cat([image, text], dim=1)[:, order]
    is_image, token_sample, token_block = is_image[order], token_sample[order], token_block[order]
    n_blocks = 2 * n_samples
    block_sizes = torch.bincount(token_block, minlength=n_blocks).double()

    weights = torch.cat([torch.ones(1, n_samples, dtype=torch.float64),
                         bootstrap_weights(n_samples, config.n_bootstrap, config.seed)])  # [1 + B, S]
    per_head = _classifier_statistics(pooled, is_image, token_sample, n_samples, weights, config)
    kernel_stats = [_kernel_statistics(head_keys, token_block, block_sizes, n_samples, weights, config)
                    for head_keys in pooled]
    moment_stats = [_moment_statistics(head_keys, is_image, token_sample, n_samples, weights) for head_keys in pooled]
    for name in kernel_stats[0]:
        per_head[name] = torch.stack([stats[name] for stats in kernel_stats], dim=-1)
    for name in moment_stats[0]:
        per_head[name] = torch.stack([stats[name] for stats in moment_stats], dim=-1)

    counts = dict(n_samples=n_samples, n_image_tokens=int(is_image.sum()), n_text_tokens=int((~is_image).sum()))
    results = []
    n_heads = pooled.shape[0]
    for head in [*range(n_heads), None]:
        metrics = {}
        for name in KEYSPACE_METRICS:
            values = per_head[name]
            column = values.mean(-1) if head is None else values[..., head]
            if name == "mmd2_pvalue":
                metrics[name] = Estimate(float(column[0]))
            else:
                metrics[name] = with_interval(column[0], column[1:], bounds=RANGES.get(name, (-math.inf, math.inf)))
        if head is None:
            metrics["mmd2_pvalue"] = Estimate(float(kernel.permutation_pvalue(
                per_head["mmd2"][0].mean()[None], per_head["_mmd2_null"].mean(-1, keepdim=True))[0]))
        results.append(KeySpaceResult(layer, head, metrics=metrics, **counts))
    return tuple(results)


def _classifier_statistics(pooled, is_image, token_sample, n_samples, weights, config) -> dict[str, Tensor]:
    n_folds = min(config.n_folds, n_samples)
    token_fold = classifier.sample_folds(n_samples, n_folds, config.seed)[token_sample]
    logits = classifier.heldout_logits(pooled, is_image, token_fold, n_folds)
    bits = classifier.heldout_bits(logits, is_image)
    return {
        "jsd": classifier.jsd_bound(bits, is_image, token_sample, weights),
        "auroc": classifier.auroc(logits, is_image, token_sample, weights),
    }


def _kernel_statistics(keys, token_block, block_sizes, n_samples, weights, config) -> dict[str, Tensor]:
    keys = keys - keys.mean(0)
    sigma2 = kernel.median_bandwidth(keys, config.seed)
    sums = kernel.block_kernel_sums(keys, token_block, 2 * n_samples, sigma2)
    image_blocks, text_blocks = torch.zeros(2 * n_samples, dtype=torch.float64), torch.zeros(2 * n_samples, dtype=torch.float64)
    image_blocks[0::2], text_blocks[1::2] = 1.0, 1.0
    image_blocks *= block_sizes > 0
    text_blocks *= block_sizes > 0
    block_weights = weights.repeat_interleave(2, dim=1)  # [R, G]: a sample's weight on both its blocks
    mmd2 = kernel.mmd2_unbiased(sums, block_sizes, block_weights * image_blocks, block_weights * text_blocks)

    present = (block_sizes > 0).nonzero().flatten()
    perm_a, perm_b = kernel.permutation_sets(int(image_blocks.sum()), present.numel(), config.n_permutations, config.seed)
    scatter = torch.zeros(config.n_permutations, 2 * n_samples, dtype=torch.float64)
    null = kernel.mmd2_unbiased(sums, block_sizes, scatter.index_copy(1, present, perm_a), scatter.index_copy(1, present, perm_b))
    pvalue = kernel.permutation_pvalue(mmd2[:1], null[:, None])

    # Intra-modal baselines: the samples split in two halves, averaged over several seeded splits
    # (one split is a noisy baseline; the max of two noisy baselines is biased low).
    generator = torch.Generator().manual_seed(config.seed + 1)
    vstat = lambda a, b: kernel.mmd2_size_normalised(sums, block_sizes, a, b)  # noqa: E731
    intra_image = intra_text = inter = 0.0
    for _ in range(N_SPLITS):
        in_half_a = torch.zeros(n_samples, dtype=torch.float64)
        in_half_a[torch.randperm(n_samples, generator=generator)[: n_samples // 2]] = 1.0
        half_a = block_weights * in_half_a.repeat_interleave(2)
        half_b = block_weights * (1.0 - in_half_a).repeat_interleave(2)
        intra_image = intra_image + vstat(half_a * image_blocks, half_b * image_blocks) / N_SPLITS
        intra_text = intra_text + vstat(half_a * text_blocks, half_b * text_blocks) / N_SPLITS
        inter = inter + 0.5 * (vstat(half_a * image_blocks, half_b * text_blocks)
                               + vstat(half_b * image_blocks, half_a * text_blocks)) / N_SPLITS
    return {
        "mmd2": mmd2, "mmd2_pvalue": pvalue.expand(mmd2.shape[0]).double(), "_mmd2_null": null,
        "intra_image": intra_image, "intra_text": intra_text,
        "ratio": inter / torch.maximum(intra_image, intra_text),
    }


def _moment_statistics(keys, is_image, token_sample, n_samples, weights) -> dict[str, Tensor]:
    image = moments.SampleMoments.of(keys[is_image], token_sample[is_image], n_samples)
    text = moments.SampleMoments.of(keys[~is_image], token_sample[~is_image], n_samples)
    image_mean, image_cov = image.mean_cov(weights)
    text_mean, text_cov = text.mean_cov(weights)
    distance, mean_share = moments.frechet(image_mean, image_cov, text_mean, text_cov)
    image_hist, text_hist = moments.projection_histograms(
        keys[is_image], token_sample[is_image], keys[~is_image], token_sample[~is_image], n_samples)
    return {
        "jsd_proj": moments.js_bits(weights @ image_hist, weights @ text_hist),
        "centroid_cosine": moments.centroid_cosine(image_mean, text_mean),
        "norm_ratio": image.mean_norm(weights) / text.mean_norm(weights),
        "frechet": distance,
        "frechet_mean_share": mean_share,
    }
