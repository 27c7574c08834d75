"""The measuring side of a gate run: which cases exist, and measuring them once per process.

:class:`GateSession` lives in every process that runs gate items (the controller without xdist, each
xdist worker with it). It expands the options into cases (model × benchmark × layer), loads each model
once and each benchmark once, measures through :mod:`bias_suite.measure` and judges the rows against the
model's threshold file (:mod:`bias_suite.gate`). Nothing here imports pytest.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bias_suite.benchmarks import Benchmark, load_benchmark
from bias_suite.gate import Gauge, ResultRow
from bias_suite.layers import LayerSelector
from bias_suite.loading import SpecDescription, describe_spec
from bias_suite.measure import ModelUnderTest, environment
from bias_suite.options import RunSettings
from bias_suite.thresholds import Selection, select_threshold_file

PROJECTION_LAYERS = 3  # layers per model × benchmark whose key scatter the HTML card shows
KINDS = ("keyspace", "attention", "behaviour")


@dataclass(frozen=True)
class Case:
    """One gate item: a model × benchmark × layer (plain values: it travels to xdist workers)."""

    model: str
    benchmark: str
    layer: int | None  # None for behaviour cases
    kind: str  # keyspace, attention or behaviour

    @property
    def id(self) -> str:
        benchmark = (self.benchmark if "/" not in self.benchmark and "\\" not in self.benchmark
                     else Path(self.benchmark).stem)
        return f"{self.model}-{benchmark}" + (f"-L{self.layer}" if self.layer is not None else "")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CaseResult:
    """What measuring one case produced: judged rows, and what the card needs besides them."""

    rows: list[ResultRow]
    context: dict = field(default_factory=dict)


class GateSession:
    """Per-process state of a gate run: cases, and models/benchmarks loaded at most once."""

    def __init__(self, models: Sequence[str], benchmarks: Sequence[str], settings: RunSettings,
                 thresholds: Path, worker: str | None = None, projections: bool = False):
        self.models, self.benchmark_names = tuple(dict.fromkeys(models)), tuple(dict.fromkeys(benchmarks))
        self.settings, self.thresholds_location, self.worker = settings, thresholds, worker
        self.projections = projections
        self.statistics_threads = _torch_threads()  # before measuring pins the model's own work to one thread
        self._described: dict[str, SpecDescription] = {}
        self._benchmarks: dict[str, Benchmark] = {}
        self._loaded: dict[str, ModelUnderTest] = {}
        self._selections: dict[str, Selection] = {}

    # ------------------------------------------------------------------ what the run consists of

    def spec_description(self, model: str) -> SpecDescription:
        """The model's family and layers from its config alone."""
        if model not in self._described:
            self._described[model] = describe_spec(model, self.settings.trust_remote_code)
        return self._described[model]

    def benchmark(self, name: str) -> Benchmark:
        if name not in self._benchmarks:
            self._benchmarks[name] = load_benchmark(name, n_samples=self.settings.n_samples, seed=self.settings.seed)
        return self._benchmarks[name]

    def layers(self, model: str) -> tuple[int, ...]:
        described = self.spec_description(model)
        return LayerSelector.parse(self.settings.layers).resolve(described.n_layers, model, described.attention_layers)

    def cases(self) -> list[Case]:
        """Every case of the run, in a stable order: key separation, attention share, then behaviour."""
        layer_cases = [(model, benchmark, layer) for model in self.models for benchmark in self.benchmark_names
                       for layer in self.layers(model)]
        cases = [Case(model, benchmark, layer, kind) for kind in ("keyspace", "attention")
                 for model, benchmark, layer in layer_cases]
        cases += [Case(model, benchmark, None, "behaviour")
                  for model in self.models for benchmark in self.benchmark_names
                  if self.benchmark(benchmark).has_conflicts]
        return cases

    def selection(self, spec: str) -> Selection:
        """The threshold file that gates ``spec`` and how it was chosen."""
        if spec not in self._selections:
            model_type = self.spec_description(spec).model_type
            names = [spec, os.path.basename(spec.rstrip("/"))]
            self._selections[spec] = select_threshold_file(self.thresholds_location, model_type, names)
        return self._selections[spec]

    def unreachable_rules(self, spec: str) -> list[str]:
        """Rules of the model's file whose layers the model does not have (a rule that covers nothing)."""
        return self.selection(spec).file.unreachable_rules(self.spec_description(spec).n_layers)

    # ------------------------------------------------------------------ measuring

    def model(self, spec: str) -> ModelUnderTest:
        if spec not in self._loaded:
            self._loaded[spec] = ModelUnderTest(spec, self.settings, device=self._worker_device(),
                                                statistics_threads=self.statistics_threads)
        return self._loaded[spec]

    def _worker_device(self) -> str | None:
        """Under xdist with several GPUs, worker ``gwN`` takes GPU ``N mod count``."""
        if self.worker is None or self.settings.device not in ("auto", "cuda"):
            return None
        import torch

        count = torch.cuda.device_count()
        if count < 2:
            return None
        return f"cuda:{int(self.worker.removeprefix('gw')) % count}"

    def measure(self, case: Case, progress: Callable | None = None) -> CaseResult:
        """The judged rows of one case.

        CPU work runs on one torch thread per process: torch's parallel reductions split work by thread
        count, so the model's own arithmetic would otherwise differ in the last bits between ``-n 0`` and
        ``-n 2``. The statistics use a pool of their own threads, with results that do not depend on it.
        """
        with single_cpu_thread():
            return self._measure(case, progress)

    def _measure(self, case: Case, progress: Callable | None) -> CaseResult:
        selection = self.selection(case.model)
        model = self.model(case.model)
        benchmark = self.benchmark(case.benchmark)
        measurement = model.on(benchmark, progress)
        n_layers = model.geometry.n_layers
        gauge = Gauge(selection.file, case.model, n_layers, self.settings.recorded(),
                      {case.benchmark: benchmark.content_hash})
        info = model.loaded.info
        context = {
            "model": {"spec": case.model, "model_type": info.model_type, "revision": info.revision,
                      "n_layers": n_layers,
                      "config_hash": info.config_hash,
                      "incomplete_weights": [*info.missing_weights, *info.unexpected_weights,
                                             *info.mismatched_weights]},
            "benchmark": {"name": case.benchmark, "n_samples": benchmark.size, "hash": benchmark.content_hash},
            "threshold": {"model": case.model, "file": display_path(selection.file.path),
                          "label": selection.file.name if selection.file.is_packaged_default else
                          display_path(selection.file.path), "version": selection.file.version,
                          "matched_by": selection.matched_by, "baselined": selection.baselined and not
                          selection.file.provisional, "provisional": selection.file.provisional,
                          "family": selection.file.family},
            "environment": environment(model.loaded),
            "settings": self.settings.recorded(),
        }
        if case.kind == "keyspace":
            rows = gauge.judge_keyspace(case.benchmark, measurement.keyspace(case.layer))
            shown = model.layers[:: max(1, math.ceil(len(model.layers) / PROJECTION_LAYERS))]
            if self.projections and case.layer in shown:
                context["projection"] = {"model": case.model, "benchmark": case.benchmark, "layer": case.layer,
                                         **measurement.projection(case.layer)}
        elif case.kind == "attention":
            rows = gauge.judge_attention(case.benchmark, measurement.attention(case.layer))
        else:
            rows = gauge.judge_behaviour(case.benchmark, measurement.behaviour)
        return CaseResult(rows, context)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


@contextmanager
def single_cpu_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def display_path(path: Path) -> str:
    """Relative to the working directory when below it (reports compare equal across checkouts)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
