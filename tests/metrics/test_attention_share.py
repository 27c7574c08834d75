"""Attention-share statistics against hand-written softmax arithmetic on small examples."""

from __future__ import annotations

import math

import pytest
import torch

from bias_suite.metrics import ATTENTION_METRICS, query_positions, row_shares, summarise_attention
from bias_suite.metrics.attention_rows import attention_rows

SCALING = 0.5
# 7 tokens: text(0) image(1, 2, 3) text(4, 5, 6)
IMAGE_MASK = torch.tensor([False, True, True, True, False, False, False])
NO_SINKS = torch.zeros(7, dtype=torch.bool)


def hand_softmax_row(query: list[float], keys: list[list[float]], position: int) -> list[float]:
    """softmax over keys 0..position of scaling · q·k, written out with math.exp."""
    scores = [SCALING * sum(q * k for q, k in zip(query, key)) for key in keys[: position + 1]]
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    return [e / sum(exps) for e in exps] + [0.0] * (len(keys) - position - 1)


def example(seed: int = 0, n_heads: int = 4, n_kv_heads: int = 2):
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(7, n_kv_heads, 3, generator=generator)
    positions = torch.tensor([4, 5, 6])
    queries = torch.randn(3, n_heads, 3, generator=generator)
    return queries, keys, positions


def test_attention_rows_equal_a_hand_written_softmax_with_gqa_mapping():
    queries, keys, positions = example()
    rows = attention_rows(queries, keys, positions, SCALING)
    for r, position in enumerate(positions.tolist()):
        for head in range(4):
            kv = head // 2  # 4 query heads over 2 KV heads
            expected = hand_softmax_row(queries[r, head].tolist(), keys[:, kv].tolist(), position)
            assert rows[r, head].tolist() == pytest.approx(expected, abs=1e-6)


def test_visual_share_and_logit_gap_equal_hand_arithmetic():
    queries, keys, positions = example(seed=1)
    shares = row_shares(queries, keys, positions, IMAGE_MASK, NO_SINKS, SCALING)
    r, head, position = 1, 3, 5
    probabilities = hand_softmax_row(queries[r, head].tolist(), keys[:, 1].tolist(), position)
    assert shares.visual_share[r, head] == pytest.approx(sum(probabilities[1:4]), abs=1e-6)
    assert shares.visual_share_norm[r, head] == pytest.approx(sum(probabilities[1:4]) / (3 / 6), abs=1e-5)
    score = [SCALING * float(queries[r, head] @ keys[j, 1]) for j in range(position + 1)]
    text_scores = [score[j] for j in (0, 4, 5)]
    image_scores = [score[j] for j in (1, 2, 3)]
    assert shares.logit_gap[r, head] == pytest.approx(sum(text_scores) / 3 - sum(image_scores) / 3, abs=1e-5)


def test_visual_share_norm_is_one_for_uniform_attention():
    _, keys, positions = example()
    uniform_queries = torch.zeros(3, 4, 3)  # q·k = 0 for every key: attention is uniform over visible keys
    shares = row_shares(uniform_queries, keys, positions, IMAGE_MASK, NO_SINKS, SCALING)
    assert torch.allclose(shares.visual_share_norm, torch.ones(3, 4))
    assert torch.allclose(shares.visual_share[0], torch.full((4,), 3 / 5))  # position 4 sees 5 keys, 3 image


def test_sink_removal_renormalises_the_rest_of_the_row_to_one():
    queries, keys, positions = example(seed=2)
    sinks = torch.tensor([True, True, False, False, False, False, False])  # first token and one image token
    shares = row_shares(queries, keys, positions, IMAGE_MASK, sinks, SCALING)
    rows = attention_rows(queries, keys, positions, SCALING)
    kept = rows[:, :, 2:]
    renormalised = kept / kept.sum(-1, keepdim=True)
    assert torch.allclose(renormalised.sum(-1), torch.ones(3, 4))
    assert torch.allclose(shares.visual_share_nosink, renormalised[:, :, :2].sum(-1), atol=1e-6)


