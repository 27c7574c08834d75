"""Counting scored answers: each behaviour suite's metrics from the scores of its items' candidate answers.

Answer scoring (:mod:`bias_suite.capture.scoring`) gives every candidate of every query its teacher-forced
log-likelihood in nats; here a query's **choice** is its best-scoring candidate (a tie goes to the first,
which never favours the answer: candidates come in a fixed group order), and each suite counts choices over
its items (the unit ``--samples`` draws and the bootstrap resamples):

* ``conflict``: ``text_preference_rate`` — the caption's answer out-scores the image's (ties follow the image).
* ``language-prior`` (built-in): ``prior_adherence_rate`` — the model's own prior is its choice on the blank
  canvas; over items whose perception passes and whose counterfactual colour is not that prior, how often
  the counterfactual image gets the prior anyway. VLind's stages (CK, VP, CB, LP) as diagnostics.
* ``vlind`` (VLind-Bench files): VLind's released scoring (``score_pipeline.py``): a stage passes when both
  of its True/False statements are right; ``language_prior_rate`` = 1 − Σ_items mean_images(LP ∧ CK ∧ VP ∧
  CB) ÷ Σ(CK ∧ VP ∧ CB).
* ``conflict-levels`` (built-in L0–L3; V-FAT files L1–L3): accuracy and trap rate per level, V-FAT's visual
  robustness score — **reconstructed**: V-FAT's formula was not published with code; a secondary summary
  describes it as the harmonic mean of accuracy and 1 − textual dominance per level, which is what is
  computed — and the share of layouts right at every level.
* ``caption-variants``: accuracy per variant, the two-way caption-following rate of corrupted captions, and
  Words or Vision's text preference per variant (model-relative: over items whose text-only answer, on the
  blank canvas, differs from the image-only answer, how often the captioned answer is the text-only one).
* ``paired-images`` (built-in, MMVP): paired accuracy, same-answer rate, per-image accuracy.

A rate over a qualified subset is undefined (NaN, with ``undefined_because`` saying "n of N items
qualified") when fewer than :data:`MIN_QUALIFIED` items qualify — never a silent pass. Rates use
:func:`~bias_suite.metrics.behaviour.rate_estimate` (Clopper–Pearson); means over items a bootstrap-t
(:func:`item_mean`); other scores a delete-one-item jackknife-t (:func:`weighted_statistic`), their bootstrap
replicates and jackknife values kept for paired changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from bias_suite.metrics import intervals
from bias_suite.metrics.behaviour import rate_estimate
from bias_suite.metrics.estimate import Estimate, bootstrap_weights, jackknife_estimate, mean_estimate
from bias_suite.vocabulary import BehaviourKind

MIN_QUALIFIED = 10
LEVELS = ("L0", "L1", "L2", "L3")
CAPTION_VARIANTS = ("matching", "corrupted", "irrelevant")
PAIR_ATTRIBUTES = ("colour", "position", "count", "kind-count")
NAN = float("nan")


@dataclass(frozen=True)
class ScoredQuery:
    """One query's candidates and their teacher-forced log-likelihoods (``scores``, nats, same order)."""

    role: str
    candidates: tuple[str, ...]
    scores: tuple[float, ...]
    answer: str
    trap: str | None = None
    meta: tuple[tuple[str, str], ...] = ()

    def score(self, candidate: str) -> float:
        return self.scores[self.candidates.index(candidate)]

    @property
    def choice(self) -> str:
        """The best-scoring candidate; a tie goes to the first in candidate order."""
        best = max(range(len(self.scores)), key=lambda i: (self.scores[i], -i))
        return self.candidates[best]

    @property
    def correct(self) -> bool:
        return self.choice == self.answer

    @property
    def trapped(self) -> bool:
        """The choice is the trap (the prior's or the text's answer)."""
        return self.trap is not None and self.choice == self.trap

    @property
    def follows_trap(self) -> bool:
        """Two-way: the trap out-scores the answer (a tie follows the answer)."""
        return self.trap is not None and self.score(self.trap) > self.score(self.answer)

    @property
    def margin(self) -> float:
        """Nats by which the answer beats the best other candidate (negative: another candidate wins)."""
        return self.score(self.answer) - max(s for c, s in zip(self.candidates, self.scores) if c != self.answer)

    @property
    def trap_margin(self) -> float:
        """Nats by which the trap beats the answer (NaN without a trap)."""
        return NAN if self.trap is None else self.score(self.trap) - self.score(self.answer)

    @property
    def info(self) -> Mapping[str, str]:
        return dict(self.meta)


