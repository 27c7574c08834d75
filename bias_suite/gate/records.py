"""What a gate run records about its models, benchmarks and threshold files, besides the rows.

Frozen and serialisable (``to_json`` / ``from_json``): they travel from the process that measured a case to
the controller (pytest-xdist), and their ``to_json`` is exactly what the JSON card writes under
``models``, ``benchmarks`` and ``thresholds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field


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

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> BenchmarkRecord:
        return cls(data["name"], data["n_samples"], data["hash"])


@dataclass(frozen=True)
class GatedBy:
    """Which threshold file gated a model and how it was chosen."""

    model: str
    file: str  # path as displayed (relative to the working directory when below it)
    label: str  # how the card names the file ("packaged default.yaml" for the package's own)
    version: int
    matched_by: str  # name, model_type, file, default or packaged default
    baselined: bool  # bounds measured on the model's family (not generic or provisional ones)
    provisional: bool
    family: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> GatedBy:
        return cls(data["model"], data["file"], data["label"], data["version"], data["matched_by"],
                   bool(data["baselined"]), bool(data["provisional"]), data.get("family"))


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
