"""Deterministic shards of a gate run, and what each shard's card carries so that a merge can prove it whole.

A run's **cells** are its (model × benchmark) pairs, the reference of ``--bias-reference`` included; every case
of a cell (each layer, each kind) stays in the cell's shard. ``--bias-shard=K/N`` keeps the cells
``sorted(cells)[K-1::N]``: the same whatever order ``--model`` and ``--benchmark`` were given in, shard sizes
differ by at most one, and the N shards together hold every cell once. A candidate's paired changes against
the reference need the reference measured in the same process, so each shard measures it where a candidate
of the shard needs it (the reference's own rows come from the shard that holds its cells).

Each shard's JSON card carries a :class:`ShardRecord` under ``"shard"``: the :class:`ShardManifest` (every
cell and case of the run, the options that decide its rows and verdicts, the benchmarks' content hashes, the
suite version, hashed), the shard's own cells, and every :class:`~bias_suite.run.records.CaseEntry` its
controller recorded — what :mod:`bias_suite.run.merge` replays through ``RunRecord.add`` and ``finish_run``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from bias_suite import __version__
from bias_suite.errors import ShardError
from bias_suite.models.loading import SpecDescription
from bias_suite.options import RunSettings, shard_numbers
from bias_suite.run.records import Case, CaseEntry

Cell = tuple[str, str]  # (model spec, benchmark name or path)


def run_cells(models: Sequence[str], benchmarks: Sequence[str]) -> tuple[Cell, ...]:
    """Every (model, benchmark) cell of a run, sorted: the order of the options does not matter."""
    return tuple(sorted({(model, benchmark) for model in models for benchmark in benchmarks}))


def shard_cells(cells: Sequence[Cell], index: int, count: int) -> tuple[Cell, ...]:
    """The cells of shard ``index`` of ``count`` (1-based): dealt round-robin over the sorted cells."""
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: need 1 <= K <= N")
    return tuple(sorted(cells))[index - 1::count]


@dataclass(frozen=True)
class GateOptions:
    """The options of a gate run that decide its cases, rows, verdicts and card: what every shard of one run
    must share (``--model``, ``--benchmark``, the run settings, ``--thresholds``, ``--family``,
    ``--bias-reference``, ``--bias-baseline``, ``--strict-env``, ``--allow-unbaselined``)."""

    models: tuple[str, ...]
    benchmarks: tuple[str, ...]
    settings: RunSettings
    thresholds: str  # the threshold location as the run used it
    families: Mapping[str, str] = field(default_factory=dict)  # --family: spec (or "*") → family
    reference: str | None = None
    baseline: str | None = None
    strict_env: bool = False
    allow_unbaselined: bool = False

    def to_json(self) -> dict:
        return {"models": list(self.models), "benchmarks": list(self.benchmarks), "settings": asdict(self.settings),
                "thresholds": self.thresholds, "families": dict(sorted(self.families.items())),
                "reference": self.reference, "baseline": self.baseline, "strict_env": self.strict_env,
                "allow_unbaselined": self.allow_unbaselined}

    @classmethod
    def from_json(cls, data: Mapping) -> GateOptions:
        return cls(tuple(data["models"]), tuple(data["benchmarks"]), RunSettings(**data["settings"]),
                   data["thresholds"], dict(data.get("families") or {}), data.get("reference"), data.get("baseline"),
                   bool(data.get("strict_env")), bool(data.get("allow_unbaselined")))

    def canonical(self) -> dict:
        """As :meth:`to_json`, with the order of repeatable options left out."""
        return {**self.to_json(), "models": sorted(self.models), "benchmarks": sorted(self.benchmarks)}


@dataclass(frozen=True)
class ModelPlan:
    """What a model's config says about it, as the run described it (no weights): enough to select its
    threshold file and to list its cases again where the model itself is out of reach."""

    spec: str
    model_type: str
    n_layers: int
    attention_layers: tuple[int, ...]

    @property
    def description(self) -> SpecDescription:
        return SpecDescription(self.model_type, self.n_layers, self.attention_layers)

    def to_json(self) -> dict:
        return {"spec": self.spec, "model_type": self.model_type, "n_layers": self.n_layers,
                "attention_layers": list(self.attention_layers)}

    @classmethod
    def from_json(cls, data: Mapping) -> ModelPlan:
        return cls(data["spec"], data["model_type"], int(data["n_layers"]), tuple(data["attention_layers"]))


@dataclass(frozen=True)
class ShardManifest:
    """The whole run a shard belongs to: every cell and case, the options, the benchmarks' content hashes and
    the suite version. ``digest`` hashes all of it except the order of cases and of repeatable options, so
    shards run with ``--model A --model B`` and ``--model B --model A`` belong to the same run."""

    count: int
    cells: tuple[Cell, ...]
    cases: tuple[Case, ...]  # in the order an unsharded run measures (and its controller records) them
    options: GateOptions
    benchmark_hashes: Mapping[str, str]  # benchmark → content hash of the samples the run draws
    models: tuple[ModelPlan, ...]
    suite_version: str = __version__

    def canonical(self) -> dict:
        return {"count": self.count, "cells": [list(cell) for cell in sorted(self.cells)],
                "cases": sorted(json.dumps(case.to_json(), sort_keys=True) for case in self.cases),
                "options": self.options.canonical(), "benchmark_hashes": dict(sorted(self.benchmark_hashes.items())),
                "models": sorted((model.to_json() for model in self.models), key=lambda model: model["spec"]),
                "suite_version": self.suite_version}

    @property
    def digest(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def cases_of(self, cells: Sequence[Cell]) -> tuple[Case, ...]:
        """The manifest's cases in ``cells``, in the manifest's order."""
        wanted = set(cells)
        return tuple(case for case in self.cases if (case.model, case.benchmark) in wanted)

    def differences(self, other: ShardManifest) -> list[str]:
        """What differs between two manifests, key by key (empty when they describe the same run)."""
        mine, theirs = self.canonical(), other.canonical()
        found = []
        for key in mine:
            if key == "options":
                found += [f"{name}: {json.dumps(value)} vs {json.dumps(theirs[key].get(name))}"
                          for name, value in mine[key].items() if theirs[key].get(name) != value]
            elif mine[key] != theirs[key]:
                found.append(key if key in ("cases", "models", "cells") else
                             f"{key}: {json.dumps(mine[key])} vs {json.dumps(theirs[key])}")
        return found

    def to_json(self) -> dict:
        return {"count": self.count, "cells": [list(cell) for cell in self.cells],
                "cases": [case.to_json() for case in self.cases], "options": self.options.to_json(),
                "benchmark_hashes": dict(self.benchmark_hashes), "models": [model.to_json() for model in self.models],
                "suite_version": self.suite_version, "hash": self.digest}

    @classmethod
    def from_json(cls, data: Mapping, source: str = "the card") -> ShardManifest:
        manifest = cls(int(data["count"]), tuple(tuple(cell) for cell in data["cells"]),
                       tuple(Case.from_json(case) for case in data["cases"]), GateOptions.from_json(data["options"]),
                       dict(data["benchmark_hashes"]), tuple(ModelPlan.from_json(m) for m in data["models"]),
                       data["suite_version"])
        if data.get("hash") != manifest.digest:
            raise ShardError(f"{source}: its shard manifest does not match its hash (the card was edited or "
                             "damaged): run the shard again")
        return manifest


@dataclass(frozen=True)
class ShardRecord:
    """What one shard's JSON card carries for a merge: its place in the run and everything its controller
    recorded, entry by entry."""

    index: int  # 1-based: shard K of manifest.count
    manifest: ShardManifest
    entries: tuple[CaseEntry, ...]
    other_failures: int = 0
    interrupted: bool = False

    @property
    def label(self) -> str:
        return f"{self.index}/{self.manifest.count}"

    @property
    def cells(self) -> tuple[Cell, ...]:
        return shard_cells(self.manifest.cells, self.index, self.manifest.count)

    def to_json(self) -> dict:
        return {"index": self.index, "count": self.manifest.count, "cells": [list(cell) for cell in self.cells],
                "manifest": self.manifest.to_json(), "entries": [entry.to_json() for entry in self.entries],
                "other_failures": self.other_failures, "interrupted": self.interrupted}

    @classmethod
    def from_json(cls, data: Mapping, source: str = "the card") -> ShardRecord:
        manifest = ShardManifest.from_json(data["manifest"], source)
        record = cls(int(data["index"]), manifest, tuple(CaseEntry.from_json(entry) for entry in data["entries"]),
                     int(data.get("other_failures", 0)), bool(data.get("interrupted", False)))
        if not 1 <= record.index <= manifest.count:
            raise ShardError(f"{source}: shard {record.label} does not exist (1 <= K <= N)")
        if [tuple(cell) for cell in data.get("cells", ())] != list(record.cells):
            raise ShardError(f"{source}: shard {record.label} lists other cells than the sharding gives it")
        return record


def manifest_of(session, options: GateOptions) -> ShardManifest:
    """The manifest of a sharded :class:`~bias_suite.run.session.GateSession`'s run (every cell and case)."""
    _, count = shard_numbers(session.shard)
    models = tuple(ModelPlan(spec, described.model_type, described.n_layers, tuple(described.attention_layers))
                   for spec in session.models for described in [session.spec_description(spec)])
    return ShardManifest(count, session.cells(), tuple(session.all_cases()), options,
                         {name: session.benchmark(name).content_hash for name in session.benchmark_names}, models)


def shard_record(session, entries: Sequence[CaseEntry], options: GateOptions, other_failures: int = 0,
                 interrupted: bool = False) -> ShardRecord:
    """What the shard's card carries: its manifest and the entries of its controller's ``RunRecord``."""
    index, _ = shard_numbers(session.shard)
    return ShardRecord(index, manifest_of(session, options), tuple(entries), other_failures, interrupted)
