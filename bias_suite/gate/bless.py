"""Blessing a run: the next version of each family's threshold file, written safely.

A model's family file is the file that matches it (:func:`bias_suite.gate.thresholds.family_file`), never a
file chosen by a folder's name. When none matches, a new file is created for the family: named after
``--family`` (or the model type), matching the model type and, with ``--family``, the name pattern
``*FAMILY*`` — so the next checkpoint of the family is gated by it without ``--thresholds=FILE``. A file
of that name that gates other models is never overwritten.

Bounds are per benchmark and layer: a ``max`` / ``min`` rule moves to the worst interval end this run
measured (so the run that made it passes, and a later model fails only when its whole interval lies
beyond), a ``baseline`` rule to the worst point estimate (its tolerance kept). Several models of one
family in one run produce one version that every one of them passes. A bound that would sit at its
metric's ceiling (and so could never fail) is left out and reported.

Writing is transactional: under a file lock the current file is re-read (another run may have
written a version meanwhile), the new version is computed from it, written to a unique temporary file
in the same folder and moved into place atomically — readers never see a partial file and no
concurrent update is lost.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock

from bias_suite.errors import ThresholdError
from bias_suite.gate.rows import Bound, ResultRow
from bias_suite.gate.thresholds import DEFAULT_FILE, ENVIRONMENT_KEYS, ThresholdFile, family_file, load_threshold_file
from bias_suite.metrics.registry import BEHAVIOUR, HIGHER_IS_WORSE, LOWER_IS_WORSE, spec_of

# Metrics a new family file bounds: non-saturating, size-invariant, one per mechanism.
BLESSED_METRICS = ("mmd2", "ratio", "logit_gap.question", "visual_share.question", "text_preference_rate")
FILE_ORDER = ("version", "family", "match", "provisional", "provisional_reason", "environment", "provenance",
              "settings", "benchmarks", "rules", "history")


@dataclass(frozen=True)
class BlessedModel:
    """One model of the run, as blessing needs it."""

    spec: str
    model_type: str
    names: tuple[str, ...]  # what a name pattern is matched against (spec, last path part)
    n_layers: int
    revision: str | None = None
    config_hash: str | None = None


@dataclass
class BlessRequest:
    """Everything a run contributes to blessing (rows of every model, pooled values only)."""

    location: Path  # the threshold folder
    reason: str
    rows: list[ResultRow]
    models: list[BlessedModel]
    environment: Mapping[str, str]
    settings: Mapping[str, object]
    benchmarks: Mapping[str, Mapping]  # name → {n_samples, hash}
    suite_version: str
    family: str | None = None  # --family
    target_file: Path | None = None  # --thresholds=FILE: every model's bounds go to this file


def target_for(location: Path, model: BlessedModel, family: str | None) -> tuple[Path, dict | None]:
    """The file a model's bounds go to, and (for a new file) its ``match`` block."""
    existing = family_file(location, model.model_type, model.names)
    if existing is not None:
        return existing.path, None
    name = family or model.model_type
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "family"
    path = location / f"{stem}.yaml"
    if path.name == DEFAULT_FILE:
        raise ThresholdError(f"{path} holds the generic bounds for models no family file matches: pass --family NAME "
                             "to bless this model under its own name")
    if path.exists():
        other = load_threshold_file(path)
        raise ThresholdError(
            f"{path} exists but gates other models (match: {dict(other.match) or 'none'}), not {model.spec} "
            f"(model_type {model.model_type!r}); pass --family NAME to bless it under another name, or add a "
            "match for it to that file")
    match: dict = {"model_type": [model.model_type]}
    if family:
        match["name"] = [f"*{family}*"]
    return path, match


