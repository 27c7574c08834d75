"""A gate run: which cases exist, measuring them once per worker, and merging their rows.

:class:`GateSession` lives in each process (controller or xdist worker): it expands the options into
cases (model × benchmark × layer), loads each model once and each benchmark once, and measures
through :mod:`bias_suite.suite`. :class:`RunRecord` lives on the controller: it merges the rows every
test recorded and, at the end, :func:`finish_run` builds the card, writes report files and threshold
updates. Nothing here imports pytest.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bias_suite import __version__
from bias_suite.assess import attention_rows, behaviour_rows, keyspace_rows
from bias_suite.benchmarks import Benchmark, load_benchmark
from bias_suite.gate import ResultRow
from bias_suite.loading import describe_spec
from bias_suite.suite import ModelUnderTest, SuiteSettings, environment
from bias_suite.thresholds import (
    Measured,
    ThresholdFile,
    load_threshold_file,
    next_version,
    select_threshold_file,
    write_threshold_file,
)

PROJECTION_LAYERS = 3  # layers per model × benchmark whose key scatter the HTML card shows


@dataclass(frozen=True)
class Case:
    """One parametrization of a gate test (plain values: it travels to xdist workers)."""

    model: str
    benchmark: str
    layer: int | None  # None for behaviour cases

    @property
    def id(self) -> str:
        benchmark = self.benchmark if "/" not in self.benchmark and "\\" not in self.benchmark else Path(self.benchmark).stem
        return f"{self.model}-{benchmark}" + (f"-L{self.layer}" if self.layer is not None else "")

    def as_dict(self) -> dict:
        return asdict(self)


class GateSession:
    """Per-process state of a gate run: cases, and models/benchmarks loaded at most once."""

    def __init__(self, models: Sequence[str], benchmarks: Sequence[str], settings: SuiteSettings,
                 thresholds: Path, worker: str | None = None):
        self.models, self.benchmark_names = tuple(models), tuple(benchmarks)
        self.settings, self.thresholds_location, self.worker = settings, thresholds, worker
        self._described: dict[str, tuple[str, int]] = {}
        self._benchmarks: dict[str, Benchmark] = {}
        self._loaded: dict[str, ModelUnderTest] = {}
        self._thresholds: dict[str, ThresholdFile] = {}

    def describe(self, model: str) -> tuple[str, int]:
        if model not in self._described:
            self._described[model] = describe_spec(model, self.settings.trust_remote_code)
        return self._described[model]

    def benchmark(self, name: str) -> Benchmark:
        if name not in self._benchmarks:
            self._benchmarks[name] = load_benchmark(name, n_samples=self.settings.n_samples, seed=self.settings.seed)
        return self._benchmarks[name]

    def layers(self, model: str) -> tuple[int, ...]:
        return self.settings.layer_selector.resolve(self.describe(model)[1], model)

    def layer_cases(self) -> list[Case]:
        return [Case(model, benchmark, layer) for model in self.models for benchmark in self.benchmark_names
                if self.benchmark(benchmark) for layer in self.layers(model)]

    def behaviour_cases(self) -> list[Case]:
        return [Case(model, benchmark, None) for model in self.models for benchmark in self.benchmark_names
                if self.benchmark(benchmark).has_conflicts]

    def model(self, spec: str) -> ModelUnderTest:
        if spec not in self._loaded:
            self._loaded[spec] = ModelUnderTest(spec, self.settings, device=self._worker_device())
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

    def threshold(self, spec: str) -> ThresholdFile:
        if spec not in self._thresholds:
            model_type, _ = self.describe(spec)
            names = [spec, os.path.basename(spec.rstrip("/"))]
            self._thresholds[spec] = select_threshold_file(self.thresholds_location, model_type, names)
        return self._thresholds[spec]

    # ------------------------------------------------------------------ measuring one case

    def measure(self, case: Case, kind: str, progress: Callable | None = None) -> tuple[list[ResultRow], dict]:
        """Rows of one case (``kind``: keyspace, attention or behaviour) and what the card needs
        besides them (model, benchmark, threshold file, environment, key projections).

        CPU work runs on one torch thread: torch's parallel reductions split work by thread count, so
        results would otherwise differ in the last bits between ``-n 0`` and ``-n 2`` (or under load).
        Parallelism comes from xdist workers instead.
        """
        with single_cpu_thread():
            return self._measure(case, kind, progress)

    def _measure(self, case: Case, kind: str, progress: Callable | None) -> tuple[list[ResultRow], dict]:
        threshold = self.threshold(case.model)
        model = self.model(case.model)
        benchmark = self.benchmark(case.benchmark)
        measurement = model.on(benchmark, progress)
        n_layers = model.geometry.n_layers
        context = {
            "model": {"spec": case.model, "model_type": model.loaded.info.model_type,
                      "revision": model.loaded.info.revision, "n_layers": n_layers},
            "benchmark": {"name": case.benchmark, "n_samples": benchmark.size, "hash": benchmark.content_hash},
            "threshold": {"model": case.model, "file": _display_path(threshold.path), "version": threshold.version},
            "environment": environment(model.loaded),
        }
        if kind == "keyspace":
            rows = keyspace_rows(threshold, case.model, case.benchmark, measurement.keyspace(case.layer), n_layers)
            shown = model.layers[:: max(1, math.ceil(len(model.layers) / PROJECTION_LAYERS))]
            if case.layer in shown:
                context["projection"] = {"model": case.model, "benchmark": case.benchmark, "layer": case.layer,
                                         **measurement.projection(case.layer)}
        elif kind == "attention":
            rows = attention_rows(threshold, case.model, case.benchmark, measurement.attention(case.layer), n_layers)
        else:
            rows = behaviour_rows(threshold, case.model, case.benchmark, measurement.behaviour, n_layers)
        return rows, context


@contextmanager
def single_cpu_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------- controller: merging and finishing


@dataclass
class RunRecord:
    """Everything the gate tests recorded, merged on the controller."""

    rows: list[dict] = field(default_factory=list)
    models: dict[str, dict] = field(default_factory=dict)
    benchmarks: dict[str, dict] = field(default_factory=dict)
    thresholds: dict[str, dict] = field(default_factory=dict)
    environments: list[dict] = field(default_factory=list)
    projections: list[dict] = field(default_factory=list)

    @property
    def has_results(self) -> bool:
        return bool(self.rows)

    def add_report(self, nodeid: str, when: str, outcome: str, user_properties, longrepr: str) -> None:
        properties = dict(user_properties)
        case = properties.get("bias_case")
        if case is None:
            return
        if "bias_rows" in properties and when == "call":
            self.rows.extend(properties["bias_rows"])
            context = properties.get("bias_context", {})
            if "model" in context:
                self.models[context["model"]["spec"]] = context["model"]
                self.benchmarks[context["benchmark"]["name"]] = context["benchmark"]
                self.thresholds[context["threshold"]["model"]] = context["threshold"]
                if context["environment"] not in self.environments:
                    self.environments.append(context["environment"])
            if "projection" in context:
                self.projections.append(context["projection"])
        elif outcome == "failed" and when in ("setup", "call") and "bias_rows" not in properties:
            # The check did not run to the end (model failed to load, NaN keys, ...): an error, never a pass.
            reason = longrepr.strip().splitlines()[-1] if longrepr.strip() else "test failed before recording"
            self.rows.append(ResultRow(case["model"], case["benchmark"], case["layer"], None, "*", None, None, None,
                                       "error").to_json() | {"message": reason[:300]})


@dataclass(frozen=True)
class RunOutcome:
    card: object  # bias_suite.report.ReportCard
    failed: bool  # a reason to fail the session beyond the tests' own outcomes (e.g. --strict-env drift)


def finish_run(record: RunRecord, reports: Sequence[str] = (), update: bool = False, reason: str | None = None,
               strict_env: bool = False) -> RunOutcome:
    """Build the card; write threshold updates and report files; say whether the session must fail."""
    from bias_suite.report import ReportCard

    drift = []
    for spec, info in sorted(record.thresholds.items()):
        threshold = load_threshold_file(info["file"])
        for env in record.environments:
            drift.extend(f"{spec}: {line}" for line in threshold.drift(env))
    changes = update_thresholds(record, reason or "") if update else []
    card = ReportCard.build(record, drift=sorted(set(drift)), changes=changes, strict_env=strict_env)
    for path in reports:
        card.write(Path(path))
    return RunOutcome(card, failed=bool(strict_env and drift))


def update_thresholds(record: RunRecord, reason: str) -> list[str]:
    """Write the next version of each model's threshold file from the recorded pooled rows."""
    changes = []
    environment_now = record.environments[0] if record.environments else {}
    for spec, info in sorted(record.thresholds.items()):
        threshold = load_threshold_file(info["file"])
        model = record.models[spec]
        measured: dict[int, list[Measured]] = {}
        for row in record.rows:
            if row["model"] != spec or row["head"] is not None or row["value"] is None:
                continue
            for rule in threshold.rules_for(row["metric"], row["benchmark"], row["layer"], model["n_layers"]):
                measured.setdefault(rule.index, []).append(Measured(row["value"], tuple(row["ci"]) if row["ci"] else None))
        target = None
        if threshold.path.name == "default.yaml":
            target = threshold.path.with_name(f"{_file_stem(spec)}.yaml")
        path, document, changed = next_version(
            threshold, measured, reason, environment_now,
            {"suite_version": __version__, "model_revision": model.get("revision")}, target)
        if target is not None:
            document["match"] = {"name": [spec]}
            document["family"] = spec
        write_threshold_file(path, document)
        changes.append(f"{path}: version {threshold.version} → {document['version']}")
        changes.extend(changed)
    return changes


def _display_path(path: Path) -> str:
    """Relative to the working directory when below it (reports compare equal across checkouts)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _file_stem(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.strip("/").split("/")[-1])
