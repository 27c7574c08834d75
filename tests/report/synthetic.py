"""A small, fully synthetic, deterministic run for the report card's golden and rendering tests.

Two models (one a checkpoint path with a ``|`` in it, to check Markdown escaping) × two benchmarks
(``photos``: layers 0–2, ``conflict``: layers 0–1 and a behaviour metric), pooled rows of the card
metrics, per-head rows of the key-space metrics (2 KV heads), gated ``mmd2`` rows that pass, warn and
fail, a gated row that could not be computed, a case that died before recording (metric ``*``),
changes against a baseline, PCA and t-SNE points, per-sample records with their coupling rows, and
problem / drift / update lines. Every number is
a closed-form function of its position, so the card is the same on every machine.
"""

from __future__ import annotations

import math
from dataclasses import replace

from bias_suite.gate.changes import Change
from bias_suite.gate.records import BenchmarkRecord, GatedBy, KeyProjection, ModelRecord, ModelVerdict
from bias_suite.gate.rows import ResultRow
from bias_suite.metrics.registry import HIGHER_IS_WORSE, LOWER_IS_WORSE
from bias_suite.metrics.samples import LayerMeasures, SampleRecord
from bias_suite.report.card import ReportCard
from bias_suite.run.finish import RunRecord
from bias_suite.vocabulary import Verdict

GOLDEN_VERSION = "0.0.0+golden"  # the suite version golden cards print, whatever is installed

PIPE_MODEL = "/ckpt/vlm|v2"
MODELS = ("tiny-llava", PIPE_MODEL)
LAYERS = {"photos": (0, 1, 2), "conflict": (0, 1)}
HEADS = (0, 1)
CREATED = "2025-01-02T03:04:05+00:00"
RULE = "thresholds/tiny-llava.yaml rules[0]"
MMD2_BOUND = 0.3
# (model, benchmark, layer) → (mmd2 value, its interval): one fails, one warns, the rest pass
GATED_MMD2 = {("tiny-llava", "photos", 0): (0.12, (0.08, 0.16)),
              ("tiny-llava", "photos", 1): (0.32, (0.25, 0.39)),   # warn: only the point estimate beyond
              ("tiny-llava", "photos", 2): (0.45, (0.36, 0.54))}   # fail: the whole interval beyond


def _pooled(model_index: int, model: str, benchmark: str, layer: int) -> list[ResultRow]:
    base = 0.1 + 0.15 * layer + 0.05 * model_index + (0.1 if benchmark == "conflict" else 0.0)
    rows = [
        ResultRow(model, benchmark, layer, None, "jsd", round(base, 4), (round(base - 0.05, 4), round(base + 0.05, 4)),
                  "unchecked", direction=HIGHER_IS_WORSE),
        ResultRow(model, benchmark, layer, None, "ratio", 1000.0 if layer == 0 else round(1.5 + layer, 4),
                  (40.0, 1000.0) if layer == 0 else (round(1.2 + layer, 4), round(1.9 + layer, 4)), "unchecked",
                  direction=HIGHER_IS_WORSE),
        ResultRow(model, benchmark, layer, None, "logit_gap.question", round(0.002 * (layer - 1), 5),
                  (round(0.002 * (layer - 1) - 0.001, 5), round(0.002 * (layer - 1) + 0.001, 5)), "pass", bound=10.0,
                  direction=HIGHER_IS_WORSE, rule="thresholds/tiny-llava.yaml rules[1]"),
        ResultRow(model, benchmark, layer, None, "visual_share.question", round(0.55 - 0.1 * model_index, 4),
                  (round(0.52 - 0.1 * model_index, 4), round(0.58 - 0.1 * model_index, 4)), "unchecked",
                  direction=LOWER_IS_WORSE),
    ]
    gated = GATED_MMD2.get((model, benchmark, layer))
    if gated is not None:
        value, ci = gated
        status = "fail" if ci[0] > MMD2_BOUND else "warn" if value > MMD2_BOUND else "pass"
        rows.append(ResultRow(model, benchmark, layer, None, "mmd2", value, ci, status, bound=MMD2_BOUND,
                              direction=HIGHER_IS_WORSE, rule=RULE, replicates=(value - 0.01, value, value + 0.01),
                              detectable=round(1.4 * (ci[1] - ci[0]) / 2, 4)))
    elif (model, benchmark, layer) == (PIPE_MODEL, "photos", 2):
        rows.append(ResultRow(model, benchmark, layer, None, "mmd2", float("nan"), None, "error", bound=MMD2_BOUND,
                              direction=HIGHER_IS_WORSE, rule="default.yaml rules[0]",
                              message="mmd2 could not be computed (NaN or inf)"))
    else:
        value = round(base * 0.8, 4)
        rows.append(ResultRow(model, benchmark, layer, None, "mmd2", value,
                              (round(value - 0.03, 4), round(value + 0.03, 4)),
                              "unchecked", direction=HIGHER_IS_WORSE))
    return rows