def bless(request: BlessRequest) -> list[str]:
    """Write the next version of every family file the run's models belong to. Returns the changes."""
    if not request.reason or not request.reason.strip():
        raise ThresholdError("--update-thresholds needs --reason TEXT: say why the thresholds change")
    targets: dict[Path, tuple[dict | None, list[BlessedModel]]] = {}
    if request.target_file is not None:
        chosen = load_threshold_file(request.target_file)
        if chosen.is_default or chosen.is_packaged_default:
            raise ThresholdError(f"{request.target_file} holds generic bounds for every model: bless into a family "
                                 "file instead (--thresholds FOLDER, with --family NAME for a new family)")
        targets[request.target_file] = (None, list(request.models))
    else:
        request.location.mkdir(parents=True, exist_ok=True)
        for model in request.models:
            path, match = target_for(request.location, model, request.family)
            targets.setdefault(path, (match, []))[1].append(model)
    changes = []
    for path, (match, models) in sorted(targets.items()):
        with FileLock(str(lock_path(path))):
            current = load_threshold_file(path) if path.exists() else None
            document, changed = next_document(current, match, models, request)
            write_threshold_file(path, document)
        old = f"version {current.version}" if current else "new file"
        changes.append(f"{path}: {old} → version {document['version']} "
                       f"({', '.join(m.spec for m in models)})")
        changes.extend(changed)
    return changes


def next_document(current: ThresholdFile | None, match: dict | None, models: Sequence[BlessedModel],
                  request: BlessRequest) -> tuple[dict, list[str]]:
    """The next version of ``current`` (or a new family document) from the run's rows of ``models``."""
    specs = {m.spec for m in models}
    n_layers = {m.spec: m.n_layers for m in models}
    rows = [row for row in request.rows if row.model in specs and row.head is None and row.value is not None
            and math.isfinite(row.value)]
    changes: list[str] = []
    if current is None:
        rules = _new_rules(rows, changes)
        document: dict = {"version": 1, "family": request.family or models[0].model_type, "match": match, "history": []}
    else:
        rules = _reblessed_rules(current, rows, n_layers, changes)
        document = copy.deepcopy(dict(current.document))
        previous = {key: copy.deepcopy(current.document.get(key))
                    for key in ("version", "provenance", "environment", "settings", "rules")}
        document["history"] = [previous, *(document.get("history") or [])]
        document["version"] = current.version + 1
        document.pop("provisional", None)  # measured now
        document.pop("provisional_reason", None)
    if not rules:
        raise ThresholdError(f"{', '.join(sorted(specs))}: the run measured nothing a rule could bound")
    document["rules"] = rules
    document["environment"] = {key: str(request.environment.get(key)) for key in ENVIRONMENT_KEYS}
    document["provenance"] = {
        "date": datetime.date.today().isoformat(), "suite_version": request.suite_version,
        "models": [{"spec": m.spec, "revision": m.revision, "config_hash": m.config_hash} for m in models],
        "reason": request.reason.strip(),
    }
    document["settings"] = dict(request.settings)
    recorded = dict((current.benchmark_records if current else {}) or {})
    recorded.update({name: dict(info) for name, info in request.benchmarks.items()})
    document["benchmarks"] = recorded
    return document, changes


def _worst_end(rows: Sequence[ResultRow], higher_worse: bool, point: bool) -> float:
    values = [row.value if point or row.ci is None else (row.ci[1] if higher_worse else row.ci[0]) for row in rows]
    return float(f"{(max(values) if higher_worse else min(values)):.6g}")


def _rule(metric: str, benchmark: str, layer: int | None, form: str, limit: float, tolerance: float | None = None,
          note: str | None = None) -> dict:
    rule = {"metric": metric, "benchmarks": [benchmark], "layers": "all" if layer is None else str(layer), form: limit}
    if tolerance is not None:
        rule["tolerance"] = tolerance
    if note:
        rule["note"] = note
    return rule


def _bounded(metric: str, form: str, limit: float, tolerance: float | None, where: str, changes: list[str]) -> bool:
    """False (and a note in ``changes``) when the bound would sit at the metric's ceiling."""
    spec = spec_of(metric)
    direction = spec.direction if form == "baseline" else (HIGHER_IS_WORSE if form == "max" else LOWER_IS_WORSE)
    effective = limit if tolerance is None else (limit + tolerance if direction == HIGHER_IS_WORSE
                                                 else limit - tolerance)
    if Bound(effective, direction).can_fail(spec.range):
        return True
    changes.append(f"{where} {metric}: the measured bound {effective:g} sits at the end of the metric's range, "
                   "so it could never fail — not gated")
    return False


