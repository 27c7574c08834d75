"""The demo's answer_accuracy and text_preference_rate count correctly, checked with a stub scorer whose
answers are known (the scorer itself: tests/capture/test_scoring.py)."""

from __future__ import annotations

import pytest
import torch

from bias_suite.benchmarks import load_benchmark
from bias_suite.capture import scoring as answer_scoring
from bias_suite.tools.train_demo import scoring
from bias_suite.tools.train_demo.scoring import ANSWER_GROUPS, answer_accuracy, chance_accuracy, text_preference_rate
from tests.capture.test_scoring import sample


@pytest.fixture
def stub_scores(monkeypatch):
    """Replace the model scorer by a table ``{(sample_id, answer): score}`` (missing entries score -10)."""
    table: dict[tuple[str, str], float] = {}

    def fake_scorer(loaded, samples, answers, batch_size=32):
        return torch.tensor([table.get((s.sample_id, a), -10.0) for s, a in zip(samples, answers)], dtype=torch.float64)

    monkeypatch.setattr(scoring, "answer_log_likelihoods", fake_scorer)
    monkeypatch.setattr(answer_scoring, "answer_log_likelihoods", fake_scorer)  # text_preference scores there
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
