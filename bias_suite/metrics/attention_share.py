"""How much attention text positions pay to image keys (DESIGN §1, "Attention share").

Computed from captured post-RoPE queries and keys in float32, for selected query rows only (never
the full S × S matrix): causal and sliding-window masks are applied here, padding is already gone
from captured samples, and query head ``h`` reads KV head ``h // (n_heads / n_kv_heads)``.

Per sample, each statistic is the mean over its query rows and query heads; across samples, the
mean over samples with a bootstrap interval over samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bias_suite.attention import attention_logits, visible_keys
from bias_suite.metrics.estimate import Estimate, bootstrap_weights, with_interval

ATTENTION_METRICS = ("visual_share", "visual_share_norm", "visual_share_nosink", "logit_gap", "visual_heads_fraction")
VISUAL_HEAD_THRESHOLD = 0.2
QUERY_SETS = ("last", "question", "answer")
RANGES: Mapping[str, tuple[float, float]] = {
    "visual_share": (0.0, 1.0), "visual_share_nosink": (0.0, 1.0), "visual_heads_fraction": (0.0, 1.0),
    "visual_share_norm": (0.0, math.inf),
}


@dataclass(frozen=True)
class RowShares:
    """Per query row and query head statistics of one sample and layer, float32."""

    visual_share: Tensor  # [n_rows, n_heads] Σ attention on visible image keys
    visual_share_norm: Tensor  # [n_rows, n_heads] visual_share ÷ (visible image keys / visible keys)
    visual_share_nosink: Tensor  # [n_rows, n_heads] share with sink keys removed and the row renormalised
    logit_gap: Tensor  # [n_rows, n_heads] mean scaled q·k over visible text keys − over visible image keys


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
) -> RowShares:
    """Statistics of the selected attention rows of one sample.

    queries: ``[n_rows, n_heads, head_dim]`` post-RoPE; keys: ``[n_tokens, n_kv_heads, head_dim]``
    post-RoPE; query_positions: ``[n_rows]``; image_mask, sink_mask: ``[n_tokens]`` bool;
    scaling: multiplier of q·k (usually head_dim^-½).
    """
    logits = attention_logits(queries, keys, query_positions, scaling, sliding_window)  # [R, H, n], -inf hidden
    probabilities = torch.softmax(logits, dim=-1)
    visible = visible_keys(query_positions, keys.shape[0], sliding_window)  # [R, n]
    visible_image = (visible & image_mask).float()
    visible_text = (visible & ~image_mask).float()
    share = torch.einsum("rhn,rn->rh", probabilities, visible_image)
    image_fraction = visible_image.sum(1) / visible.float().sum(1)  # [R]
    kept = (~sink_mask).float()
    kept_mass = torch.einsum("rhn,n->rh", probabilities, kept)
    share_nosink = torch.einsum("rhn,rn->rh", probabilities, visible_image * kept) / kept_mass
    finite_logits = logits.masked_fill(~visible[:, None, :], 0.0)
    text_mean = torch.einsum("rhn,rn->rh", finite_logits, visible_text) / visible_text.sum(1)[:, None]
    image_mean = torch.einsum("rhn,rn->rh", finite_logits, visible_image) / visible_image.sum(1)[:, None]
    return RowShares(share, share / image_fraction[:, None], share_nosink, text_mean - image_mean)


def summarise(
    per_sample: Sequence[RowShares], layer: int | None, query_set: str, n_bootstrap: int = 200, seed: int = 0
) -> AttentionResult:
    """Means over rows and heads per sample, then over samples, with bootstrap intervals over samples."""
    if not per_sample:
        raise ValueError(f"no samples for attention query set {query_set!r}")
    means = {name: torch.stack([getattr(shares, name).double().mean() for shares in per_sample])
             for name in ATTENTION_METRICS if name != "visual_heads_fraction"}
    head_share = torch.stack([shares.visual_share.double().mean(0) for shares in per_sample])  # [S, H]
    weights = torch.cat([torch.ones(1, len(per_sample), dtype=torch.float64),
                         bootstrap_weights(len(per_sample), n_bootstrap, seed)])
    totals = weights.sum(1)
    metrics = {}
    for name, values in means.items():
        replicates = (weights @ values) / totals
        metrics[name] = with_interval(replicates[0], replicates[1:], bounds=RANGES.get(name, (-math.inf, math.inf)))
    heads_fraction = (((weights @ head_share) / totals[:, None]) > VISUAL_HEAD_THRESHOLD).double().mean(1)
    metrics["visual_heads_fraction"] = with_interval(heads_fraction[0], heads_fraction[1:], bounds=(0.0, 1.0))
    n_rows = sum(int(shares.visual_share.shape[0]) for shares in per_sample)
    return AttentionResult(layer, query_set, len(per_sample), n_rows, {name: metrics[name] for name in ATTENTION_METRICS})


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


def capture_row_shares(sample, layer: int, positions: Tensor, scaling: float, massive_ratio: float = 20.0) -> RowShares:
    """:func:`row_shares` for a :class:`~bias_suite.capture.SampleCapture` (duck-typed: metrics do not
    import the capture module) at ``positions``, which must be among the captured query rows."""
    captured = sample.layers[layer]
    if captured.post_rope_keys is None:
        raise ValueError(f"{sample.sample_id}: post-RoPE keys were not kept (CaptureConfig.keep_post_rope_keys)")
    captured_positions = sample.query_positions
    index = torch.searchsorted(captured_positions, positions).clamp(max=max(captured_positions.numel() - 1, 0))
    found = captured_positions[index] == positions if captured_positions.numel() else torch.zeros_like(positions, dtype=torch.bool)
    if not bool(found.all()):
        raise ValueError(
            f"{sample.sample_id}: query positions {positions[~found].tolist()} were not captured; "
            "capture with CaptureConfig(query_rows='after_image') or 'all'"
        )
    sink_mask = torch.zeros(sample.n_tokens, dtype=torch.bool)
    sink_mask[sample.sink_positions(layer, massive_ratio)] = True
    return row_shares(
        captured.post_rope_queries[index], captured.post_rope_keys, positions, sample.image_mask, sink_mask,
        scaling, captured.sliding_window,
    )
