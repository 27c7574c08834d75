"""Every rule of a shipped generic threshold file (the package's defaults and the provisional family files)
can fail: a planted model of known bias fails it. A rule that could never fail would gate nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bias_suite.benchmarks.sample import Sample
from bias_suite.capture import scoring as behaviour
from bias_suite.gate.judge import Gauge
from bias_suite.gate.thresholds import PACKAGED_DEFAULT, load_threshold_file
from bias_suite.metrics import keyspace_metrics, row_shares, summarise_attention
from tests.metrics.keysets import make_keysets

GENERIC_FILES = [PACKAGED_DEFAULT, *(path for path in sorted((Path(__file__).parents[2] / "thresholds").glob("*.yaml"))
                                     if load_threshold_file(path).provisional)]
N_LAYERS = 4


def planted_attention(layer: int) -> dict:
    """Text queries that score image keys 20 nats lower than text keys: images get e⁻²⁰ of the attention."""
    generator = torch.Generator().manual_seed(0)
    n_tokens, n_heads, dim = 40, 4, 8
    image_mask = torch.zeros(n_tokens, dtype=torch.bool)
    image_mask[1:25] = True
    direction = torch.zeros(dim)
    direction[0] = 1.0
    keys = 0.01 * torch.randn(n_tokens, 2, dim, generator=generator)
    keys[image_mask] -= 40 * direction  # q·k = −40 · 1 · scaling(0.5) = −20
    queries = direction.repeat(12, n_heads, 1)
    positions = torch.arange(28, 40)
    per_sample = [row_shares(queries, keys, positions, image_mask, torch.zeros(n_tokens, dtype=torch.bool), 0.5)
                  for _ in range(8)]
    return {"question": summarise_attention(per_sample, layer, "question", n_bootstrap=50)}


def planted_keyspace(layer: int):
    return keyspace_metrics(*(lambda s: (s.image, s.image_ids, s.text, s.text_ids))(
        make_keysets(0, n_samples=12, dim=8, shift=1000.0, offset=0.0)), layer=layer)


def planted_behaviour(monkeypatch) -> dict:
    """A model that always follows the caption: the caption's answer scores higher in every conflict, on as
    many conflicts as the built-in benchmark has (16). The exact interval of 16 of 16 reaches down to 0.79, so the
    generic bound must lie below that to be able to fail there."""
    samples = [Sample(f"s{i}", None, "What colour?", answer="red", conflicting_caption="It is blue.",
                      caption_answer="blue")
               for i in range(16)]
    monkeypatch.setattr(behaviour, "answer_log_likelihoods",
                        lambda loaded, items, answers, batch_size=8: torch.tensor(
                            [0.0 if answer == "blue" else -5.0 for answer in answers], dtype=torch.float64))
    return {"text_preference_rate": behaviour.text_preference_estimate(None, samples, n_bootstrap=50)}


@pytest.mark.parametrize("path", GENERIC_FILES, ids=lambda path: path.name if path != PACKAGED_DEFAULT else "packaged")
def test_a_planted_model_fails_every_generic_rule(path, monkeypatch):
    threshold = load_threshold_file(path)
    gauge = Gauge(threshold, "planted", N_LAYERS, {}, {})
    for rule in threshold.rules:
        layer = rule.layers.resolve_within(N_LAYERS)[-1]
        benchmark = rule.benchmarks[0] if rule.benchmarks else "shapes"
        family = rule.metric.split(".")[0]
        if rule.metric.startswith(("visual_share", "logit_gap", "visual_heads_fraction")):
            rows = gauge.judge_attention(benchmark, planted_attention(layer))
        elif family == "text_preference_rate":
            rows = gauge.judge_behaviour(benchmark, planted_behaviour(monkeypatch))
        else:
            rows = gauge.judge_keyspace(benchmark, planted_keyspace(layer))
        judged = [row for row in rows if row.metric == rule.metric and row.head is None]
        assert judged, f"{path.name} rules[{rule.index}]: no plant measures {rule.metric}"
        assert judged[0].status == "fail", (f"{path.name} rules[{rule.index}] ({rule.metric} {rule.bound.describe()}) "
                                            f"did not fail the plant: {judged[0]}")
