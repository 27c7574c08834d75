"""The measuring side of a gate run: which cases exist, and measuring them once per process.

:class:`GateSession` lives in every process that runs gate items (the controller without xdist, each
xdist worker with it). It expands the options into cases (model × benchmark × layer), loads each model
once and each benchmark once, measures through :mod:`bias_suite.measure` and judges the rows against the
model's threshold file (:mod:`bias_suite.gate.judge`), and hands each case's :class:`~bias_suite.run.records.CaseRecord`
to the controller. Nothing here imports pytest.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

from bias_suite.benchmarks import Benchmark, load_benchmark
from bias_suite.gate.judge import Gauge
from bias_suite.gate.records import BenchmarkRecord, GatedBy, KeyProjection, ModelRecord
from bias_suite.gate.rows import ResultRow
from bias_suite.gate.thresholds import Selection, select_threshold_file
from bias_suite.layers import LayerSelector
from bias_suite.measure import Measurement, ModelUnderTest, environment
from bias_suite.models.loading import ResolvedSpec, SpecDescription, describe_spec, route_spec
from bias_suite.options import RunSettings
from bias_suite.run.records import Case, CaseRecord
from bias_suite.vocabulary import CaseKind

PROJECTION_LAYERS = 3  # layers per model × benchmark whose key scatter the HTML card shows


class GateSession:
    """Per-process state of a gate run: cases, and models/benchmarks loaded at most once."""

    def __init__(self, models: Sequence[str], benchmarks: Sequence[str], settings: RunSettings,
                 thresholds: Path, worker: str | None = None, projections: bool = False):
        self.models, self.benchmark_names = tuple(dict.fromkeys(models)), tuple(dict.fromkeys(benchmarks))
        self.settings, self.thresholds_location, self.worker = settings, thresholds, worker
        self.projections = projections
        self.statistics_threads = _torch_threads()  # before measuring pins the model's own work to one thread
        self._resolved: dict[str, ResolvedSpec] = {}
        self._described: dict[str, SpecDescription] = {}
        self._benchmarks: dict[str, Benchmark] = {}
        self._loaded: dict[str, ModelUnderTest] = {}
        self._selections: dict[str, Selection] = {}

    # ------------------------------------------------------------------ what the run consists of

    def resolved(self, model: str) -> ResolvedSpec:
        """The spec resolved and routed once (the hub asked at most once per process)."""
        if model not in self._resolved:
            self._resolved[model] = route_spec(model)
        return self._resolved[model]

    def spec_description(self, model: str) -> SpecDescription:
        """The model's family and layers from its config alone."""
        if model not in self._described:
            self._described[model] = describe_spec(self.resolved(model), self.settings.trust_remote_code)
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
        cases = [Case(model, benchmark, layer, kind) for kind in (CaseKind.KEYSPACE, CaseKind.ATTENTION)
                 for model, benchmark, layer in layer_cases]
        cases += [Case(model, benchmark, None, CaseKind.BEHAVIOUR)
                  for model in self.models for benchmark in self.benchmark_names
                  if self.benchmark(benchmark).has_behaviour]
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
            self._loaded[spec] = ModelUnderTest(self.resolved(spec), self.settings, device=self._worker_device(),
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

    def measure(self, case: Case, progress: Callable | None = None) -> CaseRecord:
        """Measure one case, judge its rows and record what the card needs.

        CPU work runs on one torch thread per process: torch's parallel reductions split work by thread
        count, so the model's own arithmetic would otherwise differ in the last bits between ``-n 0`` and
        ``-n 2``. The statistics use a pool of their own threads, with results that do not depend on it.
        """
        with single_cpu_thread():
            model = self.model(case.model)
            measurement = model.on(self.benchmark(case.benchmark), progress)
            rows = self.judge(case, measurement)
            return self.record(case, measurement, rows)

    def judge(self, case: Case, measurement: Measurement) -> list[ResultRow]:
        """The case's estimates as rows judged against the model's threshold file."""
        benchmark = measurement.benchmark
        gauge = Gauge(self.selection(case.model).file, case.model, measurement.model.geometry.n_layers,
                      self.settings.recorded(), {case.benchmark: benchmark.content_hash})
        if case.kind is CaseKind.KEYSPACE:
            return gauge.judge_keyspace(case.benchmark, measurement.keyspace(case.layer))
        if case.kind is CaseKind.ATTENTION:
            return gauge.judge_attention(case.benchmark, measurement.attention(case.layer))
        rows = gauge.judge_behaviour(case.benchmark, measurement.behaviour)
        # the coupling of each layer's internals with the behaviour, one row per layer and internal measure
        return rows + [gauge.row(case.benchmark, layer, None, name, estimate) for layer in measurement.model.layers
                       for name, estimate in measurement.coupling(layer).items()]

    def record(self, case: Case, measurement: Measurement, rows: Sequence[ResultRow]) -> CaseRecord:
        """What the controller needs of a measured case besides its rows: the model, the benchmark, the file
        that gated it, the environment, the settings, and (for the HTML card) a projection of the keys."""
        model, benchmark, selection = measurement.model, measurement.benchmark, self.selection(case.model)
        info = model.loaded.info
        threshold = selection.file
        gated_by = GatedBy(
            model=case.model, file=display_path(threshold.path),
            label=threshold.name if threshold.is_packaged_default else display_path(threshold.path),
            version=threshold.version, matched_by=selection.matched_by,
            baselined=selection.baselined and not threshold.provisional, provisional=threshold.provisional,
            family=threshold.family)
        projection = None
        shown = model.layers[:: max(1, math.ceil(len(model.layers) / PROJECTION_LAYERS))]
        if self.projections and case.kind is CaseKind.KEYSPACE and case.layer in shown:
            projection = KeyProjection(case.model, case.benchmark, case.layer, measurement.projection(case.layer))
        return CaseRecord(
            case=case, rows=tuple(rows),
            model=ModelRecord(case.model, info.model_type, info.revision, model.geometry.n_layers, info.config_hash,
                              (*info.missing_weights, *info.unexpected_weights, *info.mismatched_weights)),
            benchmark=BenchmarkRecord(case.benchmark, benchmark.size, benchmark.content_hash),
            gated_by=gated_by, environment=environment(model.loaded), settings=self.settings.recorded(),
            projection=projection,
            sample_records=measurement.sample_records if case.kind is CaseKind.BEHAVIOUR else ())


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