@dataclass(frozen=True)
class ScoredItem:
    """The scored queries of one item (one sample), its probe first."""

    item_id: str
    queries: tuple[ScoredQuery, ...]

    def __getitem__(self, role: str) -> ScoredQuery:
        for query in self.queries:
            if query.role == role:
                return query
        raise KeyError(f"item {self.item_id!r} has no query {role!r}; it has {[q.role for q in self.queries]}")

    def has(self, role: str) -> bool:
        return any(query.role == role for query in self.queries)

    @property
    def probe(self) -> ScoredQuery:
        return self.queries[0]


# --------------------------------------------------------------------------- estimates


def _rate(outcomes: Sequence[bool], n_bootstrap: int, seed: int) -> Estimate:
    return rate_estimate(torch.tensor([bool(o) for o in outcomes], dtype=torch.bool), n_bootstrap, seed)


def qualified_rate(outcomes: Sequence[bool], qualified: Sequence[bool], n_bootstrap: int, seed: int,
                   rule: str) -> Estimate:
    """The rate of ``outcomes`` over the qualified items; undefined below :data:`MIN_QUALIFIED` of them."""
    kept = [bool(outcome) for outcome, ok in zip(outcomes, qualified, strict=True) if ok]
    if len(kept) < MIN_QUALIFIED:
        return Estimate(NAN, NAN, NAN, undefined_because=(
            f"{len(kept)} of {len(qualified)} items qualified ({rule}); at least {MIN_QUALIFIED} are needed"))
    return _rate(kept, n_bootstrap, seed)


def item_mean(values: Sequence[float], n_bootstrap: int, seed: int, bounds=(-math.inf, math.inf),
              qualified: Sequence[bool] | None = None, rule: str = "") -> Estimate:
    """Mean over items of a per-item value (NaN: left out), with a bootstrap-t interval over items; over the
    qualified items only when ``qualified`` is given (undefined below :data:`MIN_QUALIFIED` of them)."""
    values = torch.tensor(values, dtype=torch.float64)
    if qualified is not None:
        mask = torch.tensor(list(qualified), dtype=torch.bool)
        if int(mask.sum()) < MIN_QUALIFIED:
            return Estimate(NAN, NAN, NAN, undefined_because=(
                f"{int(mask.sum())} of {len(mask)} items qualified ({rule}); at least {MIN_QUALIFIED} are needed"))
        values = values[mask]
    return mean_estimate(values, bootstrap_weights(len(values), n_bootstrap, seed), bounds)


def weighted_statistic(statistic: Callable[[torch.Tensor], torch.Tensor], n_items: int, n_bootstrap: int, seed: int,
                       bounds=(-math.inf, math.inf)) -> Estimate:
    """``statistic(weights)`` (``weights``: ``[n_replicates, n_items]`` per-item weights → ``[n_replicates]``) at
    unit weights with a delete-one-item jackknife-t interval, its bootstrap replicates and jackknife values
    kept."""
    weights = torch.cat([torch.ones(1, n_items, dtype=torch.float64), bootstrap_weights(n_items, n_bootstrap, seed),
                         intervals.jackknife_weights(n_items)])
    values = statistic(weights)
    return jackknife_estimate(values[0], values[-n_items:], bounds, replicates=values[1:-n_items], keep=True)


