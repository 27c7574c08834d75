"""Counting scored answers: each suite's metrics on stub scorers whose answers are known.

* an **oracle** scores the pixel-true answer highest: every metric sits at its ideal;
* a **text follower** picks the trap wherever there is one: every bias metric is 1;
* an **image-blind** model gives every prompt the same scores whatever the image: MMVP's paired accuracy
  and the layout-consistent accuracy are 0, the same-answer rate 1, image sensitivity 0.
The built-ins' own queries feed the stubs, so these are also tests of the suites' designs.
"""

from __future__ import annotations

import hashlib
import math

import pytest

from bias_suite.benchmarks import load_benchmark
from bias_suite.metrics.suites import (
    MIN_QUALIFIED,
    ScoredItem,
    ScoredQuery,
    item_outcomes,
    suite_estimates,
    visual_robustness,
)

SUITES = ("language-prior", "conflict-levels", "caption-variants", "paired-images")


def scored(benchmark, scores_of) -> list[ScoredItem]:
    """Each query scored by ``scores_of(sample, query) -> tuple of scores``."""
    return [ScoredItem(sample.sample_id, tuple(
        ScoredQuery(q.role, q.candidates, scores_of(sample, q), q.answer, q.trap, q.meta) for q in sample.queries))
        for sample in benchmark.samples]


def oracle(sample, query):
    return tuple(0.0 if candidate == query.answer else -5.0 for candidate in query.candidates)


def text_follower(sample, query):
    preferred = query.trap or query.answer
    return tuple(0.0 if candidate == preferred else -5.0 for candidate in query.candidates)


def blind(sample, query):
    """Scores from the prompt alone (the image is ignored): the same prompt always gets the same scores."""
    digest = hashlib.sha256(query.prompt.encode()).digest()
    return tuple(-float(digest[i % len(digest)]) - i for i in range(len(query.candidates)))


def values(kind, items):
    return {name: estimate.value for name, estimate in suite_estimates(kind, items, n_bootstrap=20).items()}


@pytest.mark.parametrize("name", SUITES)
def test_an_oracle_scores_every_metric_at_its_ideal(name):
    benchmark = load_benchmark(name, n_samples=40)
    result = values(benchmark.behaviour, scored(benchmark, oracle))
    ideal_zero = {"prior_adherence_rate", "l1_trap_rate", "l2_trap_rate", "l3_trap_rate", "caption_following_rate",
                  "seeing_caption_following_rate", "same_answer_rate", "pairing_gap"}
    for metric, value in result.items():
        if metric in ideal_zero:
            assert value == 0.0, metric
        elif metric.endswith(("accuracy", "pass_rate", "robustness_score", "sensitivity_rate")):
            assert value == 1.0, metric


def test_a_text_follower_takes_every_trap():
    levels = load_benchmark("conflict-levels", n_samples=20)
    result = values(levels.behaviour, scored(levels, text_follower))
    assert result["l1_trap_rate"] == result["l2_trap_rate"] == result["l3_trap_rate"] == 1.0
    assert result["visual_robustness_score"] == 0.0 and result["layout_consistent_accuracy"] == 0.0
    captions = load_benchmark("caption-variants", n_samples=20)
    assert values(captions.behaviour, scored(captions, text_follower))["caption_following_rate"] == 1.0


def test_an_image_blind_model_is_caught_by_every_suite():
    pairs = load_benchmark("paired-images", n_samples=40)
    paired = values(pairs.behaviour, scored(pairs, blind))
    assert paired["paired_accuracy"] == 0.0 and paired["same_answer_rate"] == 1.0
    levels = load_benchmark("conflict-levels", n_samples=40)
    assert values(levels.behaviour, scored(levels, blind))["layout_consistent_accuracy"] == 0.0
    prior = load_benchmark("language-prior", n_samples=40)
    items = scored(prior, blind)
    assert values(prior.behaviour, items)["image_sensitivity_rate"] == 0.0
    # the prior question reads the same on the blank canvas and on the image: a blind model keeps its prior
    outcomes = [item_outcomes(prior.behaviour, item) for item in items]
    assert all(o["prior_adherent"] == 1.0 for o in outcomes)