def _new_rules(rows: Sequence[ResultRow], changes: list[str]) -> list[dict]:
    rules = []
    groups: dict[tuple, list[ResultRow]] = {}
    for row in rows:
        if row.metric in BLESSED_METRICS:
            groups.setdefault((row.metric, row.benchmark, row.layer), []).append(row)
    for (metric, benchmark, layer), measured in sorted(groups.items(), key=lambda item: (
            item[0][1], -1 if item[0][2] is None else item[0][2], BLESSED_METRICS.index(item[0][0]))):
        higher_worse = spec_of(metric).direction == HIGHER_IS_WORSE
        form = "max" if higher_worse else "min"
        limit = _worst_end(measured, higher_worse, point=False)
        where = f"{benchmark}" + (f" L{layer}" if layer is not None else "")
        if _bounded(metric, form, limit, None, where, changes):
            rules.append(_rule(metric, benchmark, layer, form, limit))
    return rules


def _reblessed_rules(current: ThresholdFile, rows: Sequence[ResultRow], n_layers: Mapping[str, int],
                     changes: list[str]) -> list[dict]:
    """Each rule the run measured becomes one rule per measured (benchmark, layer); what it covered but the
    run did not measure keeps the old bound; rules the run did not touch stay as they are."""
    rules: list[dict] = []
    for rule in current.rules:
        original = dict(current.document["rules"][rule.index])
        covered = [row for row in rows if not rule.on_change
                   and rule.covers(row.metric, row.benchmark, row.layer, n_layers[row.model])]
        if not covered:
            rules.append(original)
            continue
        groups: dict[tuple, list[ResultRow]] = {}
        for row in covered:
            groups.setdefault((row.benchmark, row.layer), []).append(row)
        higher_worse = rule.bound.direction == HIGHER_IS_WORSE
        for (benchmark, layer), measured in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or -1)):
            limit = _worst_end(measured, higher_worse, point=rule.form == "baseline")
            where = f"{current.name} rules[{rule.index}] {benchmark}" + (f" L{layer}" if layer is not None else "")
            if _bounded(rule.metric, rule.form, limit, rule.tolerance, where, changes):
                rules.append(_rule(rule.metric, benchmark, layer, rule.form, limit, rule.tolerance,
                                   original.get("note")))
                old = original[rule.form]
                if old != limit:
                    changes.append(f"{where} {rule.metric}: {rule.form} {old} → {limit}")
        rules.extend(_remainder(original, rule, groups, n_layers))
    return rules


def _remainder(original: dict, rule, measured: Mapping[tuple, list], n_layers: Mapping[str, int]) -> list[dict]:
    """What a re-blessed rule covered that the run did not measure, as rules keeping the old bound:
    benchmarks it lists that were not run, and layers of a run benchmark that were not captured."""
    remainder = []
    run_benchmarks = sorted({benchmark for benchmark, _ in measured})
    if rule.benchmarks is not None:
        untouched = [name for name in rule.benchmarks if name not in run_benchmarks]
        if untouched:
            remainder.append({**original, "benchmarks": untouched})
    if spec_of(rule.metric).family != BEHAVIOUR:
        depth = max(n_layers.values())
        for benchmark in run_benchmarks:
            layers = set(rule.layers.resolve_within(depth)) - {layer for name, layer in measured if name == benchmark}
            if layers:
                remainder.append({**original, "benchmarks": [benchmark], "layers": ",".join(map(str, sorted(layers)))})
    return remainder


def lock_path(path: Path) -> Path:
    """Where the lock of threshold file ``path`` lives: the system's temporary folder, named after the
    file's absolute path, so that blessing leaves no ``.lock`` file in the user's repository."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "bias_suite-locks"
    folder.mkdir(exist_ok=True)
    return folder / f"{path.name}-{digest}.lock"


def write_threshold_file(path: Path, document: Mapping) -> None:
    """Write ``document`` as YAML (keys in schema order, one rule per line) through a unique temporary file
    in the same folder and an atomic rename. Call under the file's lock when read-modify-writing."""
    ordered = {key: document[key] for key in FILE_ORDER if key in document and document[key] is not None}
    rules = ordered.pop("rules", [])
    history = ordered.pop("history", [])
    text = yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=120)
    text += "rules:\n" + "".join(
        "- " + yaml.safe_dump(rule, default_flow_style=True, sort_keys=False, allow_unicode=True, width=1000)
        for rule in rules)
    text += yaml.safe_dump({"history": history}, sort_keys=False, allow_unicode=True, width=120)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
