"""The controlling side of a gate run: merging what every item recorded, and finishing the run.

:class:`RunRecord` lives on the controller (the only process without xdist): it merges the
:class:`~bias_suite.run.records.CaseRecord` each gate item produced, wherever it ran. :func:`finish_run`
then compares with a baseline card, blesses threshold files (only for a complete run), builds the card
and writes the report files — every one it can, even when another fails — and says whether the session
must fail. Nothing here imports pytest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bias_suite import __version__
from bias_suite.errors import BiasSuiteError
from bias_suite.gate.baseline import Change, compare, incompatibilities, load_baseline
from bias_suite.gate.records import BenchmarkRecord, GatedBy, KeyProjection, ModelRecord
from bias_suite.gate.rows import ResultRow
from bias_suite.gate.thresholds import ThresholdFile
from bias_suite.report.card import ReportCard
from bias_suite.run.records import Case, CaseRecord
from bias_suite.vocabulary import Status


@dataclass
class RunRecord:
    """Everything the gate items recorded, merged on the controller."""

    rows: list[ResultRow] = field(default_factory=list)
    models: dict[str, ModelRecord] = field(default_factory=dict)
    benchmarks: dict[str, BenchmarkRecord] = field(default_factory=dict)
    thresholds: dict[str, GatedBy] = field(default_factory=dict)  # model spec → the file that gated it
    environments: list[dict] = field(default_factory=list)
    settings: dict | None = None
    projections: list[KeyProjection] = field(default_factory=list)
    measured: set[tuple] = field(default_factory=set)  # keys of the cases that recorded rows
    broken: dict[tuple, str] = field(default_factory=dict)  # cases that died before recording, and why

    @property
    def has_results(self) -> bool:
        return bool(self.rows or self.broken)

    def add(self, case: Case, record: CaseRecord | None, failed: bool, reason: str) -> None:
        """One test report of a gate item (``record`` when it got that far)."""
        if record is not None:
            self.rows.extend(record.rows)
            self.measured.add(case.key)
            self.broken.pop(case.key, None)
            self._add_context(record)
        elif failed and case.key not in self.measured:
            # The case did not run to the end (the model failed to load, NaN keys, …): an error, never a pass.
            self.broken[case.key] = reason
            self.rows.append(ResultRow(case.model, case.benchmark, case.layer, None, "*", None, None, Status.ERROR,
                                       message=reason[:300]))

    def _add_context(self, record: CaseRecord) -> None:
        self.models[record.model.spec] = record.model
        self.benchmarks[record.benchmark.name] = record.benchmark
        self.thresholds[record.gated_by.model] = record.gated_by
        self.settings = dict(record.settings)
        if dict(record.environment) not in self.environments:
            self.environments.append(dict(record.environment))
        if record.projection is not None:
            self.projections.append(record.projection)

    def missing(self, expected: Sequence[Case]) -> list[str]:
        """Ids of the expected cases that recorded no rows (interrupted, deselected or errored)."""
        return [f"{case.id} ({case.kind})" for case in expected if case.key not in self.measured]


@dataclass(frozen=True)
class FinishOptions:
    """How the run ends (from the plugin's options)."""

    reports: tuple[str, ...] = ()
    update: bool = False
    reason: str | None = None
    family: str | None = None
    thresholds_location: Path | None = None
    strict_env: bool = False
    require_baseline: bool = False
    baseline: str | None = None
    interrupted: bool = False


@dataclass(frozen=True)
class RunOutcome:
    card: ReportCard
    failed: bool  # a reason to fail the session beyond the items' own outcomes
    problems: tuple[str, ...] = ()


def finish_run(record: RunRecord, options: FinishOptions, session=None) -> RunOutcome:
    """Compare, bless, build the card, write the report files; say whether the session must fail.

    session: the controller's :class:`~bias_suite.run.session.GateSession` (cases, rule coverage and the
    threshold file of each model, parsed once; None in unit tests of the card)."""
    problems: list[str] = []
    thresholds = _threshold_files(record, session)
    drift = sorted({f"{spec}: {line}" for spec, threshold in thresholds.items()
                    for env in record.environments for line in threshold.drift(env)})
    if session is not None:
        for spec in session.models:
            problems.extend(f"{spec}: {line}" for line in session.unreachable_rules(spec))
    changes: list[Change] = []
    if options.baseline:
        changes, baseline_problems = _compare_with_baseline(record, options.baseline, thresholds)
        problems.extend(baseline_problems)
    not_baselined = sorted(spec for spec, gated_by in record.thresholds.items() if not gated_by.baselined)
    if options.require_baseline:
        problems.extend(f"{spec}: not baselined (gated by {record.thresholds[spec].file} only); bless it with "
                        "--update-thresholds --reason TEXT" for spec in not_baselined)
    updates: list[str] = []
    if options.update:
        refusal = _update_refusal(record, options, session)
        if refusal:
            problems.append(f"thresholds NOT updated: {refusal}")
        else:
            try:
                updates = _bless(record, options, session)
            except BiasSuiteError as error:
                problems.append(f"thresholds NOT updated: {error}")
    card = ReportCard.build(record, drift=drift, updates=updates, problems=problems, changes=changes,
                            strict_env=options.strict_env, not_baselined=not_baselined)
    written_problems = []
    for path in options.reports:
        try:
            card.write(Path(path))
        except OSError as error:
            written_problems.append(f"could not write the report {path}: {error.strerror or error}")
    if written_problems:
        card = card.with_problems(written_problems)
    failed = bool(problems or written_problems or (options.strict_env and drift)
                  or any(change.status in (Status.FAIL, Status.ERROR) for change in changes))
    return RunOutcome(card, failed, tuple(problems + written_problems))


def _threshold_files(record: RunRecord, session) -> dict[str, ThresholdFile]:
    """Each recorded model's threshold file as the session parsed it (no file is read twice)."""
    if session is None:
        return {}
    return {spec: session.selection(spec).file for spec in record.thresholds}


def _compare_with_baseline(record: RunRecord, path: str,
                           thresholds: dict[str, ThresholdFile]) -> tuple[list[Change], list[str]]:
    try:
        baseline = load_baseline(path)
    except BiasSuiteError as error:
        return [], [str(error)]
    reasons = incompatibilities(baseline, {name: benchmark.to_json() for name, benchmark in record.benchmarks.items()},
                                record.settings or {})
    if reasons:
        return [], [f"--bias-baseline {path}: cannot be paired with this run: {'; '.join(reasons)}"]
    n_layers = {spec: model.n_layers for spec, model in record.models.items()}
    return compare(record.rows, baseline, thresholds, n_layers), []


def _update_refusal(record: RunRecord, options: FinishOptions, session) -> str | None:
    """Why this run may not write threshold files (None when it may): it must be complete."""
    if options.interrupted:
        return "the run was interrupted before every case was measured"
    errors = [row for row in record.rows if row.status is Status.ERROR]
    if errors:
        first = errors[0]
        return (f"{len(errors)} value(s) could not be measured (first: {first.model} {first.benchmark} "
                f"L{first.layer} {first.metric}: {first.message or 'error'})")
    if session is not None:
        missing = record.missing(session.cases())
        if missing:
            return (f"{len(missing)} case(s) recorded nothing "
                    f"({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''})")
    return None


def _bless(record: RunRecord, options: FinishOptions, session) -> list[str]:
    from bias_suite.gate.bless import BlessedModel, BlessRequest, bless
    from bias_suite.gate.thresholds import PACKAGED_DEFAULT

    location = options.thresholds_location or Path("thresholds")
    target_file = location if location.is_file() else None
    if target_file is not None and target_file.resolve() == PACKAGED_DEFAULT.resolve():
        raise BiasSuiteError("the package's generic default.yaml cannot be blessed: pass --thresholds FOLDER")
    models = []
    for spec, model in sorted(record.models.items()):
        models.append(BlessedModel(spec=spec, model_type=model.model_type,
                                   names=(spec, Path(spec.rstrip("/")).name), n_layers=model.n_layers,
                                   revision=model.revision, config_hash=model.config_hash))
    request = BlessRequest(location=location if target_file is None else target_file.parent,
                           reason=options.reason or "", rows=record.rows, models=models,
                           environment=record.environments[0] if record.environments else {},
                           settings=record.settings or {},
                           benchmarks={name: {"n_samples": benchmark.n_samples, "hash": benchmark.hash}
                                       for name, benchmark in record.benchmarks.items()},
                           suite_version=__version__, family=options.family, target_file=target_file)
    return bless(request)
