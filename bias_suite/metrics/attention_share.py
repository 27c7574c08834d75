"""How much attention text positions pay to image keys: summaries of attention rows over samples.

Per query row and head, capture reduces the rows on the model's device
(:func:`bias_suite.metrics.attention_rows.row_statistics`, the model's own mask, float32);
:func:`row_shares` does the same from captured post-RoPE tensors on the host. Per sample, each statistic
is the mean over its query rows and query heads; across samples, the mean over samples with a bootstrap
interval over samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from bias_suite.metrics.attention_rows import RowShares, head_scores, row_statistics
from bias_suite.metrics.estimate import Estimate, bootstrap_weights, with_interval
from bias_suite.metrics.registry import ATTENTION_METRICS, METRICS

VISUAL_HEAD_THRESHOLD = 0.2


@dataclass(frozen=True)
class AttentionResult:
    """Attention-share statistics of one layer and query set over a set of samples."""

    layer: int | None
    query_set: str
    n_samples: int
    n_rows: int
    metrics: Mapping[str, Estimate] = field(repr=False)


def row_shares(
    queries: Tensor,
    keys: Tensor,
    query_positions: Tensor,
    image_mask: Tensor,
    sink_mask: Tensor,
    scaling: float,
    sliding_window: int | None = None,
    visible: Tensor | None = None,
) -> RowShares:
    """Statistics of the selected attention rows of one sample, from post-RoPE tensors.

    queries: ``[n_rows, n_heads, head_dim]``; keys: ``[n_tokens, n_kv_heads, head_dim]``;
    query_positions: ``[n_rows]``; image_mask, sink_mask: ``[n_tokens]`` bool; scaling: multiplier of q·k
    (usually head_dim^-½); visible: ``[n_rows, n_tokens]`` bool, the model's own mask
    (:attr:`bias_suite.capture.batch.LayerCapture.visible`), else causal (+ ``sliding_window``).
    Returns ``[n_rows, n_heads]`` statistics.
    """
    scores, visible = head_scores(queries, keys, query_positions, scaling, sliding_window, visible)
    return row_statistics(scores, visible, image_mask, sink_mask, overwrite_scores=True)


UNDEFINED_WITHOUT_IMAGE_KEYS = (
    "no query row of any sample can see an image key in this layer (a sliding-window or chunked layer "
    "whose window ends before the image?), so shares relative to image keys are undefined"
)


def summarise_attention(
    per_sample: Sequence[RowShares], layer: int | None, query_set: str, n_bootstrap: int = 200, seed: int = 0
) -> AttentionResult:
    """Means over rows and heads per sample, then over samples, with bootstrap intervals over samples.

    A row that sees no image key (a sliding-window layer whose window ends before the image) has no
    normalised share and no logit gap: per sample those statistics average the rows that have them, and
    samples without any such row are left out of that statistic (its bootstrap keeps the same draws).
    """
    if not per_sample:
        raise ValueError(f"no samples for attention query set {query_set!r}")
    means = {name: torch.stack([getattr(shares, name).double().nanmean() for shares in per_sample])
             for name in ATTENTION_METRICS if name != "visual_heads_fraction"}
    head_share = torch.stack([shares.visual_share.double().mean(0) for shares in per_sample])  # [S, H]
    weights = torch.cat([torch.ones(1, len(per_sample), dtype=torch.float64),
                         bootstrap_weights(len(per_sample), n_bootstrap, seed)])
    totals = weights.sum(1)
    metrics = {}
    for name, values in means.items():
        defined = torch.isfinite(values).double()
        replicates = (weights @ torch.nan_to_num(values * defined)) / (weights @ defined)
        estimate = with_interval(replicates[0], replicates[1:], bounds=METRICS[name].range, keep_replicates=True)
        if not bool(defined.any()):
            estimate = replace(estimate, undefined_because=UNDEFINED_WITHOUT_IMAGE_KEYS)
        metrics[name] = estimate
    heads_fraction = (((weights @ head_share) / totals[:, None]) > VISUAL_HEAD_THRESHOLD).double().mean(1)
    metrics["visual_heads_fraction"] = with_interval(heads_fraction[0], heads_fraction[1:], bounds=(0.0, 1.0),
                                                     keep_replicates=True)
    n_rows = sum(int(shares.visual_share.shape[0]) for shares in per_sample)
    return AttentionResult(layer, query_set, len(per_sample), n_rows,
                           {name: metrics[name] for name in ATTENTION_METRICS})


def query_positions(image_mask: Tensor, n_answer_tokens: int = 0) -> dict[str, Tensor]:
    """Token positions of each query set for one sample (``[n_tokens]`` image mask, answer appended
    at the end when ``n_answer_tokens > 0``):

    * ``last``: the last prompt position, where the first answer token is generated;
    * ``question``: every prompt token after the last image token (question and generation prompt);
    * ``answer``: the teacher-forced answer tokens (absent when there are none).
    """
    n_tokens = int(image_mask.shape[0])
    image_positions = image_mask.nonzero().flatten()
    if image_positions.numel() == 0:
        raise ValueError("sample has no image tokens: attention share is undefined")
    last_prompt = n_tokens - 1 - n_answer_tokens
    first_after_image = int(image_positions[-1]) + 1
    if last_prompt < first_after_image:
        raise ValueError("no prompt token after the image: the question must follow the image")
    sets = {
        "last": torch.tensor([last_prompt]),
        "question": torch.arange(first_after_image, last_prompt + 1),
    }
    if n_answer_tokens > 0:
        sets["answer"] = torch.arange(last_prompt + 1, n_tokens)
    return sets
