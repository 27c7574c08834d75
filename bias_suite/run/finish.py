"""The controlling side of a gate run: merging what every item recorded, and finishing the run.

:class:`RunRecord` lives on the controller (the only process without xdist): it merges the
:class:`~bias_suite.run.records.CaseRecord` each gate item produced, wherever it ran. :func:`finish_run`
then gives every model its verdict (PASS, FAIL, INCONCLUSIVE or NO BASELINE), blesses threshold files
(only a complete run that accepts no regression by accident), builds the card and writes the report files —
every one it can, even when another fails — and says with which code the process exits. Nothing here
imports pytest.
"""


from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bias_suite import __version__
from bias_suite.errors import BiasSuiteError
from bias_suite.gate.changes import Change
from bias_suite.gate.judge import describe_change, describe_row
from bias_suite.gate.records import BenchmarkRecord, GatedBy, KeyProjection, ModelRecord, ModelVerdict
from bias_suite.gate.rows import ResultRow
from bias_suite.gate.thresholds import ThresholdFile
from bias_suite.metrics.samples import SampleRecord
from bias_suite.report.card import MARKDOWN_LIMIT, ReportCard
from bias_suite.run.records import Case, CaseEntry, CaseRecord
from bias_suite.vocabulary import Status, Verdict


@dataclass
class RunRecord:
    """Everything the gate items recorded, merged on the controller."""

    rows: list[ResultRow] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    models: dict[str, ModelRecord] = field(default_factory=dict)
    benchmarks: dict[str, BenchmarkRecord] = field(default_factory=dict)
    thresholds: dict[str, GatedBy] = field(default_factory=dict)  # model spec → the file that gated it
    environments: list[dict] = field(default_factory=list)
    settings: dict | None = None  # the run's settings as a threshold file records them (first model's key)
    keys: dict[str, dict] = field(default_factory=dict)  # model spec → its comparability key
    projections: list[KeyProjection] = field(default_factory=list)
    samples: list[SampleRecord] = field(default_factory=list)  # per-sample records of the behaviour cases
    verdicts: dict[tuple, tuple[Verdict, str, bool]] = field(default_factory=dict)  # case key → verdict, why, covered
    measured: set[tuple] = field(default_factory=set)  # keys of the cases that recorded rows
    broken: dict[tuple, str] = field(default_factory=dict)  # cases that died before recording, and why
    other_failures: int = 0  # failed tests that are not gate items (plain pytest in a repository)
    entries: list[CaseEntry] = field(default_factory=list)  # every add() that said something, in order

    @property
    def has_results(self) -> bool:
        return bool(self.rows or self.broken)

    def add(self, case: Case, record: CaseRecord | None, failed: bool, reason: str) -> None:
        """One test report of a gate item (``record`` when it got that far)."""
        if record is not None or failed:
            self.entries.append(CaseEntry(case, record, failed, reason))
        if record is not None:
            self.rows.extend(record.rows)
            self.changes.extend(record.changes)
            self.samples.extend(record.sample_records)
            self.measured.add(case.key)
            self.broken.pop(case.key, None)
            self.verdicts[case.key] = (record.verdict, record.message, record.covered)
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
        self.keys[record.model.spec] = dict(record.settings)
        self.settings = self.settings or dict(record.settings)
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
    families: Mapping[str, str] = field(default_factory=dict)  # --family: model spec (or "*") → family
    thresholds_location: Path | None = None
    strict_env: bool = False
    allow_unbaselined: bool = False
    accept_regression: bool = False
    reference: str | None = None
    interrupted: bool = False
    markdown_limit: int = MARKDOWN_LIMIT
    problems: tuple[str, ...] = ()  # run-level problems found before finishing (a shard that failed)
    shard: object | None = None  # a sharded run: its ShardRecord (run/shards.py), written into the JSON card


@dataclass(frozen=True)
class RunOutcome:
    card: ReportCard
    exit_code: int  # 0 PASS; 1 FAIL (or a run-level problem); 6 INCONCLUSIVE; 7 NO BASELINE
    problems: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.exit_code != 0