def _per_head(model_index: int, model: str, benchmark: str, layer: int) -> list[ResultRow]:
    rows = []
    for head in HEADS:
        shade = round(0.05 + 0.1 * layer + 0.2 * head + 0.03 * model_index, 4)
        rows += [ResultRow(model, benchmark, layer, head, "mmd2", shade, None, "unchecked", direction=HIGHER_IS_WORSE),
                 ResultRow(model, benchmark, layer, head, "jsd", round(min(1.0, 2 * shade), 4), None, "unchecked",
                           direction=HIGHER_IS_WORSE),
                 ResultRow(model, benchmark, layer, head, "ratio", 1000.0 if head == 0 else round(1 + layer, 4), None,
                           "unchecked", direction=HIGHER_IS_WORSE),
                 ResultRow(model, benchmark, layer, head, "auroc", round(0.5 + shade / 2, 4), None, "unchecked",
                           direction=HIGHER_IS_WORSE)]
    return rows


def _points(centre: tuple[float, float], radius: float, n: int, phase: float) -> list[list[float]]:
    return [[round(centre[0] + radius * math.cos(phase + 2 * math.pi * i / n) * (1 + 0.1 * (i % 3)), 5),
             round(centre[1] + radius * math.sin(phase + 2 * math.pi * i / n), 5)] for i in range(n)]


def _projection(model: str, benchmark: str, layer: int) -> KeyProjection:
    return KeyProjection(model, benchmark, layer, {
        "pca": {"image": _points((-2.0, 0.5), 1.0, 12, 0.1), "text": _points((2.0, -0.5), 1.5, 10, 0.3)},
        "tsne": {"image": _points((-10.0, 0.0), 4.0, 12, 0.2), "text": _points((10.0, 3.0), 6.0, 10, 0.4)}})


def synthetic_record() -> RunRecord:
    record = RunRecord(settings={"n_samples": 6, "max_tokens_per_modality": 64, "seed": 0})
    for index, model in enumerate(MODELS):
        for benchmark, layers in LAYERS.items():
            for layer in layers:
                if (model, benchmark, layer) == (PIPE_MODEL, "conflict", 1):
                    record.rows.append(ResultRow(model, benchmark, layer, None, "*", None, None, "error",
                                                 message="RuntimeError: CUDA out of memory"))
                    continue
                record.rows += _pooled(index, model, benchmark, layer) + _per_head(index, model, benchmark, layer)
        record.rows.append(ResultRow(model, "conflict", None, None, "text_preference_rate", 0.5 + 0.25 * index,
                                     (0.25 + 0.25 * index, 0.75 + 0.25 * index), "pass" if index == 0 else "unchecked",
                                     bound=0.95 if index == 0 else None, direction=HIGHER_IS_WORSE,
                                     rule="thresholds/tiny-llava.yaml rules[2]" if index == 0 else None,
                                     detectable=0.35 if index == 0 else None))
    record.models = {
        "tiny-llava": ModelRecord("tiny-llava", "llava", "0123abcd", 3, "26e5bea0f5aef415"),
        PIPE_MODEL: ModelRecord(PIPE_MODEL, "qwen2_vl", None, 3, "9f8e7d6c5b4a3210",
                                ("lm_head.weight", "model.norm.weight")),
    }
    record.benchmarks = {"photos": BenchmarkRecord("photos", 6, "3e3d77d7abc781b8"),
                         "conflict": BenchmarkRecord("conflict", 6, "c57c8b8274d8e0b2")}
    record.thresholds = {
        "tiny-llava": GatedBy("tiny-llava", "thresholds/tiny-llava.yaml", "thresholds/tiny-llava.yaml", 3, "model name",
                              baselined=True, provisional=False, family=None),
        PIPE_MODEL: GatedBy(PIPE_MODEL, "bias_suite/data/default.yaml", "packaged default.yaml", 2, "packaged default",
                            baselined=False, provisional=True, family="default"),
    }
    record.environments = [{"python": "3.11.7", "torch": "2.4.1", "transformers": "5.24.0", "device": "cpu",
                            "dtype": "float32", "attn_implementation": "sdpa"}]
    record.projections = [_projection(model, "photos", layer) for model in MODELS for layer in (0, 2)]
    record.samples = [SampleRecord("tiny-llava", "conflict", f"conflict/{i:04d}", 16,
                                   (("margin", 1.5 - i), ("correct", float(i < 2)), ("trap_margin", math.nan)),
                                   tuple(LayerMeasures(layer, 0.5 - 0.05 * i, 0.4, 0.1 * i + layer, 0.0, 0.1, 2.0 + i)
                                         for layer in LAYERS["conflict"])) for i in range(3)]
    record.rows += [ResultRow("tiny-llava", "conflict", layer, None, f"{measure}_coupling", value,
                              (value - 0.3, value + 0.3), "unchecked") for layer in LAYERS["conflict"]
                    for measure, value in (("visual_share", 0.5), ("visual_share_nosink", 0.25), ("logit_gap", -0.5),
                                           ("key_distance", -0.75))]
    return record


