"""The behaviour suites through the real command line: every suite, and an MMVP folder, writes behaviour rows
(and per-layer coupling rows) into the JSON card. The assertions read the card, not the exit code."""

from __future__ import annotations

import json

from bias_suite.benchmarks import load_benchmark
from tests.benchmarks.public_layouts import write_mmvp

SUITE_METRICS = {
    "language-prior": {"prior_adherence_rate", "language_prior_rate", "language_prior_rate_kp", "ck_pass_rate",
                       "vp_pass_rate", "cb_pass_rate", "image_sensitivity_rate"},
    "conflict-levels": {"l0_accuracy", "l1_accuracy", "l2_accuracy", "l3_accuracy", "l1_trap_rate", "l2_trap_rate",
                        "l3_trap_rate", "visual_robustness_score", "layout_consistent_accuracy"},
    "caption-variants": {"none_accuracy", "matching_accuracy", "corrupted_accuracy", "irrelevant_accuracy",
                         "caption_following_rate", "seeing_caption_following_rate", "matching_text_preference_rate",
                         "corrupted_text_preference_rate", "irrelevant_text_preference_rate"},
    "paired-images": {"paired_accuracy", "same_answer_rate", "member_accuracy", "pairing_gap",
                      "colour_paired_accuracy", "position_paired_accuracy", "count_paired_accuracy",
                      "kind_count_paired_accuracy"},
}
COUPLING = {"visual_share_coupling", "visual_share_nosink_coupling", "logit_gap_coupling", "key_distance_coupling"}


def test_the_gate_writes_behaviour_rows_for_every_suite_and_an_mmvp_folder(gate, pytester):
    mmvp = write_mmvp(pytester.path / "MMVP", load_benchmark("paired-images", n_samples=6, seed=5).samples)
    gate("--model=demo-text-first", *(f"--benchmark={name}" for name in SUITE_METRICS), f"--benchmark={mmvp}",
         "--layers=2", "--bias-report=card.json", "-k", "text_preference")
    card = json.loads((pytester.path / "card.json").read_text())
    behaviour: dict[str, dict[str, dict]] = {}
    for row in card["results"]:
        behaviour.setdefault(row["benchmark"], {})[row["metric"]] = row
    for name, metrics in SUITE_METRICS.items():
        rows = behaviour[name]
        assert metrics <= set(rows), (name, sorted(metrics - set(rows)))
        assert all(rows[metric]["layer"] is None for metric in metrics)
        assert set(rows) >= COUPLING and all(rows[metric]["layer"] == 2 for metric in COUPLING)
    paired = behaviour[str(mmvp)]["paired_accuracy"]
    assert 0.0 <= paired["value"] <= 1.0 and paired["jackknife"]
    assert {"same_answer_rate", "member_accuracy"} <= set(behaviour[str(mmvp)])
    prior = behaviour["language-prior"]["prior_adherence_rate"]  # 8 items: too few can qualify
    assert prior["value"] is None and "of 8 items qualified" in prior["message"]
    assert {benchmark["name"] for benchmark in card["benchmarks"]} >= {*SUITE_METRICS, str(mmvp)}
