"""Attention rows of chosen query positions and their summaries (no transformers import).

Two callers share the arithmetic: capture reduces the rows of every chosen layer on the model's device
inside the attention wrapper (batched, float32, the model's own mask), and library users recompute rows
from captured post-RoPE queries and keys on the host (:func:`attention_rows`, :func:`row_shares` in
:mod:`bias_suite.metrics`). Only the selected query rows are computed, never the full ``S × S`` matrix.

Query head ``h`` reads KV head ``h // (n_heads / n_kv_heads)`` (GQA).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class RowShares:
    """Per query row and query head statistics, float32, each ``[..., n_rows, n_heads]``."""

    visual_share: Tensor  # Σ attention on visible image keys
    visual_share_norm: Tensor  # visual_share ÷ (visible image keys / visible keys)
    visual_share_nosink: Tensor  # share with sink keys removed and the row renormalised
    logit_gap: Tensor  # mean scaled q·k over visible text keys − over visible image keys
    # log(attention on non-sink image keys ÷ on non-sink text keys) − log(their counts' ratio), nats:
    # the mean attention one image key gets relative to one text key; NaN without non-sink keys of a modality
    visual_log_odds: Tensor
    sink_mass: Tensor  # Σ attention on sink keys (first token and massive activations, both modalities)
    visual_sink_mass: Tensor  # Σ attention on image sink keys

    def select(self, rows: Tensor) -> RowShares:
        """The statistics of ``rows`` (indices along the row axis of unbatched statistics)."""
        return RowShares(*(getattr(self, name)[rows] for name in self.__dataclass_fields__))

    def to(self, device: torch.device | str) -> RowShares:
        return RowShares(*(getattr(self, name).to(device) for name in self.__dataclass_fields__))


def kv_head_for_query_head(n_heads: int, n_kv_heads: int) -> Tensor:
    """GQA mapping: query head ``h`` reads KV head ``h // (n_heads / n_kv_heads)``. Returns ``[n_heads]`` int64."""
    if n_heads % n_kv_heads:
        raise ValueError(f"{n_heads} query heads cannot be grouped over {n_kv_heads} KV heads")
    return torch.arange(n_heads) // (n_heads // n_kv_heads)


def visible_keys(query_positions: Tensor, n_tokens: int, sliding_window: int | None = None) -> Tensor:
    """Causal visibility: ``[n_rows, n_tokens]`` bool, True where the key may be attended (a query at
    position ``p`` sees keys ``0 … p``, and for a sliding-window layer of width ``w`` only keys ``> p − w``)."""
    key_positions = torch.arange(n_tokens, device=query_positions.device)
    visible = key_positions[None, :] <= query_positions[:, None]
    if sliding_window is not None:
        visible &= key_positions[None, :] > query_positions[:, None] - sliding_window
    return visible


def scaled_scores(queries: Tensor, keys: Tensor, scaling: float, softcap: float | None = None) -> Tensor:
    """``q·k · scaling`` (then ``softcap · tanh(·/softcap)`` when the model caps its logits), float32.

    queries: ``[..., n_heads, n_rows, head_dim]``; keys: ``[..., n_kv_heads, n_tokens, head_dim]``.
    Returns ``[..., n_heads, n_rows, n_tokens]``: one batched matmul per KV head group, no key copies.
    """
    *batch, n_heads, n_rows, head_dim = queries.shape
    n_kv_heads, n_tokens = keys.shape[-3], keys.shape[-2]
    kv_head_for_query_head(n_heads, n_kv_heads)  # validates the grouping
    group = n_heads // n_kv_heads
    grouped = queries.float().reshape(*batch, n_kv_heads, group * n_rows, head_dim)
    scores = torch.matmul(grouped, keys.float().transpose(-1, -2)).mul_(scaling)  # [..., KV, G·R, n]
    if softcap:
        scores = softcap * torch.tanh(scores / softcap)
    return scores.reshape(*batch, n_heads, n_rows, n_tokens)


