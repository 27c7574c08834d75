"""The controlling side of a gate run: merging what every item recorded, and finishing the run.

:class:`RunRecord` lives on the controller (the only process without xdist): it merges the rows and
context each gate item produced, wherever it ran. :func:`finish_run` then compares with a baseline card,
blesses threshold files (only for a complete run), builds the card and writes the report files — every
one it can, even when another fails — and says whether the session must fail. Nothing here imports pytest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bias_suite import __version__
from bias_suite.baseline import Change, compare, incompatibilities, load_baseline
from bias_suite.errors import BiasSuiteError
from bias_suite.gate import ResultRow
from bias_suite.thresholds import load_threshold_file
from bias_suite.worker import Case


@dataclass
class RunRecord:
    """Everything the gate items recorded, merged on the controller."""

    rows: list[ResultRow] = field(default_factory=list)
    models: dict[str, dict] = field(default_factory=dict)
    benchmarks: dict[str, dict] = field(default_factory=dict)
    thresholds: dict[str, dict] = field(default_factory=dict)  # model spec → file, version, matched_by, …
    environments: list[dict] = field(default_factory=list)
    settings: dict | None = None
    projections: list[dict] = field(default_factory=list)
    measured: set[tuple] = field(default_factory=set)  # cases that recorded rows
    broken: dict[tuple, str] = field(default_factory=dict)  # cases that died before recording, and why

    @property
    def has_results(self) -> bool:
        return bool(self.rows or self.broken)

    def add(self, case: dict, rows: Sequence[dict] | None, context: dict | None, failed: bool, reason: str) -> None:
        """One test report of a gate item (``rows``/``context`` as JSON, when it got that far)."""
        key = (case["model"], case["benchmark"], case["layer"], case["kind"])
        if rows is not None:
            self.rows.extend(ResultRow.from_json(row) for row in rows)
            self.measured.add(key)
            self.broken.pop(key, None)
            if context:
                self._add_context(context)
        elif failed and key not in self.measured:
            # The case did not run to the end (the model failed to load, NaN keys, …): an error, never a pass.
            self.broken[key] = reason
            self.rows.append(ResultRow(case["model"], case["benchmark"], case["layer"], None, "*", None, None, "error",
                                       message=reason[:300]))

    def _add_context(self, context: dict) -> None:
        self.models[context["model"]["spec"]] = context["model"]
        self.benchmarks[context["benchmark"]["name"]] = context["benchmark"]
        self.thresholds[context["threshold"]["model"]] = context["threshold"]
        self.settings = context.get("settings", self.settings)
        if context["environment"] not in self.environments:
            self.environments.append(context["environment"])
        if "projection" in context:
            self.projections.append(context["projection"])

    def missing(self, expected: Sequence[Case]) -> list[str]:
        """Ids of the expected cases that recorded no rows (interrupted, deselected or errored)."""
        return [case.id + f" ({case.kind})" for case in expected
                if (case.model, case.benchmark, case.layer, case.kind) not in self.measured]


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
    deselected: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunOutcome:
    card: object  # bias_suite.report.ReportCard
    failed: bool  # a reason to fail the session beyond the items' own outcomes
    problems: tuple[str, ...] = ()


def finish_run(record: RunRecord, options: FinishOptions, session=None) -> RunOutcome:
    """Compare, bless, build the card, write the report files; say whether the session must fail.

    session: the controller's :class:`~bias_suite.worker.GateSession` (cases and rule coverage; None in
    unit tests of the card)."""
    from bias_suite.report import ReportCard

    problems: list[str] = []
    drift = sorted({f"{spec}: {line}" for spec, info in record.thresholds.items()
                    for env in record.environments for line in load_threshold_file(info["file"]).drift(env)})
    if session is not None:
        for spec in session.models:
            problems.extend(f"{spec}: {line}" for line in session.unreachable_rules(spec))
    changes: list[Change] = []
    if options.baseline:
        changes, baseline_problems = _compare_with_baseline(record, options.baseline)
        problems.extend(baseline_problems)
    not_baselined = sorted(spec for spec, info in record.thresholds.items() if not info.get("baselined"))
    if options.require_baseline:
        problems.extend(f"{spec}: not baselined (gated by {record.thresholds[spec]['file']} only); bless it with "
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
                  or any(change.status in ("fail", "error") for change in changes))
    return RunOutcome(card, failed, tuple(problems + written_problems))


def _compare_with_baseline(record: RunRecord, path: str) -> tuple[list[Change], list[str]]:
    try:
        baseline = load_baseline(path)
    except BiasSuiteError as error:
        return [], [str(error)]
    reasons = incompatibilities(baseline, record.benchmarks, record.settings or {})
    if reasons:
        return [], [f"--bias-baseline {path}: cannot be paired with this run: {'; '.join(reasons)}"]
    thresholds = {spec: load_threshold_file(info["file"]) for spec, info in record.thresholds.items()}
    n_layers = {spec: info["n_layers"] for spec, info in record.models.items()}
    return compare(record.rows, baseline, thresholds, n_layers), []


def _update_refusal(record: RunRecord, options: FinishOptions, session) -> str | None:
    """Why this run may not write threshold files (None when it may): it must be complete."""
    if options.interrupted:
        return "the run was interrupted before every case was measured"
    if options.deselected:
        return f"{len(options.deselected)} gate case(s) were deselected ({', '.join(options.deselected[:3])}…)"
    errors = [row for row in record.rows if row.status == "error"]
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
    from bias_suite.bless import BlessedModel, BlessRequest, bless
    from bias_suite.thresholds import PACKAGED_DEFAULT

    location = options.thresholds_location or Path("thresholds")
    target_file = location if location.is_file() else None
    if target_file is not None and target_file.resolve() == PACKAGED_DEFAULT.resolve():
        raise BiasSuiteError("the package's generic default.yaml cannot be blessed: pass --thresholds FOLDER")
    models = []
    for spec, info in sorted(record.models.items()):
        models.append(BlessedModel(spec=spec, model_type=info["model_type"],
                                   names=(spec, Path(spec.rstrip("/")).name), n_layers=info["n_layers"],
                                   revision=info.get("revision"), config_hash=info.get("config_hash")))
    request = BlessRequest(location=location if target_file is None else target_file.parent,
                           reason=options.reason or "", rows=record.rows, models=models,
                           environment=record.environments[0] if record.environments else {},
                           settings=record.settings or {},
                           benchmarks={name: {"n_samples": info["n_samples"], "hash": info["hash"]}
                                       for name, info in record.benchmarks.items()},
                           suite_version=__version__, family=options.family, target_file=target_file)
    return bless(request)
