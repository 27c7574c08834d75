"""Answer scoring: does the model follow the image or a caption that contradicts it?

Answers are scored by teacher-forced log-likelihood: the sum of log p(answer token | image, prompt,
previous answer tokens) over the answer's tokens. ``text_preference_rate`` is the fraction of conflict
samples whose caption-implied answer scores higher than the image-true one (its estimate:
:func:`bias_suite.metrics.behaviour.rate_estimate`).

Behaviour suites score every candidate of every query (:func:`candidate_log_likelihoods`, batched): the
forward pass of one candidate of a query also gives the next-token distribution after the prompt, so every
single-token candidate of that query is read off it, and only multi-token candidates get a pass of their
own (on the demo tokenizer the 8 colours are one token each: one pass instead of eight).
:func:`score_items` hands the scores to the suite's counting (:mod:`bias_suite.metrics.suites`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from bias_suite.benchmarks.sample import Sample
from bias_suite.metrics.behaviour import rate_estimate
from bias_suite.metrics.estimate import Estimate
from bias_suite.metrics.suites import ScoredItem, ScoredQuery
from bias_suite.models.loading import LoadedModel
from bias_suite.models.prompts import answer_token_count, encode_batch, prompt_text

SCORING_BATCH = 16  # sequences per forward pass (measured fastest on 2 CPU cores for the demo models)


def _last_real_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` index of each row's last real token (left or right padding)."""
    return attention_mask.shape[1] - 1 - attention_mask.flip(1).long().argmax(1)


@torch.no_grad()
def answer_log_likelihoods(loaded: LoadedModel, samples: Sequence[Sample], answers: Sequence[str],
                           batch_size: int = 8) -> torch.Tensor:
    """``[n]`` float64: log p(``answers[i]`` | image and prompt of ``samples[i]``), in nats."""
    if len(samples) != len(answers):
        raise ValueError("need one candidate answer per sample")
    model, processor = loaded.model, loaded.processor
    scores = []
    for start in range(0, len(samples), batch_size):
        batch = [dataclasses.replace(s, answer=a, queries=())
                 for s, a in zip(samples[start:start + batch_size], answers[start:start + batch_size])]
        counts = [answer_token_count(processor, s) for s in batch]
        inputs = encode_batch(processor, batch, loaded.input_device, model.dtype, append_answers=True)
        logits = model(**inputs, use_cache=False).logits.float()
        log_probs = torch.log_softmax(logits, dim=-1)
        last = _last_real_positions(inputs["attention_mask"])
        for row, n_answer in enumerate(counts):
            targets = torch.arange(int(last[row]) - n_answer + 1, int(last[row]) + 1, device=logits.device)
            token_ids = inputs["input_ids"][row, targets.to(inputs["input_ids"].device)].to(logits.device)
            scores.append(float(log_probs[row, targets - 1].gather(1, token_ids[:, None]).sum()))
    return torch.tensor(scores, dtype=torch.float64)