def row_statistics(scores: Tensor, visible: Tensor, image_mask: Tensor, sink_mask: Tensor,
                   overwrite_scores: bool = False) -> RowShares:
    """The attention summaries of rows whose scaled scores are ``scores``.

    scores: ``[..., n_heads, n_rows, n_tokens]`` float32; visible: ``[..., n_rows, n_tokens]`` bool, the
    keys each row may attend (the model's mask); image_mask, sink_mask: ``[..., n_tokens]`` bool.
    Returns ``[..., n_rows, n_heads]`` statistics. ``overwrite_scores=True`` lets the computation reuse
    ``scores``' memory (capture passes scores nobody else holds); otherwise they are copied once.

    Every sum over keys is one matrix product against a few per-key masks (text, image; image, image
    without sinks, not a sink, sink, image sink, text without sinks): hidden scores are zeroed for the score
    sums, then set to −inf for the softmax, so attention is zero on them.

    ``visual_log_odds`` removes the token counts from the share: with ``m`` the attention mass and ``n`` the
    number of visible non-sink keys of each modality, it is ``log(m_image / m_text) − log(n_image / n_text)``,
    the log of the mean attention an image key receives relative to a text key. When each modality's keys
    are exchangeable (per-key scores drawn from one distribution), a processor that emits more or fewer
    image tokens changes the share but not this quantity; sinks are left out because a sink takes its mass
    whatever the count. Masses are floored at 1e-30 before the logarithm.
    """
    *batch, n_heads, n_rows, n_tokens = scores.shape
    hidden = ~visible[..., None, :, :]
    kept = ~sink_mask
    key_masks = torch.stack([~image_mask, image_mask, image_mask & kept, kept, sink_mask, image_mask & sink_mask,
                             ~image_mask & kept], -1).float()  # [..., n, 7]
    flat = (*batch, n_heads * n_rows, n_tokens)
    scores = scores if overwrite_scores else scores.clone()
    scores.masked_fill_(hidden, 0.0)
    totals = torch.matmul(scores.reshape(flat), key_masks[..., :2]).reshape(*batch, n_heads, n_rows, 2)
    probabilities = torch.softmax(scores.masked_fill_(hidden, float("-inf")), dim=-1)
    # image, image not sink, not sink, sink, image sink, text not sink
    mass = torch.matmul(probabilities.reshape(flat), key_masks[..., 1:]).reshape(*batch, n_heads, n_rows, 6)
    # visible text, image, image not sink, text not sink: [..., 1, R, 4]
    counts = torch.matmul(visible.float(), key_masks[..., [0, 1, 2, 6]])[..., None, :, :]
    means = totals / counts[..., :2]
    share = mass[..., 0]
    image_fraction = counts[..., 1] / (counts[..., 0] + counts[..., 1])  # [..., 1, R]
    tiny = 1e-30
    log_odds = (mass[..., 1].clamp_min(tiny).log() - mass[..., 5].clamp_min(tiny).log()
                - counts[..., 2].log() + counts[..., 3].log())
    log_odds = log_odds.masked_fill((counts[..., 2] == 0) | (counts[..., 3] == 0), float("nan"))
    statistics = (share, share / image_fraction, mass[..., 1] / mass[..., 2], means[..., 0] - means[..., 1],
                  log_odds, mass[..., 3], mass[..., 4])
    return RowShares(*(value.transpose(-1, -2) for value in statistics))


def sink_mask(max_abs: Tensor, image_mask: Tensor, valid: Tensor, first_token: Tensor, massive_ratio: float) -> Tensor:
    """Attention-sink tokens: the first real token, and every token whose input hidden state has a massive
    activation — max |h| above ``massive_ratio`` × the median over the tokens **of its own modality**.

    Comparing within a modality matters at layer 0, where image-token inputs (projector outputs) are often
    ~100× larger than text embeddings: against one pooled median every image token would count as a sink.

    max_abs: ``[B, S]``; image_mask, valid: ``[B, S]`` bool; first_token: ``[B]`` position of the first
    real token. Returns ``[B, S]`` bool (False at padding).
    """
    sinks = torch.zeros_like(valid)
    for modality in (image_mask & valid, ~image_mask & valid):
        median = torch.where(modality, max_abs, torch.full_like(max_abs, float("nan"))).nanmedian(dim=-1).values
        sinks |= modality & (max_abs > massive_ratio * median[:, None])
    sinks.scatter_(1, first_token[:, None], True)
    return sinks & valid


def head_scores(
    queries: Tensor,
    keys: Tensor,
    query_positions: Tensor,
    scaling: float,
    sliding_window: int | None = None,
    visible: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Scaled scores of one sample's selected rows, ``[n_heads, n_rows, n_tokens]`` float32, and the keys
    each row may see, ``[n_rows, n_tokens]`` bool: ``visible`` when given (the model's own mask), else the
    causal rule (plus ``sliding_window``). Arguments as :func:`attention_logits`."""
    scores = scaled_scores(queries.transpose(0, 1), keys.transpose(0, 1), scaling)  # [H, R, n]
    if visible is None:
        visible = visible_keys(query_positions.to(keys.device), keys.shape[0], sliding_window)
    return scores, visible.to(keys.device)


def attention_logits(
    queries: Tensor,
    keys: Tensor,
    query_positions: Tensor,
    scaling: float,
    sliding_window: int | None = None,
    visible: Tensor | None = None,
) -> Tensor:
    """Scaled scores ``q·k · scaling`` with invisible keys set to ``-inf``.

    queries: ``[n_rows, n_heads, head_dim]`` post-RoPE; keys: ``[n_tokens, n_kv_heads, head_dim]``
    post-RoPE; query_positions: ``[n_rows]`` token index of each query row. visible: ``[n_rows, n_tokens]``
    bool, the keys each row may see — pass :attr:`bias_suite.capture.batch.LayerCapture.visible` (the model's own
    mask: bidirectional image blocks and prefixes, chunks, sliding windows); without it, the causal rule
    (plus ``sliding_window``). Returns ``[n_rows, n_heads, n_tokens]`` float32.
    """
    scores, visible = head_scores(queries, keys, query_positions, scaling, sliding_window, visible)
    return scores.transpose(0, 1).masked_fill(~visible[:, None, :], float("-inf"))  # [R, H, n]


def attention_rows(
    queries: Tensor,
    keys: Tensor,
    query_positions: Tensor,
    scaling: float,
    sliding_window: int | None = None,
    visible: Tensor | None = None,
) -> Tensor:
    """Attention probabilities of the selected rows: ``[n_rows, n_heads, n_tokens]`` float32, rows sum to 1.
    Arguments as :func:`attention_logits`."""
    return torch.softmax(attention_logits(queries, keys, query_positions, scaling, sliding_window, visible), dim=-1)