def test_keys_after_the_query_position_get_no_attention():
    queries, keys, _ = example()
    late_image = torch.tensor([False, False, False, False, False, True, True])
    shares = row_shares(queries[:1], keys, torch.tensor([4]), late_image, NO_SINKS, SCALING)
    assert torch.equal(shares.visual_share, torch.zeros(1, 4))


def test_query_sets_are_last_prompt_position_question_and_answer():
    image_mask = torch.tensor([False, True, True, False, False, False, False, False])
    sets = query_positions(image_mask, n_answer_tokens=2)
    assert sets["last"].tolist() == [5]
    assert sets["question"].tolist() == [3, 4, 5]
    assert sets["answer"].tolist() == [6, 7]
    assert "answer" not in query_positions(image_mask)


def test_a_sample_without_image_tokens_has_no_attention_share():
    with pytest.raises(ValueError, match="no image tokens"):
        query_positions(torch.zeros(5, dtype=torch.bool))


def test_summary_averages_samples_with_intervals_and_counts_visual_heads():
    queries, keys, positions = example(seed=3)
    per_sample = [row_shares(queries, keys * scale, positions, IMAGE_MASK, NO_SINKS, SCALING)
                  for scale in (0.5, 1.0, 2.0)]
    result = summarise_attention(per_sample, layer=2, query_set="question", n_bootstrap=50, seed=0)
    assert set(result.metrics) == set(ATTENTION_METRICS)
    expected = sum(float(s.visual_share.mean()) for s in per_sample) / 3
    assert result.metrics["visual_share"].value == pytest.approx(expected)
    head_share = torch.stack([s.visual_share.mean(0) for s in per_sample]).mean(0)
    assert result.metrics["visual_heads_fraction"].value == pytest.approx(float((head_share > 0.2).double().mean()))
    assert result == summarise_attention(per_sample, layer=2, query_set="question", n_bootstrap=50, seed=0)
    low, high = result.metrics["visual_share"].ci
    assert low <= expected <= high


def test_the_models_mask_replaces_the_causal_rule_when_given():
    """A bidirectional image block (Gemma 3): image row 1 sees image key 3 after it."""
    queries, keys, _ = example()
    positions = torch.tensor([1])
    visible = torch.tensor([[True, True, True, True, False, False, False]])
    rows = attention_rows(queries[:1], keys, positions, SCALING, visible=visible)
    assert bool((rows[0, :, 3] > 0).all()) and bool((rows[0, :, 4:] == 0).all())
    causal = attention_rows(queries[:1], keys, positions, SCALING)
    assert bool((causal[0, :, 2:] == 0).all())


def test_rows_that_see_no_image_key_are_left_out_of_image_relative_statistics():
    """A sliding window of 2 that ends before the image: row 6 sees keys 5 and 6 only. Its visual share
    is 0, its normalised share and logit gap are undefined and do not count; row 4 still does."""
    queries, keys, positions = example()
    window = row_shares(queries, keys, positions, IMAGE_MASK, NO_SINKS, SCALING, sliding_window=2)
    assert window.visual_share[2].eq(0).all()
    assert window.visual_share_norm[2].isnan().all() and window.logit_gap[2].isnan().all()
    result = summarise_attention([window], layer=0, query_set="question", n_bootstrap=20)
    defined = window.visual_share_norm[~window.visual_share_norm.isnan().any(-1)]
    assert result.metrics["visual_share_norm"].value == pytest.approx(float(defined.double().mean()))
    assert result.metrics["visual_share"].value == pytest.approx(float(window.visual_share.double().mean()))


def test_a_statistic_no_row_can_compute_says_why():
    queries, keys, positions = example()
    blind = row_shares(queries[2:], keys, positions[2:], IMAGE_MASK, NO_SINKS, SCALING, sliding_window=2)
    result = summarise_attention([blind, blind], layer=0, query_set="question", n_bootstrap=20)
    logit_gap = result.metrics["logit_gap"]
    assert math.isnan(logit_gap.value)
    assert "no query row of any sample can see an image key" in logit_gap.undefined_because
    assert result.metrics["visual_share"].value == 0.0