def _member_accuracy(shares: torch.Tensor, n_bootstrap: int, seed: int) -> Estimate:
    """The share of right answers over the images of the pairs (per-pair shares ``[n]`` in {0, ½, 1}): the
    clustered Clopper–Pearson interval (the two answers of a pair may agree more than chance), the
    leave-one-pair-out values and bootstrap replicates kept."""
    estimate = weighted_statistic(lambda w: (w @ shares) / w.sum(-1), len(shares), n_bootstrap, seed, (0.0, 1.0))
    low, high = intervals.clustered_clopper_pearson((2 * shares).round(), 2)
    return replace(estimate, ci_low=low, ci_high=high, interval=intervals.CLUSTERED_CLOPPER_PEARSON)


def _scaled(estimate: Estimate, factor: float, interval: str) -> Estimate:
    """``estimate`` (its interval, replicates and jackknife values) times ``factor`` > 0."""
    def times(values):
        return None if values is None else tuple(factor * x for x in values)

    return replace(estimate, value=factor * estimate.value, ci_low=factor * estimate.ci_low,
                   ci_high=factor * estimate.ci_high, replicates=times(estimate.replicates),
                   jackknife=times(estimate.jackknife), interval=interval)


# --------------------------------------------------------------------------- the suites


def conflict_estimates(items: Sequence[ScoredItem], n_bootstrap: int, seed: int) -> dict[str, Estimate]:
    return {"text_preference_rate": _rate([item.probe.follows_trap for item in items], n_bootstrap, seed)}


def language_prior_estimates(items: Sequence[ScoredItem], n_bootstrap: int, seed: int) -> dict[str, Estimate]:
    """The built-in language-prior suite (roles: prior, knowledge, perception, perception-where, bias,
    prior-factual, prior-blank)."""
    def rate(values):
        return _rate(values, n_bootstrap, seed)

    def over(outcomes, qualified, rule):
        return qualified_rate(outcomes, qualified, n_bootstrap, seed, rule)

    known = [item["knowledge"].correct for item in items]
    seen = [item["perception"].correct and item["perception-where"].correct for item in items]
    followed = [item["bias"].correct for item in items]
    passes = [item["prior"].correct for item in items]
    prior = [item["prior-blank"].choice for item in items]
    return {
        "prior_adherence_rate": over([item["prior"].choice == p for item, p in zip(items, prior)],
                                     [s and item["prior"].answer != p for item, s, p in zip(items, seen, prior)],
                                     "perception passes and the image's colour is not the model's blank-canvas "
                                     "answer"),
        "language_prior_rate": over([not p for p in passes], [k and s and b for k, s, b in zip(known, seen, followed)],
                                    "CK ∧ VP ∧ CB pass"),
        "language_prior_rate_kp": over([not p for p in passes], [k and s for k, s in zip(known, seen)],
                                       "CK ∧ VP pass"),
        "ck_pass_rate": rate(known),
        "vp_pass_rate": rate(seen),
        "cb_pass_rate": over(followed, known, "CK passes"),
        "image_sensitivity_rate": rate([item["prior"].choice != item["prior-factual"].choice for item in items]),
    }


def _vlind_stages(item: ScoredItem) -> dict[str, object]:
    both = {stage: item[f"{stage}1"].correct and item[f"{stage}2"].correct for stage in ("ck", "vp", "cb")}
    images = sorted({query.role.split("@", 1)[1] for query in item.queries if query.role.startswith("lp")})
    lp = [item[f"lp1@{image}"].correct and item[f"lp2@{image}"].correct for image in images]
    return {**both, "lp_share": sum(lp) / len(lp)}


def vlind_estimates(items: Sequence[ScoredItem], n_bootstrap: int, seed: int) -> dict[str, Estimate]:
    """VLind-Bench's released scoring over its stages (roles ck1/2, vp1/2, cb1/2, lp1@id/lp2@id)."""
    stages = [_vlind_stages(item) for item in items]
    ck, vp, cb = ([s[name] for s in stages] for name in ("ck", "vp", "cb"))
    failing = [1.0 - s["lp_share"] for s in stages]
    return {
        "language_prior_rate": item_mean(failing, n_bootstrap, seed, (0.0, 1.0),
                                         [a and b and c for a, b, c in zip(ck, vp, cb)], "CK ∧ VP ∧ CB pass"),
        "language_prior_rate_kp": item_mean(failing, n_bootstrap, seed, (0.0, 1.0), [a and b for a, b in zip(ck, vp)],
                                            "CK ∧ VP pass"),
        "ck_pass_rate": _rate(ck, n_bootstrap, seed),
        "vp_pass_rate": _rate(vp, n_bootstrap, seed),
        "cb_pass_rate": qualified_rate(cb, ck, n_bootstrap, seed, "CK passes"),
    }


