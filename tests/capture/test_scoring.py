"""Answer scoring: :func:`bias_suite.capture.scoring.answer_log_likelihoods` matches token-by-token and
unpadded oracles for every tiny family (the counting on top of it: tests/tools/test_train_demo_scoring.py);
the behaviour suites' candidate scoring gives the same numbers from fewer passes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

from bias_suite.benchmarks import load_benchmark
from bias_suite.benchmarks.sample import Sample
from bias_suite.capture.scoring import answer_log_likelihoods, candidate_log_likelihoods, score_items
from bias_suite.demo import DEMO_CHECKPOINTS
from bias_suite.models.loading import load_model
from bias_suite.models.prompts import format_prompt, prompt_text


@pytest.fixture(scope="module")
def demo_model():
    """The shipped text-first demo in float32 (whatever --dtype says: the oracles compare to 1e-4)."""
    return load_model(str(DEMO_CHECKPOINTS["demo-text-first"]), device="cpu", dtype="float32")


def continuation(processor, sample: Sample, answer: str) -> tuple[str, str]:
    """(formatted prompt, the text that follows it when the model answers ``answer``)."""
    prompt = format_prompt(processor, sample.prompt)
    full = prompt_text(processor, dataclasses.replace(sample, answer=answer), append_answer=True)
    assert full.startswith(prompt)
    return prompt, full[len(prompt):]


def stepwise_log_likelihood(loaded, sample: Sample, answer: str) -> float:
    """Oracle: one unpadded forward pass per answer token, each scoring the next token from the last position."""
    processor, model = loaded.processor, loaded.model
    prompt, answer_text = continuation(processor, sample, answer)
    answer_ids = processor.tokenizer(answer_text, add_special_tokens=False)["input_ids"]
    encoded = processor(images=[sample.image.convert("RGB")], text=[prompt], return_tensors="pt")
    input_ids, pixel_values = encoded["input_ids"], encoded["pixel_values"]
    total = 0.0
    with torch.no_grad():
        for token in answer_ids:
            logits = model(input_ids=input_ids, pixel_values=pixel_values).logits[0, -1]
            total += torch.log_softmax(logits.double(), dim=-1)[token].item()
            input_ids = torch.cat([input_ids, torch.tensor([[token]])], dim=1)
    return total


def unpadded_log_likelihood(loaded, sample: Sample, answer: str) -> float:
    """Oracle: one forward pass over prompt + answer alone (no padding, all logits), summing the answer's tokens."""
    processor, model = loaded.processor, loaded.model
    prompt, answer_text = continuation(processor, sample, answer)
    answer_ids = processor.tokenizer(answer_text, add_special_tokens=False)["input_ids"]
    encoded = processor(images=[sample.image.convert("RGB")], text=[prompt + answer_text], return_tensors="pt")
    assert encoded["input_ids"][0, -len(answer_ids):].tolist() == answer_ids
    with torch.no_grad():
        log_probs = torch.log_softmax(model(**encoded).logits[0].double(), dim=-1)
    n = encoded["input_ids"].shape[1]
    return sum(log_probs[n - len(answer_ids) - 1 + i, token].item() for i, token in enumerate(answer_ids))


SAMPLES_AND_ANSWERS = (slice(0, 4), ["red", "three", "bottom", "zero"])  # prompts of different lengths; 1–5 tokens


def test_answer_log_likelihoods_equal_a_token_by_token_oracle(demo_model):
    samples = list(load_benchmark("shapes").samples[SAMPLES_AND_ANSWERS[0]])
    answers = SAMPLES_AND_ANSWERS[1]
    scores = answer_log_likelihoods(demo_model, samples, answers, batch_size=3)  # padded batches of 3 and 1
    expected = [stepwise_log_likelihood(demo_model, sample, answer) for sample, answer in zip(samples, answers)]
    assert scores.dtype == torch.float64
    torch.testing.assert_close(scores, torch.tensor(expected, dtype=torch.float64), atol=1e-4, rtol=1e-5)


def test_batched_scores_equal_unpadded_scores_for_every_tiny_family(alias):
    loaded = load_model(alias, device="cpu", dtype="float32")
    samples = list(load_benchmark("shapes").samples[SAMPLES_AND_ANSWERS[0]])
    answers = SAMPLES_AND_ANSWERS[1]
    scores = answer_log_likelihoods(loaded, samples, answers, batch_size=4)
    expected = [unpadded_log_likelihood(loaded, sample, answer) for sample, answer in zip(samples, answers)]
    torch.testing.assert_close(scores, torch.tensor(expected, dtype=torch.float64), atol=1e-4, rtol=1e-5)


def sample(sample_id: str, answer: str, caption_answer: str | None = None) -> Sample:
    caption = None if caption_answer is None else f"The caption says {caption_answer}."
    return Sample(sample_id, Image.new("RGB", (8, 8)), "What?", answer=answer, conflicting_caption=caption,
                  caption_answer=caption_answer)


def test_candidate_scores_equal_one_pass_per_candidate(demo_model):
    """Single-token candidates read at the prompt's end give what teacher-forcing each one alone gives."""
    items = load_benchmark("caption-variants", n_samples=3).samples  # colour, count and position questions
    prompts = [Sample(f"{s.sample_id}/{q.role}", s.query_image(q), q.prompt) for s in items for q in s.queries[:3]]
    candidates = [q.candidates for s in items for q in s.queries[:3]]
    scores = candidate_log_likelihoods(demo_model, prompts, candidates, batch_size=5)
    flat = [(prompt, answer) for prompt, answers in zip(prompts, candidates) for answer in answers]
    expected = answer_log_likelihoods(demo_model, [p for p, _ in flat], [a for _, a in flat], batch_size=7)
    assert any(len(c) == 5 for c in candidates) and any(len(c) == 8 for c in candidates)  # "bottom": 5 tokens
    torch.testing.assert_close(torch.tensor([v for row in scores for v in row], dtype=torch.float64), expected,
                               atol=1e-4, rtol=1e-5)


def test_score_items_keeps_every_query_of_every_item_in_order(demo_model):
    items = load_benchmark("paired-images", n_samples=2).samples
    scored = score_items(demo_model, items)
    assert [item.item_id for item in scored] == [s.sample_id for s in items]
    for item, sample in zip(scored, items):
        assert [q.role for q in item.queries] == [q.role for q in sample.queries]
        assert all(len(q.scores) == len(q.candidates) and all(v < 0 for v in q.scores) for q in item.queries)
