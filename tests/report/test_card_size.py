"""The Markdown card fits where the README's CI recipe posts it (a pull-request comment holds 65,536
characters), whatever the size of the run; what it leaves out, it names where to find."""

from __future__ import annotations

import itertools

from bias_suite.gate.changes import Change
from bias_suite.gate.records import BenchmarkRecord, GatedBy, ModelRecord
from bias_suite.gate.rows import ResultRow
from bias_suite.metrics.registry import ATTENTION_METRICS, KEYSPACE_METRICS, QUERY_SETS, spec_of
from bias_suite.report.card import MARKDOWN_LIMIT, ReportCard
from bias_suite.run.finish import RunRecord

MODEL = "/checkpoints/llava-1.5-7b-release-candidate"
BENCHMARKS = ("photos", "shapes", "conflict")
LAYERS = range(32)
BLESSED = ("mmd2", "ratio", "logit_gap.question", "visual_share.question")


def _row(benchmark: str, layer: int, metric: str, head: int | None = None) -> ResultRow:
    value = 0.1 + 0.01 * layer + (0.001 * head if head is not None else 0.0)
    gated = head is None and metric in BLESSED
    return ResultRow(MODEL, benchmark, layer, head, metric, value, (value - 0.02, value + 0.02),
                     "fail" if gated and layer % 7 == 0 else "pass" if gated else "unchecked",
                     bound=value + (-0.03 if layer % 7 == 0 else 0.03) if gated else None,
                     direction=spec_of(metric).direction,
                     rule=f"thresholds/llava.yaml rules[{layer}]" if gated else None,
                     replicates=tuple(value + 0.001 * i for i in range(200)) if head is None else None)


def a_32_layer_run_with_a_baseline() -> ReportCard:
    """One 32-layer model on three benchmarks: every pooled and per-head (32 KV heads) row the gate writes,
    its blessed bounds, and a change against a --bias-baseline card for every pooled metric."""
    metrics = [*KEYSPACE_METRICS, *(f"{name}.{query}" for name in ATTENTION_METRICS for query in QUERY_SETS)]
    record = RunRecord(settings={"n_samples": 16, "max_tokens_per_modality": 64, "seed": 0})
    for benchmark, layer in itertools.product(BENCHMARKS, LAYERS):
        record.rows += [_row(benchmark, layer, metric) for metric in metrics]
        record.rows += [_row(benchmark, layer, metric, head) for metric in KEYSPACE_METRICS for head in range(32)]
    record.changes = [Change(MODEL, "/checkpoints/llava-1.5-7b-v1", row.benchmark, row.layer, row.metric, 0.01,
                             (0.0, 0.02), "pass" if row.metric in BLESSED else "unchecked",
                             0.05 if row.metric in BLESSED else None, against="baseline", baseline_value=row.value,
                             value=row.value + 0.01) for row in record.rows if row.head is None]
    record.models = {MODEL: ModelRecord(MODEL, "llava", None, 32, "0" * 16)}
    record.benchmarks = {name: BenchmarkRecord(name, 16, "0123456789abcdef") for name in BENCHMARKS}
    record.thresholds = {MODEL: GatedBy(MODEL, "thresholds/llava.yaml", "thresholds/llava.yaml", 4, "name", True,
                                        False, "llava")}
    record.environments = [{"python": "3.11", "torch": "2.14.1", "transformers": "5.25.0"}]
    return ReportCard.build(record, changes=record.changes, reports=("card.md", "card.html", "card.json"))


def test_the_markdown_card_of_a_32_layer_run_with_a_baseline_stays_under_the_limit():
    card = a_32_layer_run_with_a_baseline()
    markdown = card.to_markdown()
    assert len(card.rows) > 10_000 and len(card.changes) > 2_000  # the size that overflowed a PR comment before
    assert len(markdown) <= MARKDOWN_LIMIT <= 60_000
    lines = markdown.splitlines()
    assert lines[2].startswith("- **FAIL** · ")  # the verdict first
    assert "see them in card.html and card.json" in markdown  # what was left out, and where it is
    worst = markdown.split("Worst rows", 1)[1].split("\n\n", 2)[1]
    assert 1 < worst.count("\n| ") <= 11  # at most ten rows under the header


def test_a_card_that_cannot_fit_even_its_verdicts_is_cut_and_says_where_the_rest_is():
    markdown = a_32_layer_run_with_a_baseline().to_markdown(limit=1_500)
    assert len(markdown) <= 1_500
    assert markdown.rstrip().endswith("the whole card is in card.html and card.json.*")
