"""What crosses the process boundary of a gate run is typed and survives JSON unchanged."""

from __future__ import annotations

import dataclasses
import json

from bias_suite.gate.records import BenchmarkRecord, GatedBy, KeyProjection, ModelRecord
from bias_suite.gate.rows import ResultRow
from bias_suite.metrics.samples import LayerMeasures, SampleRecord
from bias_suite.run.records import Case, CaseRecord
from bias_suite.vocabulary import CaseKind, Status


def a_record(projection: KeyProjection | None) -> CaseRecord:
    case = Case("ckpts/ours-v2", "data/my set.jsonl", 3, CaseKind.KEYSPACE)
    rows = (ResultRow("ckpts/ours-v2", "data/my set.jsonl", 3, None, "mmd2", 0.25, (0.2, 0.3), Status.FAIL,
                      bound=0.1, direction="higher_is_worse", rule="ours.yaml rules[0]", replicates=(0.24, 0.26)),
            ResultRow("ckpts/ours-v2", "data/my set.jsonl", 3, 1, "jsd", 0.5, None, "unchecked"))
    return CaseRecord(case, rows, ModelRecord("ckpts/ours-v2", "llava", None, 4, "0123", ("lm_head.weight",)),
                      BenchmarkRecord("data/my set.jsonl", 8, "abcd"),
                      GatedBy("ckpts/ours-v2", "thresholds/ours.yaml", "thresholds/ours.yaml", 2, "name", True, False,
                              "ours"),
                      {"torch": "2.14.1"}, {"n_samples": 8, "max_tokens_per_modality": 64, "seed": 0}, projection)


def test_a_case_record_survives_json_and_keeps_its_types():
    for projection in (None, KeyProjection("ckpts/ours-v2", "data/my set.jsonl", 3,
                                           {"pca": {"image": [[0.0, 1.0]], "text": [[1.0, 0.0]]}})):
        record = a_record(projection)
        back = CaseRecord.from_json(json.loads(json.dumps(record.to_json())))
        assert back == record
        assert back.case.kind is CaseKind.KEYSPACE and back.rows[0].status is Status.FAIL
        assert back.rows[0].replicates == (0.24, 0.26)


def test_statuses_and_kinds_are_written_as_plain_words():
    data = a_record(None).to_json()
    assert data["case"]["kind"] == "keyspace" and type(data["case"]["kind"]) is str
    assert [row["status"] for row in data["rows"]] == ["fail", "unchecked"]
    assert all(type(row["status"]) is str for row in data["rows"])


def test_a_case_is_named_by_model_benchmark_stem_and_layer():
    assert Case("tiny-llava", "data/my set.jsonl", 3, "keyspace").id == "tiny-llava-my set-L3"
    assert Case("tiny-llava", "conflict", None, CaseKind.BEHAVIOUR).id == "tiny-llava-conflict"
    assert CaseKind.BEHAVIOUR.test_name == "text_preference"


def test_a_behaviour_case_carries_its_per_sample_records_as_plain_json():
    sample = SampleRecord("ckpts/ours-v2", "paired-images", "paired-images/0001-count", 16,
                          (("margin", 1.5), ("trap_margin", float("nan")), ("pair_correct", 1.0)),
                          (LayerMeasures(3, 0.4, 0.45, 0.2, -0.3, 0.05, 1.7),))
    record = dataclasses.replace(a_record(None), case=Case("ckpts/ours-v2", "paired-images", None, CaseKind.BEHAVIOUR),
                                 sample_records=(sample,))
    data = json.loads(json.dumps(record.to_json(), allow_nan=False))
    assert data["sample_records"][0]["outcomes"] == {"margin": 1.5, "trap_margin": None, "pair_correct": 1.0}
    assert CaseRecord.from_json(data).to_json() == record.to_json()
    assert a_record(None).to_json()["sample_records"] == []
