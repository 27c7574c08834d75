"""What crosses the boundary between the processes of a gate run: a case, and what measuring it recorded.

Both are frozen and serialisable (``to_json`` / ``from_json``, plain JSON types only), because under
pytest-xdist a case is measured in a worker and its record travels to the controller as an attribute of
the test report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bias_suite.gate.changes import Change
from bias_suite.gate.records import BenchmarkRecord, GatedBy, KeyProjection, ModelRecord
from bias_suite.gate.rows import ResultRow
from bias_suite.metrics.samples import SampleRecord
from bias_suite.vocabulary import CaseKind, Status, Verdict


@dataclass(frozen=True)
class Case:
    """One gate item: a model × benchmark × layer (``layer`` None for behaviour cases)."""

    model: str
    benchmark: str
    layer: int | None
    kind: CaseKind

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", CaseKind(self.kind))

    @property
    def id(self) -> str:
        """``MODEL-BENCHMARK[-L3]`` (a benchmark file by its stem), the item's parameter id."""
        benchmark = (self.benchmark if "/" not in self.benchmark and "\\" not in self.benchmark
                     else Path(self.benchmark).stem)
        return f"{self.model}-{benchmark}" + (f"-L{self.layer}" if self.layer is not None else "")

    @property
    def key(self) -> tuple[str, str, int | None, CaseKind]:
        return (self.model, self.benchmark, self.layer, self.kind)

    def to_json(self) -> dict:
        return {"model": self.model, "benchmark": self.benchmark, "layer": self.layer, "kind": self.kind.value}

    @classmethod
    def from_json(cls, data: Mapping) -> Case:
        return cls(data["model"], data["benchmark"], data["layer"], CaseKind(data["kind"]))


@dataclass(frozen=True)
class CaseRecord:
    """Everything one measured case hands to the controller: its judged rows and paired changes, its
    verdict, and what the card says about the model, the benchmark, the threshold file, the environment and
    the settings.

    settings: the comparability key the case was measured with (``RunSettings.recorded()`` plus dtype,
    attention backend, processor image settings, torch and transformers major.minor); covered: whether
    something that baselines the model (its family file, its blessed run, a reference) judged the case;
    sample_records: a behaviour case's per-sample outcomes and per-layer internals
    (:class:`~bias_suite.metrics.samples.SampleRecord`)."""

    case: Case
    rows: tuple[ResultRow, ...]
    model: ModelRecord
    benchmark: BenchmarkRecord
    gated_by: GatedBy
    environment: Mapping[str, str]
    settings: Mapping[str, object]
    projection: KeyProjection | None = field(default=None)
    changes: tuple[Change, ...] = ()
    verdict: Verdict = Verdict.NO_BASELINE
    message: str = ""
    covered: bool = False
    sample_records: tuple[SampleRecord, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))

    @property
    def regression(self) -> bool:
        """What a bless must not accept silently: a failed or errored row or change, or a change whose
        interval straddles its tolerance (it may be a regression)."""
        bad = (Status.FAIL, Status.ERROR)
        return any(row.status in bad for row in self.rows) or any(
            change.status in bad or change.straddles for change in self.changes)

    def to_json(self) -> dict:
        return {"case": self.case.to_json(), "rows": [row.to_json() for row in self.rows],
                "model": self.model.to_json(), "benchmark": self.benchmark.to_json(),
                "gated_by": self.gated_by.to_json(), "environment": dict(self.environment),
                "settings": dict(self.settings),
                "projection": None if self.projection is None else self.projection.to_json(),
                "changes": [change.to_json() for change in self.changes], "verdict": self.verdict.value,
                "message": self.message, "covered": self.covered,
                "sample_records": [record.to_json() for record in self.sample_records]}

    @classmethod
    def from_json(cls, data: Mapping) -> CaseRecord:
        return cls(Case.from_json(data["case"]), tuple(ResultRow.from_json(row) for row in data["rows"]),
                   ModelRecord.from_json(data["model"]), BenchmarkRecord.from_json(data["benchmark"]),
                   GatedBy.from_json(data["gated_by"]), dict(data["environment"]), dict(data["settings"]),
                   None if data.get("projection") is None else KeyProjection.from_json(data["projection"]),
                   tuple(Change.from_json(change) for change in data.get("changes", ())),
                   Verdict(data.get("verdict", Verdict.NO_BASELINE.value)), data.get("message", ""),
                   bool(data.get("covered", False)),
                   tuple(SampleRecord.from_json(record) for record in data.get("sample_records", ())))


@dataclass(frozen=True)
class CaseEntry:
    """One test report of a gate item as the controller added it to its :class:`~bias_suite.run.finish.RunRecord`
    (``record`` when the case got that far; ``failed`` and ``reason`` when it did not pass). A shard's card
    keeps every entry, so that a merge replays ``RunRecord.add`` exactly as an unsharded controller did."""

    case: Case
    record: CaseRecord | None
    failed: bool = False
    reason: str = ""

    def to_json(self) -> dict:
        return {"case": self.case.to_json(), "record": None if self.record is None else self.record.to_json(),
                "failed": self.failed, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping) -> CaseEntry:
        record = data.get("record")
        return cls(Case.from_json(data["case"]), None if record is None else CaseRecord.from_json(record),
                   bool(data.get("failed", False)), data.get("reason", ""))