def visual_robustness(accuracy: float | torch.Tensor, trap_rate: float | torch.Tensor) -> torch.Tensor:
    """V-FAT's per-level VRS as reconstructed: the harmonic mean of accuracy and 1 − trap rate (0 when both are 0);
    elementwise over tensors (float64)."""
    accuracy = torch.as_tensor(accuracy, dtype=torch.float64)
    kept = 1.0 - torch.as_tensor(trap_rate, dtype=torch.float64)
    return torch.where(accuracy + kept > 0, 2 * accuracy * kept / (accuracy + kept), torch.zeros_like(kept))


def conflict_level_estimates(items: Sequence[ScoredItem], n_bootstrap: int, seed: int) -> dict[str, Estimate]:
    """Per level present (built-in: every item has L0–L3; V-FAT files: one level per item)."""
    results = {}
    present = [level for level in LEVELS if any(item.has(level) for item in items)]
    for level in present:
        queries = [item[level] for item in items if item.has(level)]
        results[f"{level.lower()}_accuracy"] = _rate([q.correct for q in queries], n_bootstrap, seed)
        if level != "L0":
            results[f"{level.lower()}_trap_rate"] = _rate([q.trapped for q in queries], n_bootstrap, seed)
    trap_levels = [level for level in present if level != "L0"]
    if trap_levels:
        columns = {level: torch.tensor([[float(item.has(level)), float(item.has(level) and item[level].correct),
                                         float(item.has(level) and item[level].trapped)] for item in items],
                                       dtype=torch.float64) for level in trap_levels}

        def score(weights: torch.Tensor) -> torch.Tensor:
            per_level = []
            for counts in columns.values():
                n, right, trapped = (weights @ counts).unbind(-1)
                per_level.append(torch.where(n > 0, visual_robustness(right / n, trapped / n), torch.full_like(n, NAN)))
            return torch.stack(per_level, -1).nanmean(-1)

        results["visual_robustness_score"] = weighted_statistic(score, len(items), n_bootstrap, seed, (0.0, 1.0))
    if all(item.has(level) for item in items for level in LEVELS):
        results["layout_consistent_accuracy"] = _rate([all(item[level].correct for level in LEVELS)
                                                       for item in items], n_bootstrap, seed)
    return results


def caption_variant_estimates(items: Sequence[ScoredItem], n_bootstrap: int, seed: int) -> dict[str, Estimate]:
    """Per variant present (roles none, matching, corrupted, irrelevant and blank-<variant>)."""
    results = {"none_accuracy": _rate([item["none"].correct for item in items], n_bootstrap, seed)}
    for variant in CAPTION_VARIANTS:
        having = [item for item in items if item.has(variant)]
        if not having:
            continue
        results[f"{variant}_accuracy"] = _rate([item[variant].correct for item in having], n_bootstrap, seed)
        if variant == "corrupted":
            results["caption_following_rate"] = _rate([item[variant].follows_trap for item in having], n_bootstrap,
                                                      seed)
            results["seeing_caption_following_rate"] = qualified_rate(
                [item[variant].follows_trap for item in having], [item["none"].correct for item in having],
                n_bootstrap, seed, "answered right without a caption")
        text_only = [item[f"blank-{variant}"].choice for item in having]
        results[f"{variant}_text_preference_rate"] = qualified_rate(
            [item[variant].choice == text for item, text in zip(having, text_only)],
            [item["none"].choice != text for item, text in zip(having, text_only)], n_bootstrap, seed,
            "text-only and image-only answers differ")
    return results