def test_a_rate_over_too_few_qualified_items_is_undefined_and_says_how_many():
    benchmark = load_benchmark("language-prior", n_samples=MIN_QUALIFIED + 2)
    result = suite_estimates(benchmark.behaviour, scored(benchmark, blind), n_bootstrap=20)
    knowledge = result["language_prior_rate"]  # the blind stub knows no commonsense: nothing qualifies
    assert math.isnan(knowledge.value)
    assert f"of {MIN_QUALIFIED + 2} items qualified (CK ∧ VP ∧ CB pass); at least {MIN_QUALIFIED}" in \
        knowledge.undefined_because


def tf(role, answer, right):
    """A True/False query answered right or wrong."""
    wrong = "False" if answer == "True" else "True"
    chosen = answer if right else wrong
    return ScoredQuery(role, ("True", "False"), tuple(0.0 if c == chosen else -1.0 for c in ("True", "False")), answer,
                       wrong)


def vlind_item(index, ck, vp, cb, lp_images):
    queries = [tf(f"lp1@{i}", "True", ok) for i, ok in enumerate(lp_images)]
    queries += [tf(f"lp2@{i}", "False", ok) for i, ok in enumerate(lp_images)]
    for stage, ok in (("ck", ck), ("vp", vp), ("cb", cb)):
        queries += [tf(f"{stage}1", "True", ok), tf(f"{stage}2", "False", True)]
    return ScoredItem(f"v{index}", tuple(queries))


def test_vlind_scoring_follows_the_released_score_pipeline():
    """a_pass = CK; c_pass ratio = Σ(CB ∧ CK) / ΣCK; LP macro over the good images of CK ∧ VP ∧ CB items."""
    items = [vlind_item(i, True, True, True, [True, False]) for i in range(6)]  # LP share 0.5 each
    items += [vlind_item(6 + i, True, True, True, [True]) for i in range(6)]  # LP share 1
    items += [vlind_item(12, True, False, True, [False]), vlind_item(13, False, True, False, [False])]
    result = suite_estimates("vlind", items, n_bootstrap=20)
    assert result["ck_pass_rate"].value == pytest.approx(13 / 14)
    assert result["vp_pass_rate"].value == pytest.approx(13 / 14)
    assert result["cb_pass_rate"].value == pytest.approx(1.0)  # 13 of 13 CK passes follow the context
    assert result["language_prior_rate"].value == pytest.approx(1 - (6 * 0.5 + 6 * 1.0) / 12)
    assert result["language_prior_rate_kp"].value == pytest.approx(1 - (6 * 0.5 + 6 * 1.0) / 12)


def test_visual_robustness_is_the_harmonic_mean_of_accuracy_and_resisting_the_trap():
    assert visual_robustness(1.0, 0.0) == 1.0
    assert visual_robustness(0.5, 0.5) == pytest.approx(0.5)
    assert visual_robustness(0.6, 0.2) == pytest.approx(2 * 0.6 * 0.8 / 1.4)
    assert visual_robustness(0.0, 1.0) == 0.0


def test_ties_go_to_the_first_candidate_and_follow_the_image_two_way():
    query = ScoredQuery("corrupted", ("red", "blue"), (-1.0, -1.0), "blue", "red")
    assert query.choice == "red" and not query.follows_trap
    assert query.margin == 0.0 and query.trap_margin == 0.0


def test_item_outcomes_carry_the_probe_margin_in_nats():
    item = ScoredItem("p", (ScoredQuery("a", ("left", "right"), (-0.5, -2.0), "left"),
                            ScoredQuery("b", ("left", "right"), (-0.1, -3.0), "right")))
    outcomes = item_outcomes("paired-images", item)
    assert outcomes["margin"] == pytest.approx(1.5) and math.isnan(outcomes["trap_margin"])
    assert outcomes["correct"] == 1.0 and outcomes["pair_correct"] == 0.0 and outcomes["same_answer"] == 1.0
