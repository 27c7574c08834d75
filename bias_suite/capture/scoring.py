"""Answer scoring: does the model follow the image or a caption that contradicts it?

Answers are scored by teacher-forced log-likelihood: the sum of log p(answer token | image, prompt,
previous answer tokens) over the answer's tokens. ``text_preference_rate`` is the fraction of conflict
samples whose caption-implied answer scores higher than the image-true one (its estimate:
:func:`bias_suite.metrics.behaviour.rate_estimate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from bias_suite.benchmarks.sample import Sample
from bias_suite.metrics.behaviour import rate_estimate
from bias_suite.metrics.estimate import Estimate
from bias_suite.models.loading import LoadedModel
from bias_suite.models.prompts import answer_token_count, encode_batch


@torch.no_grad()
def answer_log_likelihoods(loaded: LoadedModel, samples: Sequence[Sample], answers: Sequence[str],
                           batch_size: int = 8) -> torch.Tensor:
    """``[n]`` float64: log p(``answers[i]`` | image and prompt of ``samples[i]``), in nats."""
    if len(samples) != len(answers):
        raise ValueError("need one candidate answer per sample")
    model, processor = loaded.model, loaded.processor
    scores = []
    for start in range(0, len(samples), batch_size):
        batch = [dataclasses.replace(s, answer=a)
                 for s, a in zip(samples[start:start + batch_size], answers[start:start + batch_size])]
        counts = [answer_token_count(processor, s) for s in batch]
        inputs = encode_batch(processor, batch, model.device, model.dtype, append_answers=True)
        logits = model(**inputs, use_cache=False).logits.float()
        log_probs = torch.log_softmax(logits, dim=-1)
        # last real token
        last = inputs["attention_mask"].shape[1] - 1 - inputs["attention_mask"].flip(1).long().argmax(1)
        for row, n_answer in enumerate(counts):
            targets = torch.arange(int(last[row]) - n_answer + 1, int(last[row]) + 1, device=logits.device)
            token_ids = inputs["input_ids"][row, targets]
            scores.append(float(log_probs[row, targets - 1].gather(1, token_ids[:, None]).sum()))
    return torch.tensor(scores, dtype=torch.float64)


def text_preference(loaded: LoadedModel, samples: Sequence[Sample], batch_size: int = 8) -> torch.Tensor:
    """``[n]`` bool per conflict sample: True where the caption's answer is the more likely one (a tie
    counts as following the image). Every sample needs ``conflicting_caption``, ``answer`` and a
    different ``caption_answer``."""
    if not samples:
        raise ValueError("no conflict samples to score")
    for field in ("caption_answer", "conflicting_caption", "answer"):
        incomplete = [s.sample_id for s in samples if not getattr(s, field)]
        if incomplete:
            raise ValueError(f"not conflict samples (no {field}): {', '.join(incomplete[:5])}")
    same = [s.sample_id for s in samples if s.caption_answer == s.answer]
    if same:
        raise ValueError(f"caption_answer equals answer, so there is no conflict: {', '.join(same[:5])}")
    scores = answer_log_likelihoods(loaded, [*samples, *samples], [*(s.caption_answer for s in samples),
                                                                   *(s.answer for s in samples)], batch_size)
    return scores[: len(samples)] > scores[len(samples):]


def text_preference_estimate(loaded: LoadedModel, samples: Sequence[Sample], n_bootstrap: int = 200,
                             seed: int = 0) -> Estimate:
    """``text_preference_rate`` with a bootstrap interval over samples."""
    return rate_estimate(text_preference(loaded, samples), n_bootstrap, seed)