def synthetic_changes() -> list[Change]:
    blessed = "thresholds/tiny-llava.yaml rules[4]"
    return [
        Change("tiny-llava", "tiny-llava-v1", "photos", 1, "mmd2", 0.02, (0.01, 0.03), "pass", 0.05, blessed,
               "blessed", 0.30, 0.32, detectable=0.014),
        Change("tiny-llava", "tiny-llava-v1", "photos", 2, "mmd2", 0.09, (0.07, 0.11), "fail", 0.05, blessed,
               "blessed", 0.36, 0.45, detectable=0.028),
        Change("tiny-llava", "tiny-llava-v1", "photos", 0, "mmd2", 0.04, (0.02, 0.06), "inconclusive", 0.05, blessed,
               "blessed", 0.08, 0.12, "the interval [0.02, 0.06] straddles the tolerance 0.05", detectable=0.028),
        Change("tiny-llava", "tiny-llava-v1", "photos", 0, "jsd", -0.0, (-0.0, 0.0), "unchecked", against="blessed",
               baseline_value=0.1, value=0.1),
        Change(PIPE_MODEL, "base<b>model", "conflict", 0, "ratio", 1234.5, (999.9999, 1500.0), "unchecked",
               against="reference", baseline_value=10.0, value=1244.5),
    ]


def synthetic_verdicts() -> dict[str, ModelVerdict]:
    return {
        "tiny-llava": ModelVerdict("tiny-llava", Verdict.FAIL, (
            "FAIL: tiny-llava photos L2 mmd2 = 0.45 [0.36, 0.54] thresholds/tiny-llava.yaml rules[0]: ≤ 0.3",
            "INCONCLUSIVE: tiny-llava photos L0 mmd2: 0.08 → 0.12 (change +0.04 [+0.02, +0.06]) against blessed "
            "tiny-llava-v1, tolerance 0.05 (thresholds/tiny-llava.yaml rules[4]) the interval straddles it")),
        PIPE_MODEL: ModelVerdict(PIPE_MODEL, Verdict.NO_BASELINE, ("no baseline judged: photos L0 (keyspace)",),
                                 "bless the checkpoint /ckpt/vlm|v2 must not be worse than"),
        "base<b>model": ModelVerdict("base<b>model", None),
    }


def synthetic_card(record: RunRecord | None = None) -> ReportCard:
    card = ReportCard.build(
        record or synthetic_record(),
        drift=["tiny-llava: torch 2.4.1, thresholds made with 2.3.0"],
        updates=["thresholds/tiny-llava.yaml v3 → v4 (reason: new tokenizer)"],
        problems=[f"{PIPE_MODEL}: rules[3] (mmd2, layers 7–9) matches no layer of this model"],
        changes=synthetic_changes(), not_baselined=[PIPE_MODEL], verdicts=synthetic_verdicts(),
        reports=("card.md", "card.html", "card.json"),
    )
    return replace(card, created=CREATED)
