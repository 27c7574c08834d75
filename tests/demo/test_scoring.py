"""answer_accuracy and text_preference_rate: the answer scores they rest on
(:func:`bias_suite.behaviour.answer_log_likelihoods`) match token-by-token and unpadded oracles for
every tiny family, and the counting on top of them is checked with a stub scorer whose answers are known."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

from bias_suite import behaviour
from bias_suite.behaviour import answer_log_likelihoods
from bias_suite.benchmarks import load_benchmark
from bias_suite.demo import DEMO_CHECKPOINTS, scoring
from bias_suite.demo.scoring import ANSWER_GROUPS, answer_accuracy, chance_accuracy, text_preference_rate
from bias_suite.inputs import Sample, format_prompt, prompt_text
from bias_suite.loading import load_model


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


@pytest.fixture
def stub_scores(monkeypatch):
    """Replace the model scorer by a table ``{(sample_id, answer): score}`` (missing entries score -10)."""
    table: dict[tuple[str, str], float] = {}

    def fake_scorer(loaded, samples, answers, batch_size=32):
        return torch.tensor([table.get((s.sample_id, a), -10.0) for s, a in zip(samples, answers)], dtype=torch.float64)

    monkeypatch.setattr(scoring, "answer_log_likelihoods", fake_scorer)
    monkeypatch.setattr(behaviour, "answer_log_likelihoods", fake_scorer)  # text_preference scores there
    return table


def test_text_preference_rate_counts_samples_whose_caption_answer_scores_higher(stub_scores):
    samples = [
        sample("a", "red", "blue"), sample("b", "left", "top"), sample("c", "two", "four"), sample("d", "red", "green")
    ]
    stub_scores.update({
        ("a", "blue"): -1.0, ("a", "red"): -2.0,  # follows the caption
        ("b", "top"): -3.0, ("b", "left"): -0.5,  # follows the image
        ("c", "four"): -0.1, ("c", "two"): -5.0,  # follows the caption
        ("d", "green"): -1.0, ("d", "red"): -1.0,  # a tie counts as following the image
    })
    assert text_preference_rate(None, samples) == pytest.approx(2 / 4)


def test_answer_accuracy_takes_the_best_scoring_candidate_of_the_answer_group(stub_scores):
    samples = [sample("a", "red"), sample("b", "left"), sample("c", "two")]
    stub_scores.update({
        ("a", "red"): -1.0, ("a", "blue"): -2.0,  # right
        ("b", "left"): -1.0, ("b", "middle"): -0.2,  # wrong: "middle" is in the position group
        ("c", "two"): -0.3, ("c", "red"): 0.0,  # right: "red" is not a count, so it is not a candidate
    })
    assert answer_accuracy(None, samples) == pytest.approx(2 / 3)


def test_chance_is_one_over_the_group_size_averaged_over_samples():
    shapes = load_benchmark("shapes").samples  # colour (8 options), count, position, kind-count (5 options) in turn
    assert chance_accuracy(shapes) == pytest.approx((1 / 8 + 3 / 5) / 4)
    assert [len(group) for group in ANSWER_GROUPS] == [8, 5, 5]


def test_an_answer_in_no_group_is_rejected_naming_the_sample():
    with pytest.raises(ValueError, match="odd/1: answer 'banana' is in no answer group"):
        chance_accuracy([sample("odd/1", "banana")])


def test_text_preference_rate_rejects_samples_without_a_conflict(stub_scores):
    with pytest.raises(ValueError, match=r"no caption_answer.*plain/1"):
        text_preference_rate(None, [sample("plain/1", "red")])
    with pytest.raises(ValueError, match=r"no conflict.*same/1"):
        text_preference_rate(None, [sample("same/1", "red", "red")])


def test_scoring_nothing_is_an_error(stub_scores):
    with pytest.raises(ValueError, match="no samples"):
        answer_accuracy(None, [])
