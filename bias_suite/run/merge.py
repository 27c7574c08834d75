"""Merging the JSON cards of a run's shards into the card, verdicts and exit code of the whole run.

:func:`merge_shards` reads each shard's :class:`~bias_suite.run.shards.ShardRecord`, proves that the shards
make one whole run — every shard of the manifest present exactly once, the same manifest (cells, cases,
options, benchmark contents, suite version), each model measured with the same settings everywhere, the
same threshold file gating each model now as when the shards ran — and then replays every shard's entries
through ``RunRecord.add`` in the order an unsharded run records its cases, and finishes the run with
:func:`~bias_suite.run.finish.finish_run`: the same verdicts, bless, card and exit code, through the same
code. A :class:`MergedSession` answers what ``finish_run`` asks of a session from the manifest, so merging
needs neither the models nor the benchmark files, only the threshold files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bias_suite import __version__
from bias_suite.errors import ShardError
from bias_suite.gate.baseline import read_card
from bias_suite.gate.records import GatedBy
from bias_suite.run.finish import FinishOptions, RunOutcome, RunRecord, finish_run
from bias_suite.run.records import Case, CaseEntry
from bias_suite.run.session import GateSession
from bias_suite.run.shards import ShardManifest, ShardRecord, shard_cells


@dataclass(frozen=True)
class MergeOptions:
    """How the merged run finishes. ``families`` / ``thresholds`` None: as the shards were run (given, they
    must select the same files for every model; a bless writes with them); ``failed``: shards that never
    produced a card (the launcher's, after their retry), index → why: their cases are errors of the run."""

    reports: tuple[str, ...] = ()
    update: bool = False
    reason: str | None = None
    accept_regression: bool = False
    families: Mapping[str, str] | None = None
    thresholds: str | None = None
    failed: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardCard:
    """A shard's JSON card as read from ``path``."""

    path: str
    shard: ShardRecord
    suite_version: str


def read_shard(path: str | Path) -> ShardCard:
    """The shard record in the JSON card at ``path``; a :class:`ShardError` naming the file when it is not one."""
    try:
        card = read_card(Path(path))
    except FileNotFoundError:
        raise ShardError(f"{path}: no such shard card") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as error:
        raise ShardError(f"{path}: not a JSON card ({error})") from None
    if not isinstance(card, dict) or "shard" not in card:
        raise ShardError(f"{path}: not a shard's card (no \"shard\" section): write one with pytest --model=… "
                         "--bias-shard=K/N --bias-report=shard-K.json")
    try:
        shard = ShardRecord.from_json(card["shard"], str(path))
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, ShardError):
            raise
        raise ShardError(f"{path}: its shard section is incomplete or damaged ({error!r})") from None
    return ShardCard(str(path), shard, str(card.get("suite_version", "")))


class MergedSession:
    """What :func:`~bias_suite.run.finish.finish_run` asks of a session, answered from the shards' manifest:
    the models and candidates, every case of the run, and each model's threshold file and unreachable rules
    (selected from its recorded config description, as the shards selected it)."""

    def __init__(self, manifest: ShardManifest, families: Mapping[str, str], thresholds: str):
        options = manifest.options
        self.manifest = manifest
        self._gate = GateSession(models=options.models, benchmarks=options.benchmarks, settings=options.settings,
                                 thresholds=Path(thresholds), reference=options.reference, families=families,
                                 baseline=options.baseline,
                                 descriptions={model.spec: model.description for model in manifest.models})
        self.models, self.candidates, self.reference = self._gate.models, self._gate.candidates, options.reference

    def cases(self) -> list[Case]:
        return list(self.manifest.cases)

    def selection(self, spec: str):
        return self._gate.selection(spec)

    def unreachable_rules(self, spec: str) -> list[str]:
        return self._gate.unreachable_rules(spec)


def check_whole(cards: Sequence[ShardCard], failed: Mapping[int, str] = ()) -> ShardManifest:
    """The manifest the shards share, once proven: one run, every shard present once (or listed in
    ``failed``), the same suite version everywhere. Raises :class:`ShardError` naming what is wrong."""
    if not cards:
        raise ShardError("no shard cards to merge")
    versions = {card.path: card.suite_version for card in cards}
    versions.update({f"{card.path} (manifest)": card.shard.manifest.suite_version for card in cards})
    if len(set(versions.values()) | {__version__}) > 1:
        listed = ", ".join(f"{path}: {version}" for path, version in versions.items())
        raise ShardError(f"the shards were written by other bias-suite versions than this one ({__version__}): "
                         f"{listed}; run every shard and the merge with one version")
    first = cards[0]
    for card in cards[1:]:
        differences = first.shard.manifest.differences(card.shard.manifest)
        if differences:
            raise ShardError(f"{first.path} and {card.path} are shards of different runs (their manifests differ in "
                             f"{'; '.join(differences)}): run every shard with the same options")
    count = first.shard.manifest.count
    by_index: dict[int, list[str]] = {}
    for card in cards:
        by_index.setdefault(card.shard.index, []).append(card.path)
    duplicated = {index: paths for index, paths in by_index.items() if len(paths) > 1}
    if duplicated:
        raise ShardError("; ".join(f"shard {index}/{count} is given twice: {', '.join(paths)}"
                                   for index, paths in sorted(duplicated.items())) + ": give each shard once")
    missing = [index for index in range(1, count + 1) if index not in by_index and index not in failed]
    if missing:
        have = ", ".join(f"{index}/{count} ({paths[0]})" for index, paths in sorted(by_index.items()))
        raise ShardError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(f'{k}/{count}' for k in missing)} "
                         f"{'are' if len(missing) > 1 else 'is'} missing (have {have}): the merged run would not be "
                         "whole; run the missing shards with --bias-shard=K/N and merge them all")
    _check_settings(cards)
    # the order of the first shard's options is the order of the unsharded run the merge stands for
    return min(cards, key=lambda card: card.shard.index).shard.manifest