def finish_run(record: RunRecord, options: FinishOptions, session=None) -> RunOutcome:
    """Give every model its verdict, bless, build the card, write the report files; say how the run exits.

    session: the controller's :class:`~bias_suite.run.session.GateSession` (cases, rule coverage and the
    threshold file of each model, parsed once; None in unit tests of the card)."""
    problems: list[str] = list(options.problems)
    thresholds = _threshold_files(record, session)
    drift = sorted({f"{spec}: {line}" for spec, threshold in thresholds.items()
                    for env in record.environments for line in threshold.drift(env)})
    if session is not None:
        for spec in session.models:
            problems.extend(f"{spec}: {line}" for line in session.unreachable_rules(spec))
    expected = session.cases() if session is not None else []
    verdicts = model_verdicts(record, expected, problems, drift if options.strict_env else [], options, session)
    updates: list[str] = []
    blessed = False
    accepted: list[str] = []
    if options.update:
        refusal, regressions = _update_refusal(record, options, session)
        unverified = _unverified(record, verdicts)
        if refusal is None and regressions and not options.accept_regression:
            refusal = (f"the run is worse than {_files_of(record)} in {len(regressions)} row(s) (first: "
                       f"{regressions[0]}); blessing would accept the regression. Bless a checkpoint that passes, or "
                       "pass --accept-regression with a --reason that says why this regression is accepted")
        elif refusal is None and unverified and not options.accept_regression:
            refusal = (f"the run could not be compared with {_files_of(record)} ({unverified[0]}), so it cannot show "
                       "that it is no worse: blessing now could accept a regression unseen. Bless under the file's "
                       "settings, or pass --accept-regression with a --reason that says why the baseline moves")
        regressions = regressions + [line for line in unverified if line not in regressions]
        if refusal:
            problems.append(f"thresholds NOT updated: {refusal}")
        else:
            accepted = regressions
            try:
                updates = _bless(record, options, session, accepted)
                blessed = True
            except BiasSuiteError as error:
                problems.append(f"thresholds NOT updated: {error}")
            except OSError as error:
                target = getattr(error, "filename", "") or "the file"
                problems.append(f"thresholds NOT updated: could not write {target}: {error.strerror or error}; "
                                "nothing was changed")
    card = ReportCard.build(record, drift=drift, updates=updates, problems=problems, changes=record.changes,
                            strict_env=options.strict_env, verdicts=verdicts,
                            not_baselined=[v.model for v in verdicts.values() if v.verdict is Verdict.NO_BASELINE],
                            reports=options.reports)
    if options.shard is not None:
        card = replace(card, shard=options.shard.to_json())
    written_problems = []
    for path in options.reports:
        try:
            card.write(Path(path), markdown_limit=options.markdown_limit)
        except OSError as error:
            written_problems.append(f"could not write the report {path}: {error.strerror or error}")
    if written_problems:
        card = card.with_problems(written_problems)
    run_problems = [line for line in problems if line.startswith("thresholds NOT updated")] + written_problems
    exit_code = _exit_code(verdicts, options, blessed and not accepted, bool(run_problems) or record.other_failures > 0)
    return RunOutcome(card, exit_code, tuple(problems + written_problems))


