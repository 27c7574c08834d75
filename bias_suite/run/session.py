"""The measuring side of a gate run: which cases exist, and measuring them once per process.

:class:`GateSession` lives in every process that runs gate items (the controller without xdist, each
xdist worker with it). It expands the options into cases (model × benchmark × layer), loads each model
once and each benchmark once, measures through :mod:`bias_suite.measure` and judges the rows against the
model's threshold file (:mod:`bias_suite.gate.judge`), and hands each case's :class:`~bias_suite.run.records.CaseRecord`
to the controller. Nothing here imports pytest.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from bias_suite.benchmarks import Benchmark, load_benchmark
from bias_suite.errors import BaselineError, BiasSuiteError, ThresholdError
from bias_suite.gate.baseline import Baseline, incompatibilities, load_baseline
from bias_suite.gate.changes import Change, paired_changes
from bias_suite.gate.judge import Gauge, case_verdict, rule_reference
from bias_suite.gate.records import BenchmarkRecord, GatedBy, KeyProjection, ModelRecord
from bias_suite.gate.rows import ResultRow
from bias_suite.gate.thresholds import Selection, ThresholdFile, select_threshold_file
from bias_suite.layers import LayerSelector
from bias_suite.measure import Measurement, ModelUnderTest, environment
from bias_suite.metrics.registry import spec_of
from bias_suite.models.loading import ResolvedSpec, SpecDescription, describe_spec, route_spec
from bias_suite.models.prompts import image_settings
from bias_suite.options import RunSettings, shard_numbers
from bias_suite.run.records import Case, CaseRecord
from bias_suite.run.shards import run_cells, shard_cells
from bias_suite.vocabulary import CaseKind, Status, Verdict

PROJECTION_LAYERS = 3  # layers per model × benchmark whose key scatter the HTML card shows


class GateSession:
    """Per-process state of a gate run: cases, and models/benchmarks loaded at most once."""

    def __init__(self, models: Sequence[str], benchmarks: Sequence[str], settings: RunSettings,
                 thresholds: Path, worker: str | None = None, projections: bool = False,
                 reference: str | None = None, families: Mapping[str, str] | None = None,
                 baseline: str | None = None, blessing: bool = False, shard: str | None = None,
                 descriptions: Mapping[str, SpecDescription] | None = None):
        """reference: ``--bias-reference``, measured like the models and the partner of their paired changes;
        families: ``--family``, model spec → declared family (key ``*``: every model); baseline:
        ``--bias-baseline`` card; blessing: ``--update-thresholds`` (cases are judged against the files as
        they are, before the bless); shard: ``--bias-shard`` ``"K/N"``, the run's K-th of N shards of its
        (model × benchmark) cells (:mod:`bias_suite.run.shards`); descriptions: what each model's config says,
        when already known (a merge takes them from the shards' manifest instead of reading configs)."""
        candidates = tuple(dict.fromkeys(models))
        self.reference = reference
        self.models = candidates + ((reference,) if reference is not None and reference not in candidates else ())
        self.benchmark_names = tuple(dict.fromkeys(benchmarks))
        self.settings, self.thresholds_location, self.worker = settings, thresholds, worker
        self.projections, self.families, self.baseline_path = projections, dict(families or {}), baseline
        self.blessing, self.shard = blessing, shard
        self._cards: dict[Path, Baseline] = {}
        self.statistics_threads = _torch_threads()  # before measuring pins the model's own work to one thread
        self._resolved: dict[str, ResolvedSpec] = {}
        self._described: dict[str, SpecDescription] = dict(descriptions or {})
        self._benchmarks: dict[str, Benchmark] = {}
        self._loaded: dict[str, ModelUnderTest] = {}
        self._failed: dict[str, BiasSuiteError] = {}
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

    def cells(self) -> tuple[tuple[str, str], ...]:
        """The run's (model × benchmark) cells, sorted (:func:`~bias_suite.run.shards.run_cells`)."""
        return run_cells(self.models, self.benchmark_names)

    def cases(self) -> list[Case]:
        """The cases this process's run consists of: every case, or with ``shard`` those of its cells."""
        if self.shard is None:
            return self.all_cases()
        index, count = shard_numbers(self.shard)
        kept = set(shard_cells(self.cells(), index, count))
        return [case for case in self.all_cases() if (case.model, case.benchmark) in kept]

    def all_cases(self) -> list[Case]:
        """Every case of the run, in a stable order: key separation, attention share, then behaviour."""
        layer_cases = [(model, benchmark, layer) for model in self.models for benchmark in self.benchmark_names
                       for layer in self.layers(model)]
        cases = [Case(model, benchmark, layer, kind) for kind in (CaseKind.KEYSPACE, CaseKind.ATTENTION)
                 for model, benchmark, layer in layer_cases]
        cases += [Case(model, benchmark, None, CaseKind.BEHAVIOUR)
                  for model in self.models for benchmark in self.benchmark_names
                  if self.benchmark(benchmark).has_behaviour]
        return cases

    def declared_family(self, spec: str) -> str | None:
        """The family ``spec`` declares with ``--family`` (``SPEC=NAME``, or ``NAME`` for every model)."""
        return self.families.get(spec, self.families.get("*"))

    def selection(self, spec: str) -> Selection:
        """The threshold file that gates ``spec``, how it was chosen, and the sanity bounds beside it. The
        blessed run a baselining file names is checked here too (a missing or altered card stops the run)."""
        if spec not in self._selections:
            model_type = self.spec_description(spec).model_type
            names = [spec, os.path.basename(spec.rstrip("/"))]
            selection = select_threshold_file(self.thresholds_location, model_type, names,
                                              self.declared_family(spec))
            if selection.baselined:
                self.blessed_card(selection.file)
            self._selections[spec] = selection
        return self._selections[spec]

    def blessed_card(self, threshold: ThresholdFile) -> Baseline | None:
        """The blessed run stored beside ``threshold`` (``baseline_card``), read and verified once."""
        path = threshold.baseline_card_path
        if path is None:
            return None
        if path not in self._cards:
            label = f"{threshold.name} baseline_card"
            if not path.is_file():
                raise ThresholdError(f"{threshold.path}: baseline_card {path.name} is missing from {path.parent}: "
                                     "restore it from version control, or bless the family again")
            recorded = (threshold.baseline_card or {}).get("sha256")
            if recorded is not None and hashlib.sha256(path.read_bytes()).hexdigest() != recorded:
                raise ThresholdError(f"{threshold.path}: baseline_card {path} is not the blessed card (its sha256 "
                                     "differs from the one recorded): restore it, or bless the family again")
            try:
                self._cards[path] = load_baseline(path, label)
            except BaselineError as error:
                raise ThresholdError(str(error)) from None
        return self._cards[path]

    def baseline_card(self) -> Baseline | None:
        """The ``--bias-baseline`` card, read once."""
        if self.baseline_path is None:
            return None
        path = Path(self.baseline_path)
        if path not in self._cards:
            self._cards[path] = load_baseline(path)
        return self._cards[path]

    def worker_group(self, case: Case) -> str:
        """The pytest-xdist group of a case: its model, or one group for a reference and its candidates
        (a candidate is paired with the reference measured in the same process)."""
        return "bias-reference" if self.reference is not None else case.model

    def unreachable_rules(self, spec: str) -> list[str]:
        """Rules of the model's file whose layers the model does not have (a rule that covers nothing)."""
        return self.selection(spec).file.unreachable_rules(self.spec_description(spec).n_layers)

    # ------------------------------------------------------------------ measuring

    def model(self, spec: str) -> ModelUnderTest:
        """The model, loaded once per process; a load that failed with a named error fails every later case
        of the model with the same error at once (no second load, no second traceback)."""
        if spec in self._failed:
            raise self._failed[spec]
        if spec not in self._loaded:
            try:
                self._loaded[spec] = ModelUnderTest(self.resolved(spec), self.settings,
                                                    device=self._worker_device(),
                                                    statistics_threads=self.statistics_threads)
            except BiasSuiteError as error:
                self._failed[spec] = error
                raise
        return self._loaded[spec]

    def _worker_device(self) -> str | None:
        """Under xdist with several GPUs, worker ``gwN`` takes GPU ``N mod count`` (not under a device map: it
        places the model over the GPUs itself)."""
        if self.worker is None or self.settings.device not in ("auto", "cuda") or self.settings.device_map:
            return None
        import torch

        count = torch.cuda.device_count()
        if count < 2:
            return None
        return f"cuda:{int(self.worker.removeprefix('gw')) % count}"

    def measure(self, case: Case, progress: Callable | None = None) -> CaseRecord:
        """Measure one case, judge it and record what the controller and the card need.

        CPU work runs on one torch thread per process: torch's parallel reductions split work by thread
        count, so the model's own arithmetic would otherwise differ in the last bits between ``-n 0`` and
        ``-n 2``. The statistics use a pool of their own threads, with results that do not depend on it.
        """
        with single_cpu_thread():
            model = self.model(case.model)
            measurement = model.on(self.benchmark(case.benchmark), progress)
            gauge = self.gauge(case, measurement)
            rows = self.judge(case, measurement, gauge)
            changes = self.changes(case, rows, measurement)
            covered = any(gauge.baselines(row) for row in rows) or any(
                change.status is not Status.UNCHECKED and change.against in ("reference", "blessed", "baseline")
                for change in changes)
            verdict, message = case_verdict(rows, changes, covered)
            if case.model == self.reference and case.model not in self.candidates:
                verdict, message = (Verdict.PASS, "") if verdict is not Verdict.INCONCLUSIVE else (verdict, message)
            return self.record(case, measurement, rows, changes, verdict, message, covered)

    @property
    def candidates(self) -> tuple[str, ...]:
        """The models under test: every ``--model`` (the reference only when it is one of them too)."""
        return tuple(model for model in self.models if model != self.reference) or self.models

    def comparability_key(self, model: ModelUnderTest) -> dict[str, object]:
        """What the numbers of ``model`` depend on besides the samples: the recorded settings, dtype,
        attention backend, processor image settings and torch / transformers major.minor."""
        env = environment(model.loaded)
        recorded = self.settings.recorded()
        if recorded["n_samples"] is not None:  # never more than the largest benchmark holds
            largest = max(self.benchmark(name).size for name in self.benchmark_names)
            recorded["n_samples"] = min(recorded["n_samples"], largest)
        return {**recorded, "dtype": env["dtype"], "attn_implementation": env["attn_implementation"],
                "processor": image_settings(model.loaded.processor), "torch": major_minor(env["torch"]),
                "transformers": major_minor(env["transformers"])}

    def gauge(self, case: Case, measurement: Measurement) -> Gauge:
        """What the case's estimates are judged against: nothing for the reference (it is the partner, not a
        candidate), else the model's threshold file and the generic sanity bounds."""
        benchmark = measurement.benchmark
        selection = self.selection(case.model)
        judged = case.model in self.candidates
        return Gauge(selection.file if judged else None, case.model, measurement.model.geometry.n_layers,
                     self.comparability_key(measurement.model), {case.benchmark: benchmark.content_hash},
                     selection.sanity if judged else None, {case.benchmark: benchmark.size})

    def judge(self, case: Case, measurement: Measurement, gauge: Gauge) -> list[ResultRow]:
        """The case's estimates as rows judged against ``gauge``."""
        if case.kind is CaseKind.KEYSPACE:
            return gauge.judge_keyspace(case.benchmark, measurement.keyspace(case.layer))
        if case.kind is CaseKind.ATTENTION:
            return gauge.judge_attention(case.benchmark, measurement.attention(case.layer))
        rows = gauge.judge_behaviour(case.benchmark, measurement.behaviour)
        # the coupling of each layer's internals with the behaviour, one row per layer and internal measure
        return rows + [gauge.row(case.benchmark, layer, None, name, estimate) for layer in measurement.model.layers
                       for name, estimate in measurement.coupling(layer).items()]

    def changes(self, case: Case, rows: Sequence[ResultRow], measurement: Measurement) -> list[Change]:
        """Paired changes of the case against its partners: the reference measured in this run, the blessed
        run of its family file, and the ``--bias-baseline`` card."""
        if case.model not in self.candidates:
            return []
        selection = self.selection(case.model)
        threshold = selection.file
        changes: list[Change] = []
        if self.reference is not None and case.model != self.reference:
            reference = self.model(self.reference)
            partner = reference.on(self.benchmark(case.benchmark))
            partner_rows = self.judge(Case(self.reference, case.benchmark, case.layer, case.kind), partner,
                                      Gauge(None, self.reference, reference.geometry.n_layers, {}, {}))
            gateable = {row.metric for row in rows if _gateable(row.metric)}
            changes += paired_changes(
                [row for row in rows if row.metric in gateable],
                {(row.model, row.benchmark, row.layer, row.metric): row for row in partner_rows}, self.reference,
                lambda row: _policy_tolerance(threshold if selection.baselined else None, row.metric), "reference")
        n_layers = measurement.model.geometry.n_layers
        blessed = self.blessed_card(threshold) if selection.baselined else None
        if blessed is not None:
            partner = blessed.partner_of(case.model, (threshold.baseline_card or {}).get("models", [None])[0])
            problems = incompatibilities(blessed, {case.benchmark: {"hash": measurement.benchmark.content_hash}},
                                         {**self.settings.recorded(), "n_samples": measurement.benchmark.size})
            changes += paired_changes(rows, blessed.rows, partner,
                                      lambda row: _rule_tolerance(threshold, row, n_layers), "blessed",
                                      _not_comparable(problems, f"the blessed run of {threshold.name}"),
                                      judged_only=True)
        card = self.baseline_card()
        if card is not None:
            problems = incompatibilities(card, {case.benchmark: {"hash": measurement.benchmark.content_hash}},
                                         {**self.settings.recorded(), "n_samples": measurement.benchmark.size})
            changes += paired_changes(rows, card.rows, card.partner_of(case.model),
                                      lambda row: _rule_tolerance(threshold, row, n_layers), "baseline",
                                      _not_comparable(problems, f"--bias-baseline {card.path}"))
        return changes

    def record(self, case: Case, measurement: Measurement, rows: Sequence[ResultRow], changes: Sequence[Change],
               verdict: Verdict, message: str, covered: bool) -> CaseRecord:
        """What the controller needs of a measured case besides its rows: the model, the benchmark, the file
        that gated it, the environment, the settings, and (for the HTML card) a projection of the keys."""
        model, benchmark, selection = measurement.model, measurement.benchmark, self.selection(case.model)
        info = model.loaded.info
        threshold = selection.file
        gated_by = GatedBy(
            model=case.model, file=display_path(threshold.path),
            label=threshold.name if threshold.is_packaged_default else display_path(threshold.path),
            version=threshold.version, matched_by=selection.matched_by,
            baselined=selection.baselined, provisional=threshold.provisional, family=threshold.family,
            sanity=None if selection.sanity is None else selection.sanity.name, considered=selection.considered,
            baseline_card=None if threshold.baseline_card_path is None or not selection.baselined
            else display_path(threshold.baseline_card_path))
        projection = None
        shown = model.layers[:: max(1, math.ceil(len(model.layers) / PROJECTION_LAYERS))]
        if self.projections and case.kind is CaseKind.KEYSPACE and case.layer in shown:
            projection = KeyProjection(case.model, case.benchmark, case.layer, measurement.projection(case.layer))
        return CaseRecord(
            case=case, rows=tuple(rows),
            model=ModelRecord(case.model, info.model_type, info.revision, model.geometry.n_layers, info.config_hash,
                              (*info.missing_weights, *info.unexpected_weights, *info.mismatched_weights)),
            benchmark=BenchmarkRecord(case.benchmark, benchmark.size, benchmark.content_hash,
                                      None if benchmark.source == "builtin" else benchmark.n_rows),
            gated_by=gated_by, environment=environment(model.loaded), settings=self.comparability_key(model),
            projection=projection, changes=tuple(changes), verdict=verdict, message=message, covered=covered,
            sample_records=measurement.sample_records if case.kind is CaseKind.BEHAVIOUR else ())


def _gateable(metric: str) -> bool:
    """A metric a reference comparison judges: gateable, with a direction in which it means more bias."""
    try:
        spec = spec_of(metric)
    except KeyError:
        return False
    return spec.gateable and spec.direction is not None


def _policy_tolerance(threshold: ThresholdFile | None, metric: str) -> tuple[float, str]:
    """The tolerance of a change against the reference: the family file's policy, else the registry's."""
    if threshold is not None:
        tolerances = (threshold.document.get("policy") or {}).get("tolerances") or {}
        if metric in tolerances or metric.partition(".")[0] in tolerances:
            return threshold.tolerance(metric), f"{threshold.name} policy"
    return spec_of(metric).tolerance, "registry default"


def _rule_tolerance(threshold: ThresholdFile, row: ResultRow, n_layers: int) -> tuple[float, str] | None:
    """The tightest ``max_increase`` rule of ``threshold`` that covers ``row``, or None."""
    rules = [rule for rule in threshold.rules_for(row.metric, row.benchmark, row.layer, n_layers) if rule.on_change]
    if not rules:
        return None
    rule = min(rules, key=lambda rule: rule.bound.limit)
    return rule.bound.limit, rule_reference(threshold, rule)


def _not_comparable(problems: Sequence[str], partner: str) -> str | None:
    return None if not problems else f"not comparable with {partner}: {'; '.join(problems)}"


def major_minor(version: str) -> str:
    """``2.14.1+cu130`` → ``2.14``."""
    return ".".join(version.split("+")[0].split(".")[:2])


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
