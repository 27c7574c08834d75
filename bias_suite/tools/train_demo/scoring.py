"""Answer accuracy and text preference of any loaded image-text model, without generation.

Scores come from :func:`bias_suite.capture.scoring.answer_log_likelihoods`: the model reads image +
formatted prompt + a candidate answer, and the candidate's score is the sum of its tokens'
log-probabilities (nats). A model "answers" the candidate with the highest score among the answers
of the same question type (:data:`ANSWER_GROUPS`) and "follows the caption" of a conflict sample when
the caption's answer outscores the image's. Sums, not per-token means: this is the usual
multiple-choice protocol (lm-evaluation-harness ``acc``), one forward pass per candidate, batched.
Works for every processor :func:`bias_suite.models.prompts.encode_batch` handles (LLaVA, Qwen2-VL, Qwen2.5-VL).
"""

from __future__ import annotations

from collections.abc import Sequence

from bias_suite.benchmarks.sample import Sample
from bias_suite.benchmarks.scenes import COLOUR_RGB, MAX_SHAPES, SLOT_CENTRES, number_word
from bias_suite.capture.scoring import answer_log_likelihoods, text_preference
from bias_suite.models.loading import LoadedModel

# Candidate answers per question type of the scene benchmarks; chance is 1 / len(group).
ANSWER_GROUPS: tuple[tuple[str, ...], ...] = (
    tuple(COLOUR_RGB),  # colour questions: 8 colours
    tuple(SLOT_CENTRES),  # position questions: left, right, top, bottom, middle
    tuple(number_word(n) for n in range(MAX_SHAPES + 1)),  # count questions: zero … four
)
DEFAULT_BATCH_SIZE = 16  # sequences per forward pass


def answer_group(answer: str, sample_id: str, answer_groups: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The first group of candidate answers holding ``answer``; raises naming the sample if none does."""
    for group in answer_groups:
        if answer in group:
            return tuple(group)
    raise ValueError(
        f"{sample_id}: answer {answer!r} is in no answer group {[list(g) for g in answer_groups]}; "
        "pass answer_groups= with a group that holds it"
    )


def _answers_of(samples: Sequence[Sample]) -> list[str]:
    if not samples:
        raise ValueError("no samples to score")
    missing = [sample.sample_id for sample in samples if sample.answer is None]
    if missing:
        raise ValueError(f"samples without an answer cannot be scored: {', '.join(missing[:5])}")
    return [sample.answer for sample in samples]  # type: ignore[misc]


def answer_accuracy(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    answer_groups: Sequence[Sequence[str]] = ANSWER_GROUPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> float:
    """Fraction of samples whose image-true ``answer`` scores highest among the answers of its group.

    Ties go to the candidate listed first in the group. Chance level: :func:`chance_accuracy`.
    """
    answers = _answers_of(samples)
    groups = [answer_group(answer, s.sample_id, answer_groups) for answer, s in zip(answers, samples, strict=True)]
    pairs = [(sample, candidate) for sample, group in zip(samples, groups, strict=True) for candidate in group]
    scores = answer_log_likelihoods(loaded, [s for s, _ in pairs], [c for _, c in pairs], batch_size).tolist()
    correct, start = 0, 0
    for answer, group in zip(answers, groups, strict=True):
        group_scores = scores[start:start + len(group)]
        correct += group[group_scores.index(max(group_scores))] == answer
        start += len(group)
    return correct / len(samples)


def chance_accuracy(samples: Sequence[Sample], answer_groups: Sequence[Sequence[str]] = ANSWER_GROUPS) -> float:
    """Expected :func:`answer_accuracy` of uniform guessing: mean over samples of 1 / group size."""
    answers = _answers_of(samples)
    sizes = [len(answer_group(answer, s.sample_id, answer_groups)) for answer, s in zip(answers, samples, strict=True)]
    return sum(1 / size for size in sizes) / len(sizes)


def text_preference_rate(
    loaded: LoadedModel, samples: Sequence[Sample], batch_size: int = DEFAULT_BATCH_SIZE
) -> float:
    """Fraction of conflict samples where the caption's answer outscores the image's answer.

    Each sample's prompt contains a caption contradicting its image; ``caption_answer`` is what the
    caption implies, ``answer`` what the image shows. A two-way choice: 0 means the model always
    sides with the image, 1 always with the text; ties count as siding with the image.
    """
    return float(text_preference(loaded, samples, batch_size).double().mean())