def model_verdicts(record: RunRecord, expected: Sequence[Case], problems: Sequence[str], strict_drift: Sequence[str],
                   options: FinishOptions, session=None) -> dict[str, ModelVerdict]:
    """Each model's verdict from its cases' verdicts, the cases that recorded nothing, and the problems that
    name it (a rule that covers no layer, environment drift under --strict-env)."""
    models = sorted({row.model for row in record.rows} | set(record.models) | {case.model for case in expected})
    found: dict[str, ModelVerdict] = {}
    for model in models:
        if model == options.reference and (session is None or model not in session.candidates):
            found[model] = ModelVerdict(model, None, (), "")
            continue
        cases = [(key, value) for key, value in record.verdicts.items() if key[0] == model]
        worst = Verdict.PASS
        reasons: list[tuple[int, str]] = []
        uncovered = [_case_label(key) for key, (verdict, _, _) in cases if verdict is Verdict.NO_BASELINE]
        for _key, (verdict, message, _) in cases:
            worst = max(worst, verdict, key=lambda v: v.severity)
            reasons += [(verdict.severity, line) for line in message.splitlines() if line]
        # A case that died is never a pass; one that never ran (deselected with -k) is not part of this run.
        dead = [f"{_case_label(key)}: {why}" for key, why in record.broken.items() if key[0] == model]
        named = [line.removeprefix(f"{model}: ") for line in [*problems, *strict_drift]
                 if line.startswith(f"{model}: ")]
        if dead or named:
            worst = max(worst, Verdict.INCONCLUSIVE, key=lambda v: v.severity)
            reasons += [(Verdict.INCONCLUSIVE.severity, line) for line in [*dead, *named]]
        if uncovered:
            reasons.append((Verdict.NO_BASELINE.severity, "no baseline judged: " + ", ".join(uncovered[:8])
                            + (f" and {len(uncovered) - 8} more" if len(uncovered) > 8 else "")))
        ordered = tuple(dict.fromkeys(line for _, line in sorted(reasons, key=lambda item: -item[0])))
        errored = bool(dead) or any(row.status is Status.ERROR for row in record.rows if row.model == model)
        found[model] = ModelVerdict(model, worst, ordered, _fix(model, worst, record, options, errored))
    return found


def _case_label(key: tuple) -> str:
    _, benchmark, layer, kind = key
    return f"{Path(benchmark).name}" + (f" L{layer}" if layer is not None else "") + f" ({kind})"


def _fix(model: str, verdict: Verdict, record: RunRecord, options: FinishOptions, errored: bool = False) -> str:
    """What to do about a NO BASELINE or INCONCLUSIVE verdict: the command that fixes it."""
    gated_by = record.thresholds.get(model)
    if verdict is Verdict.INCONCLUSIVE and errored:
        return "a case could not be measured: fix what the error above names, then run again"
    if verdict is Verdict.NO_BASELINE:
        family = (options.families.get(model) or options.families.get("*") or (gated_by.family if gated_by and
                  gated_by.baselined else None) or "NAME")
        considered = ""
        if gated_by and gated_by.considered:
            considered = f" (files considered: {'; '.join(gated_by.considered)})"
        return (f"bless the checkpoint {model} must not be worse than — the last release, never this candidate: "
                f"pytest --model=BASELINE_CHECKPOINT --update-thresholds --family {family} --reason TEXT; then gate "
                f"this one with --family {family}. Or compare with it in the same run: --bias-reference="
                f"BASELINE_CHECKPOINT. --allow-unbaselined reports without failing{considered}")
    if verdict is Verdict.INCONCLUSIVE:
        return ("make the run comparable with what it is judged against (the settings named above), give it more "
                "samples where an interval straddles its tolerance, or bless a new baseline under the new settings "
                "(pytest --model=BASELINE_CHECKPOINT --update-thresholds --accept-regression --reason TEXT: it "
                "cannot be compared with the old one, so say why it moves)")
    return ""


def _exit_code(verdicts: Mapping[str, ModelVerdict], options: FinishOptions, blessed: bool, run_failed: bool) -> int:
    """1 when a model FAILs (or the run itself failed: a refused bless, an unwritable report, another test),
    else 6 for INCONCLUSIVE, 7 for NO BASELINE (0 with --allow-unbaselined), else 0. A bless that wrote the
    next version without accepting a regression exits 0: a model without a baseline is what it is for (one
    its family file baselines but could not be compared with needs --accept-regression)."""
    judged = [v.verdict for v in verdicts.values() if v.verdict is not None]
    if run_failed or Verdict.FAIL in judged:
        return Verdict.FAIL.exit_code
    if blessed:
        return 0
    if Verdict.INCONCLUSIVE in judged:
        return Verdict.INCONCLUSIVE.exit_code
    if Verdict.NO_BASELINE in judged and not options.allow_unbaselined:
        return Verdict.NO_BASELINE.exit_code
    return 0