def answer_token_ids(processor, sample: Sample, answer: str) -> list[int]:
    """The tokens ``answer`` adds after the formatted prompt of ``sample`` (as the model reads it)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    prompt = tokenizer(prompt_text(processor, sample))["input_ids"]
    answered = dataclasses.replace(sample, answer=answer)
    full = tokenizer(prompt_text(processor, answered, append_answer=True))["input_ids"]
    if full[: len(prompt)] != prompt or len(full) == len(prompt):
        raise ValueError(f"{sample.sample_id}: appending the answer {answer!r} re-tokenises the prompt; "
                         "cannot locate its tokens")
    return full[len(prompt):]


@torch.no_grad()
def candidate_log_likelihoods(loaded: LoadedModel, prompts: Sequence[Sample], candidates: Sequence[Sequence[str]],
                              batch_size: int = SCORING_BATCH) -> list[tuple[float, ...]]:
    """Per prompt, the log-likelihood (nats, teacher-forced) of each of its candidates, in order.

    ``prompts[i]`` gives the image and question (its ``answer`` is ignored). The same numbers as
    :func:`answer_log_likelihoods` per (prompt, candidate), from fewer passes: one per multi-token candidate,
    and the single-token candidates read at the prompt's last position of the first pass of their prompt.
    """
    if len(prompts) != len(candidates):
        raise ValueError("need one candidate list per prompt")
    processor, model = loaded.processor, loaded.model
    # (prompt index, candidate index, its answer tokens, the single-token candidates read off this pass)
    passes: list[tuple[int, int, list[int], list[tuple[int, int]]]] = []
    for index, (prompt, answers) in enumerate(zip(prompts, candidates)):
        prompt = dataclasses.replace(prompt, answer=None, queries=())
        tokens = [answer_token_ids(processor, prompt, answer) for answer in answers]
        singles = [(c, ids[0]) for c, ids in enumerate(tokens) if len(ids) == 1]
        carriers = [c for c, ids in enumerate(tokens) if len(ids) > 1] or [singles[0][0]]
        passes += [(index, c, tokens[c], singles if k == 0 else []) for k, c in enumerate(carriers)]
    scores = [[float("nan")] * len(answers) for answers in candidates]
    for start in range(0, len(passes), batch_size):
        batch = passes[start:start + batch_size]
        samples = [dataclasses.replace(prompts[i], answer=candidates[i][c], queries=()) for i, c, _, _ in batch]
        inputs = encode_batch(processor, samples, loaded.input_device, model.dtype, append_answers=True)
        logits = model(**inputs, use_cache=False).logits
        last = _last_real_positions(inputs["attention_mask"]).tolist()
        for row, (index, c, tokens, singles) in enumerate(batch):
            n = len(tokens)
            positions = torch.arange(last[row] - n, last[row] + 1, device=logits.device)  # prompt end … answer
            log_probs = torch.log_softmax(logits[row, positions].float(), dim=-1)  # [n + 1, vocab]
            found = inputs["input_ids"][row, positions[1:].to(inputs["input_ids"].device)].tolist()
            if found != tokens:
                raise ValueError(f"{prompts[index].sample_id}: answer {candidates[index][c]!r} was encoded as "
                                 f"{found}, not {tokens}")
            scores[index][c] = float(log_probs[torch.arange(n), torch.tensor(tokens)].double().sum())
            for single, token in singles:
                scores[index][single] = float(log_probs[0, token])
    return [tuple(row) for row in scores]


def score_items(loaded: LoadedModel, samples: Sequence[Sample], batch_size: int = SCORING_BATCH) -> list[ScoredItem]:
    """Every query of every behaviour item in ``samples`` scored (candidates in one batched sweep)."""
    prompts, candidates, owners = [], [], []
    for item, sample in enumerate(samples):
        for query in sample.queries:
            prompts.append(Sample(f"{sample.sample_id}/{query.role}", sample.query_image(query), query.prompt))
            candidates.append(query.candidates)
            owners.append((item, query))
    scores = candidate_log_likelihoods(loaded, prompts, candidates, batch_size)
    scored: list[list[ScoredQuery]] = [[] for _ in samples]
    for (item, query), values in zip(owners, scores):
        scored[item].append(ScoredQuery(query.role, query.candidates, values, query.answer, query.trap, query.meta))
    return [ScoredItem(sample.sample_id, tuple(queries)) for sample, queries in zip(samples, scored)]


def conflict_items(loaded: LoadedModel, samples: Sequence[Sample], batch_size: int = 8) -> list[ScoredItem]:
    """Conflict samples as scored items of one query each: candidates (image answer, caption answer), the
    caption's the trap. The scores are those :func:`text_preference` compares."""
    _check_conflicts(samples)
    scores = answer_log_likelihoods(loaded, [*samples, *samples], [*(s.caption_answer for s in samples),
                                                                   *(s.answer for s in samples)], batch_size)
    n = len(samples)
    return [ScoredItem(s.sample_id, (ScoredQuery("caption", (s.answer, s.caption_answer),
                                                 (float(scores[n + i]), float(scores[i])), s.answer,
                                                 s.caption_answer),))
            for i, s in enumerate(samples)]


def _check_conflicts(samples: Sequence[Sample]) -> None:
    if not samples:
        raise ValueError("no conflict samples to score")
    for field in ("caption_answer", "conflicting_caption", "answer"):
        incomplete = [s.sample_id for s in samples if not getattr(s, field)]
        if incomplete:
            raise ValueError(f"not conflict samples (no {field}): {', '.join(incomplete[:5])}")
    same = [s.sample_id for s in samples if s.caption_answer == s.answer]
    if same:
        raise ValueError(f"caption_answer equals answer, so there is no conflict: {', '.join(same[:5])}")


def text_preference(loaded: LoadedModel, samples: Sequence[Sample], batch_size: int = 8) -> torch.Tensor:
    """``[n]`` bool per conflict sample: True where the caption's answer is the more likely one (a tie
    counts as following the image). Every sample needs ``conflicting_caption``, ``answer`` and a
    different ``caption_answer``."""
    return torch.tensor([item.probe.follows_trap for item in conflict_items(loaded, samples, batch_size)],
                        dtype=torch.bool)


def text_preference_estimate(loaded: LoadedModel, samples: Sequence[Sample], n_bootstrap: int = 200,
                             seed: int = 0) -> Estimate:
    """``text_preference_rate`` with a bootstrap interval over samples."""
    return rate_estimate(text_preference(loaded, samples), n_bootstrap, seed)