def _check_settings(cards: Sequence[ShardCard]) -> None:
    """Every model measured with the same comparability key (dtype, processor, …) in every shard."""
    seen: dict[str, tuple[dict, str]] = {}
    for card in cards:
        for entry in card.shard.entries:
            if entry.record is None:
                continue
            settings, model = dict(entry.record.settings), entry.case.model
            if model not in seen:
                seen[model] = (settings, card.path)
                continue
            other, where = seen[model]
            if other != settings:
                keys = ", ".join(f"{key}: {json.dumps(other.get(key))} vs {json.dumps(settings.get(key))}"
                                 for key in sorted(set(other) | set(settings)) if other.get(key) != settings.get(key))
                raise ShardError(f"{model} was measured with other settings in {where} than in {card.path} ({keys}): "
                                 "run every shard in the same environment (--device, --dtype, versions)")


def replay(cards: Sequence[ShardCard], manifest: ShardManifest, failed: Mapping[int, str] = ()) -> RunRecord:
    """The controller's record of the whole run: each shard's entries added in the order an unsharded run
    records its cases; the cases of a ``failed`` shard as errors that name it."""
    entries: dict[tuple, list] = {}
    for card in cards:
        cells = set(card.shard.cells)
        for entry in card.shard.entries:
            if (entry.case.model, entry.case.benchmark) not in cells:
                raise ShardError(f"{card.path}: shard {card.shard.label} recorded {entry.case.id} ({entry.case.kind}), "
                                 "which is not one of its cells")
            entries.setdefault(entry.case.key, []).append(entry)
    for index, why in failed.items():
        for case in manifest.cases_of(shard_cells(manifest.cells, index, manifest.count)):
            entries.setdefault(case.key, []).append(CaseEntry(case, None, True,
                                                              f"shard {index}/{manifest.count} failed: {why}"))
    unknown = set(entries) - {case.key for case in manifest.cases}
    if unknown:
        raise ShardError(f"the shards recorded {len(unknown)} case(s) their manifest does not list: run them again")
    record = RunRecord()
    for case in manifest.cases:
        for entry in entries.get(case.key, ()):
            record.add(entry.case, entry.record, entry.failed, entry.reason)
    record.other_failures = sum(card.shard.other_failures for card in cards)
    return record


def _check_selection(record: RunRecord, session: MergedSession) -> None:
    """The threshold file that gated each model in its shard still gates it here, at the same version."""
    for spec, recorded in record.thresholds.items():
        selection = session.selection(spec)
        threshold = selection.file
        here = (threshold.name if threshold.is_packaged_default else None, threshold.version, selection.matched_by,
                selection.baselined)
        there = (recorded.label if threshold.is_packaged_default else None, recorded.version, recorded.matched_by,
                 recorded.baselined)
        if here != there or (not threshold.is_packaged_default and not _same_file(recorded, threshold.path)):
            raise ShardError(f"{spec} was gated by {recorded.label} v{recorded.version} (matched by "
                             f"{recorded.matched_by}) in its shard, but {threshold.path} v{threshold.version} (matched "
                             f"by {selection.matched_by}) gates it here: merge where the shards ran, with their "
                             "--thresholds and --family, before the threshold files change")


def _cells(manifest: ShardManifest, index: int) -> str:
    cells = shard_cells(manifest.cells, index, manifest.count)
    return ", ".join(f"{model} × {benchmark}" for model, benchmark in cells)


def _same_file(recorded: GatedBy, path: Path) -> bool:
    try:
        return Path(recorded.file).resolve() == path.resolve()
    except OSError:
        return False


def merge_shards(cards: Sequence[ShardCard], options: MergeOptions | None = None) -> RunOutcome:
    """The whole run's verdicts, bless, card (written to ``options.reports``) and exit code, from its shards."""
    options = options or MergeOptions()
    manifest = check_whole(cards, options.failed)
    gate = manifest.options
    families = dict(gate.families if options.families is None else options.families)
    thresholds = gate.thresholds if options.thresholds is None else options.thresholds
    record = replay(cards, manifest, options.failed)
    session = MergedSession(manifest, families, thresholds)
    _check_selection(record, session)
    problems = tuple(f"shard {index}/{manifest.count} failed, its cells {_cells(manifest, index)} were not measured: "
                     f"{why}" for index, why in sorted(options.failed.items()))
    finish = FinishOptions(
        reports=tuple(options.reports), update=options.update, reason=options.reason, families=families,
        thresholds_location=Path(thresholds), strict_env=gate.strict_env, allow_unbaselined=gate.allow_unbaselined,
        accept_regression=options.accept_regression, reference=gate.reference,
        interrupted=any(card.shard.interrupted for card in cards), problems=problems)
    return finish_run(record, finish, session=session)