def _threshold_files(record: RunRecord, session) -> dict[str, ThresholdFile]:
    """Each recorded model's threshold file as the session parsed it (no file is read twice)."""
    if session is None:
        return {}
    return {spec: session.selection(spec).file for spec in record.thresholds}


def _files_of(record: RunRecord) -> str:
    return ", ".join(sorted({gated_by.file for gated_by in record.thresholds.values()})) or "its threshold file"


def _unverified(record: RunRecord, verdicts: Mapping[str, ModelVerdict]) -> list[str]:
    """What keeps a model that a family file baselines INCONCLUSIVE (other settings, an interval that
    straddles, too few samples): a bless of it replaces a baseline it could not be compared with."""
    return [reason for spec, verdict in verdicts.items() if verdict.verdict is Verdict.INCONCLUSIVE
            and (gated := record.thresholds.get(spec)) is not None and gated.baselined
            for reason in (verdict.reasons[:1] or (f"{spec} is INCONCLUSIVE",))]


def _update_refusal(record: RunRecord, options: FinishOptions, session) -> tuple[str | None, list[str]]:
    """Why this run may not write threshold files (None when it may: it must be complete), and the rows and
    changes that would be accepted as regressions (a failed row or change, or a change that straddles its
    tolerance)."""
    regressions = [describe_row(row) for row in record.rows if row.status is Status.FAIL]
    regressions += [describe_change(change) for change in record.changes
                    if change.status is Status.FAIL or change.straddles]
    if options.interrupted:
        return "the run was interrupted before every case was measured", regressions
    errors = [row for row in record.rows if row.status is Status.ERROR]
    if errors:
        first = errors[0]
        return (f"{len(errors)} value(s) could not be measured (first: {first.model} {first.benchmark} "
                f"L{first.layer} {first.metric}: {first.message or 'error'})"), regressions
    if session is not None:
        missing = record.missing(session.cases())
        if missing:
            return (f"{len(missing)} case(s) recorded nothing "
                    f"({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''})"), regressions
    keys = {json.dumps(key, sort_keys=True) for key in record.keys.values()}
    if len(keys) > 1:
        return ("the models of this run were measured with different settings (processor, dtype, …); bless them "
                "in separate runs"), regressions
    return None, regressions


def _bless(record: RunRecord, options: FinishOptions, session, accepted: Sequence[str]) -> list[str]:
    from bias_suite.gate.bless import BlessedModel, BlessRequest, bless
    from bias_suite.gate.thresholds import PACKAGED_DEFAULT

    location = options.thresholds_location or Path("thresholds")
    target_file = location if location.suffix.lower() in (".yaml", ".yml") else None
    if target_file is not None and target_file.resolve() == PACKAGED_DEFAULT.resolve():
        raise BiasSuiteError("the package's generic default.yaml cannot be blessed: pass --thresholds FOLDER")
    candidates = set(session.candidates) if session is not None else set(record.models)
    models = []
    for spec, model in sorted(record.models.items()):
        if spec not in candidates:
            continue
        models.append(BlessedModel(spec=spec, model_type=model.model_type,
                                   names=(spec, Path(spec.rstrip("/")).name), n_layers=model.n_layers,
                                   revision=model.revision, config_hash=model.config_hash,
                                   family=options.families.get(spec, options.families.get("*"))))
    card = ReportCard.build(record, changes=(), verdicts={})
    request = BlessRequest(location=location if target_file is None else target_file.parent,
                           reason=options.reason or "", rows=[row for row in record.rows if row.model in candidates],
                           models=models, environment=record.environments[0] if record.environments else {},
                           settings=record.settings or {},
                           benchmarks={name: {"n_samples": benchmark.n_samples, "hash": benchmark.hash}
                                       for name, benchmark in record.benchmarks.items()},
                           suite_version=__version__, target_file=target_file, card=card.to_json(),
                           accepted_regression=tuple(accepted))
    return bless(request)
