"""Attention rows recomputed from captured post-RoPE queries and keys (no transformers import).

Only the selected query rows are computed, never the full ``S × S`` matrix, in float32 whatever the
model dtype. Causal masking is applied here: a query at position ``p`` sees keys ``0 … p`` (and, for a
sliding-window layer of width ``w``, only keys ``j > p - w``). Padding is already gone from captured
samples.
"""

from __future__ import annotations

import torch
from torch import Tensor


def kv_head_for_query_head(n_heads: int, n_kv_heads: int) -> Tensor:
    """GQA mapping: query head ``h`` reads KV head ``h // (n_heads / n_kv_heads)``. Returns ``[n_heads]`` int64."""
    if n_heads % n_kv_heads:
        raise ValueError(f"{n_heads} query heads cannot be grouped over {n_kv_heads} KV heads")
    return torch.arange(n_heads) // (n_heads // n_kv_heads)


def visible_keys(query_positions: Tensor, n_tokens: int, sliding_window: int | None = None) -> Tensor:
    """Causal visibility: ``[n_rows, n_tokens]`` bool, True where the key may be attended."""
    key_positions = torch.arange(n_tokens, device=query_positions.device)
    visible = key_positions[None, :] <= query_positions[:, None]
    if sliding_window is not None:
        visible &= key_positions[None, :] > query_positions[:, None] - sliding_window
    return visible


def attention_logits(
    queries: Tensor, keys: Tensor, query_positions: Tensor, scaling: float, sliding_window: int | None = None
) -> Tensor:
    """Scaled scores ``q·k · scaling`` with invisible keys set to ``-inf``.

    queries: ``[n_rows, n_heads, head_dim]`` post-RoPE; keys: ``[n_tokens, n_kv_heads, head_dim]``
    post-RoPE; query_positions: ``[n_rows]`` token index of each query row.
    Returns ``[n_rows, n_heads, n_tokens]`` float32.
    """
    n_rows, n_heads, head_dim = queries.shape
    n_tokens, n_kv_heads = keys.shape[:2]
    group = n_heads // n_kv_heads
    kv_head_for_query_head(n_heads, n_kv_heads)  # validates the grouping
    # Query head h = kv * group + g reads KV head kv: one batched matmul per KV head, no key copies.
    grouped_queries = queries.float().reshape(n_rows, n_kv_heads, group, head_dim).permute(1, 0, 2, 3)
    scores = torch.bmm(grouped_queries.reshape(n_kv_heads, n_rows * group, head_dim), keys.float().permute(1, 2, 0))
    logits = scores.reshape(n_kv_heads, n_rows, group, n_tokens).permute(1, 0, 2, 3).reshape(n_rows, n_heads, n_tokens)
    logits = logits * scaling
    visible = visible_keys(query_positions.to(keys.device), keys.shape[0], sliding_window)
    return logits.masked_fill(~visible[:, None, :], float("-inf"))


def attention_rows(
    queries: Tensor, keys: Tensor, query_positions: Tensor, scaling: float, sliding_window: int | None = None
) -> Tensor:
    """Attention probabilities of the selected rows: ``[n_rows, n_heads, n_tokens]`` float32, rows sum to 1."""
    return torch.softmax(attention_logits(queries, keys, query_positions, scaling, sliding_window), dim=-1)