def paired_image_estimates(items: Sequence[ScoredItem], n_bootstrap: int, seed: int) -> dict[str, Estimate]:
    """Pairs with roles ``a`` and ``b`` (built-in pairs carry their attribute as meta)."""
    both = [item["a"].correct and item["b"].correct for item in items]
    shares = torch.tensor([[(item["a"].correct + item["b"].correct) / 2, float(right)]
                           for item, right in zip(items, both)], dtype=torch.float64)
    results = {
        "paired_accuracy": _rate(both, n_bootstrap, seed),
        "same_answer_rate": _rate([item["a"].choice == item["b"].choice for item in items], n_bootstrap, seed),
        "member_accuracy": _member_accuracy(shares[:, 0], n_bootstrap, seed),
        # member − paired accuracy = ½ · [exactly one image of the pair right]: half a rate
        "pairing_gap": _scaled(_rate([item["a"].correct != item["b"].correct for item in items], n_bootstrap, seed),
                               0.5, "½ × " + intervals.CLOPPER_PEARSON + " of the pairs with one image right"),
    }
    for attribute in PAIR_ATTRIBUTES:
        having = [right for item, right in zip(items, both) if item["a"].info.get("attribute") == attribute]
        if having:
            results[f"{attribute.replace('-', '_')}_paired_accuracy"] = _rate(having, n_bootstrap, seed)
    return results


SUITES: Mapping[BehaviourKind, Callable[[Sequence[ScoredItem], int, int], dict[str, Estimate]]] = {
    BehaviourKind.CONFLICT: conflict_estimates,
    BehaviourKind.LANGUAGE_PRIOR: language_prior_estimates,
    BehaviourKind.VLIND: vlind_estimates,
    BehaviourKind.CONFLICT_LEVELS: conflict_level_estimates,
    BehaviourKind.CAPTION_VARIANTS: caption_variant_estimates,
    BehaviourKind.PAIRED_IMAGES: paired_image_estimates,
}


def suite_estimates(kind: BehaviourKind | str, items: Sequence[ScoredItem], n_bootstrap: int = 200,
                    seed: int = 0) -> dict[str, Estimate]:
    """Every behaviour metric of a suite of ``kind`` over its scored ``items``."""
    if not items:
        raise ValueError("no scored items")
    return SUITES[BehaviourKind(kind)](items, n_bootstrap, seed)


# --------------------------------------------------------------------------- per item


def item_outcomes(kind: BehaviourKind | str, item: ScoredItem) -> dict[str, float]:
    """One item's behaviour outcomes for its per-sample record: the probe's ``margin`` (nats the image-true
    answer wins by over the best other candidate), ``trap_margin`` (nats the trap beats the answer; NaN
    without a trap) and ``correct`` (0/1), plus the suite's own item-level 0/1 outcomes."""
    probe = item.probe
    outcomes = {"margin": probe.margin, "trap_margin": probe.trap_margin, "correct": float(probe.correct)}
    kind = BehaviourKind(kind)
    if kind is BehaviourKind.CONFLICT:
        outcomes["caption_followed"] = float(probe.follows_trap)
    elif kind is BehaviourKind.LANGUAGE_PRIOR:
        prior = item["prior-blank"].choice
        outcomes["prior_qualified"] = float(item["perception"].correct and item["perception-where"].correct
                                            and item["prior"].answer != prior)
        outcomes["prior_adherent"] = float(item["prior"].choice == prior)
    elif kind is BehaviourKind.VLIND:
        stages = _vlind_stages(item)
        outcomes.update({f"{stage}_pass": float(stages[stage]) for stage in ("ck", "vp", "cb")})
        outcomes["lp_pass_share"] = stages["lp_share"]
    elif kind is BehaviourKind.CONFLICT_LEVELS and all(item.has(level) for level in LEVELS):
        outcomes["layout_consistent"] = float(all(item[level].correct for level in LEVELS))
    elif kind is BehaviourKind.CAPTION_VARIANTS and item.has("corrupted"):
        outcomes["caption_followed"] = float(item["corrupted"].follows_trap)
    elif kind is BehaviourKind.PAIRED_IMAGES:
        outcomes["pair_correct"] = float(item["a"].correct and item["b"].correct)
        outcomes["same_answer"] = float(item["a"].choice == item["b"].choice)
    return outcomes
