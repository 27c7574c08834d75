"""What a gate run records about its models, benchmarks and threshold files, besides the rows.

Frozen and serialisable (``to_json`` / ``from_json``): they travel from the process that measured a case to
the controller (pytest-xdist), and their ``to_json`` is exactly what the JSON card writes under
``models``, ``benchmarks`` and ``thresholds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from bias_suite.vocabulary import Verdict


@dataclass(frozen=True)
class ModelRecord:
    """A model as the card names it."""

    spec: str  # as the user gave it
    model_type: str
    revision: str | None
    n_layers: int  # decoder layers
    config_hash: str
    incomplete_weights: tuple[str, ...] = ()  # loaded with --allow-incomplete-weights: filled at random

    def to_json(self) -> dict:
        return {**asdict(self), "incomplete_weights": list(self.incomplete_weights)}

    @classmethod
    def from_json(cls, data: Mapping) -> ModelRecord:
        return cls(data["spec"], data["model_type"], data.get("revision"), data["n_layers"], data["config_hash"],
                   tuple(data.get("incomplete_weights") or ()))


@dataclass(frozen=True)
class BenchmarkRecord:
    """The samples a benchmark yielded: how many and their content hash."""

    name: str
    n_samples: int
    hash: str
    n_rows: int | None = None  # items the benchmark holds; only n_samples of them were decoded and measured

    def to_json(self) -> dict:
        data = asdict(self)
        if self.n_rows is None:
            data.pop("n_rows")
        return data

    @property
    def described(self) -> str:
        """``shapes (16 samples, 3f2a…)``, or ``my.tsv (4 of 8 rows, 3f2a…; the other rows were not read)``."""
        if self.n_rows is not None and self.n_rows > self.n_samples:
            return (f"{self.name} ({self.n_samples} of {self.n_rows} rows, a seeded subset, {self.hash}; the other "
                    "rows were not decoded or checked)")
        return f"{self.name} ({self.n_samples} samples, {self.hash})"

    @classmethod
    def from_json(cls, data: Mapping) -> BenchmarkRecord:
        return cls(data["name"], data["n_samples"], data["hash"], data.get("n_rows"))


@dataclass(frozen=True)
class GatedBy:
    """Which threshold file gated a model and how it was chosen."""

    model: str
    file: str  # path as displayed (relative to the working directory when below it)
    label: str  # how the card names the file ("packaged default.yaml" for the package's own)
    version: int
    matched_by: str  # name, model_type, file, default or packaged default
    baselined: bool  # bounds measured on the model's family (declared or named; not generic or provisional ones)
    provisional: bool
    family: str | None = None
    sanity: str | None = None  # the generic bounds that also judged the model, when another file
    considered: tuple[str, ...] = ()  # every file looked at, and why it did not (or did) gate the model
    baseline_card: str | None = None  # the blessed run its changes were paired with

    def to_json(self) -> dict:
        return {**asdict(self), "considered": list(self.considered)}

    @classmethod
    def from_json(cls, data: Mapping) -> GatedBy:
        return cls(data["model"], data["file"], data["label"], data["version"], data["matched_by"],
                   bool(data["baselined"]), bool(data["provisional"]), data.get("family"), data.get("sanity"),
                   tuple(data.get("considered") or ()), data.get("baseline_card"))


@dataclass(frozen=True)
class KeyProjection:
    """Pre-RoPE keys of one layer in two dimensions for the card's scatter plots: per method (``pca``,
    ``tsne``) and modality (``image``, ``text``), a list of ``[x, y]`` points."""

    model: str
    benchmark: str
    layer: int
    points: Mapping[str, Mapping[str, list[list[float]]]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"model": self.model, "benchmark": self.benchmark, "layer": self.layer, **self.points}

    @classmethod
    def from_json(cls, data: Mapping) -> KeyProjection:
        methods = {key: value for key, value in data.items() if key not in ("model", "benchmark", "layer")}
        return cls(data["model"], data["benchmark"], data["layer"], methods)


@dataclass(frozen=True)
class ModelVerdict:
    """A model's verdict with what decided it: the lines that are not a pass, worst first, and — for NO
    BASELINE and INCONCLUSIVE — what to do about it. ``verdict`` None: the reference (measured, not judged)."""

    model: str
    verdict: Verdict | None
    reasons: tuple[str, ...] = ()
    fix: str = ""

    @property
    def label(self) -> str:
        return "REFERENCE" if self.verdict is None else self.verdict.value

    def to_json(self) -> dict:
        return {"model": self.model, "verdict": self.label, "reasons": list(self.reasons), "fix": self.fix}

    @classmethod
    def from_json(cls, data: Mapping) -> ModelVerdict:
        label = data["verdict"]
        return cls(data["model"], None if label == "REFERENCE" else Verdict(label), tuple(data.get("reasons", ())),
                   data.get("fix", ""))
