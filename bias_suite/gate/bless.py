"""Blessing a run: the next version of each family's threshold file, and the blessed run beside it.

A model's family file is the file of the family it declares (``--family NAME``) or the file whose name
patterns match it; a new family needs a declared name (a file that matched by architecture alone would
baseline every checkpoint of that architecture). A new file is ``NAME.yaml`` matching the model type and
the name pattern ``*NAME*``; a file of that name that gates other models is never overwritten;
``--thresholds=FILE.yaml`` blesses into that file (created when it does not exist yet).

Each version holds:

* bounds per benchmark and layer: a ``max`` / ``min`` rule at the worst interval end this run measured
  (so the run that made it passes, and a later model fails only when its whole interval lies beyond), a
  ``baseline`` rule at the worst point estimate (its tolerance kept);
* a ``max_increase`` rule per blessed metric (the regression test: a later run of the family is paired with
  this one, sample by sample, and a change beyond the tolerance fails), its tolerance from the file's
  ``policy`` or the metric registry;
* ``baseline_card``: this run's JSON card (the rows of the blessed metrics with their leave-one-sample-out
  values, or bootstrap replicates, gzip) in a file beside the YAML, named by version, with its sha256;
* ``settings``: the comparability key the bounds were measured with; ``not_bounded``: every blessed metric
  that got no bound, with the reason (a bound at the end of the metric's range could never fail).

Writing is transactional: under a file lock the current file is re-read (another run may have written a
version meanwhile), the new version is computed from it, written to a unique temporary file in the same
folder, flushed, and moved into place atomically — readers never see a partial file, no concurrent update
is lost, and a failed write (a full disk) leaves the previous version as it was. The file keeps its mode
(a new one gets 0644 less the umask); a symlinked threshold file is updated through its target.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import gzip
import hashlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock

from bias_suite.errors import ThresholdError
from bias_suite.gate.rows import Bound, ResultRow
from bias_suite.gate.thresholds import (
    DEFAULT_FILE,
    ENVIRONMENT_KEYS,
    ThresholdFile,
    declared_file,
    family_file,
    load_threshold_file,
    threshold_files,
)
from bias_suite.metrics import intervals
from bias_suite.metrics.registry import BEHAVIOUR, HIGHER_IS_WORSE, LOWER_IS_WORSE, spec_of

# Metrics a new family file bounds: non-saturating, size-invariant, one per mechanism.
BLESSED_METRICS = ("mmd2", "ratio", "logit_gap.question", "visual_share.question", "text_preference_rate")
FILE_ORDER = ("version", "family", "match", "provisional", "provisional_reason", "environment", "provenance",
              "settings", "benchmarks", "policy", "baseline_card", "not_bounded", "rules", "history")
NEW_FILE_MODE = 0o644  # less the umask


@dataclass(frozen=True)
class BlessedModel:
    """One model of the run, as blessing needs it."""

    spec: str
    model_type: str
    names: tuple[str, ...]  # what a name pattern is matched against (spec, last path part)
    n_layers: int
    revision: str | None = None
    config_hash: str | None = None
    family: str | None = None  # declared with --family


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
    target_file: Path | None = None  # --thresholds=FILE.yaml: every model's bounds go to this file
    card: Mapping | None = None  # the run's JSON card: the blessed run is stored from it
    accepted_regression: tuple[str, ...] = ()  # --accept-regression: the failing rows and changes accepted


def target_for(location: Path, model: BlessedModel) -> tuple[Path, dict | None]:
    """The file a model's bounds go to, and (for a new file) its ``match`` block."""
    family = model.family
    files = threshold_files(location)
    existing = declared_file(location, family, files) if family else None
    if existing is None:
        matched = family_file(location, model.model_type, model.names, files)
        if matched is not None and matched.matches(model.model_type, model.names) == "name":
            existing = matched
    if existing is not None:
        types = existing.match.get("model_type", [])
        if types and model.model_type not in types:
            raise ThresholdError(
                f"{existing.path} gates other models (family {existing.family!r}, model_type {types}), not "
                f"{model.spec} (model_type {model.model_type!r}); choose another --family NAME")
        return existing.path, None
    if family is None:
        raise ThresholdError(
            f"{model.spec}: no family file in {location}/ names this model; pass --family NAME to bless it as the "
            "baseline of family NAME (later checkpoints declare it with --family NAME, or match *NAME* by name)")
    path = location / f"{_file_stem(family)}.yaml"
    if path.name == DEFAULT_FILE:
        raise ThresholdError(f"{path} holds the generic bounds for models no family file matches: choose another "
                             "--family NAME")
    if path.exists():
        other = load_threshold_file(path)
        raise ThresholdError(
            f"{path} exists but gates other models (family {other.family!r}, match: {dict(other.match) or 'none'}), "
            f"not {model.spec}; choose another --family NAME, or declare that file's family")
    return path, {"model_type": [model.model_type], "name": [f"*{family}*"]}


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "family"


def bless(request: BlessRequest) -> list[str]:
    """Write the next version of every family file the run's models belong to. Returns the changes."""
    if not request.reason or not request.reason.strip():
        raise ThresholdError("--update-thresholds needs --reason TEXT: say why the thresholds change")
    targets: dict[Path, tuple[dict | None, list[BlessedModel]]] = {}
    if request.target_file is not None:
        path = request.target_file
        match = None
        if path.exists():
            chosen = load_threshold_file(path)
            if chosen.is_default or chosen.is_packaged_default:
                raise ThresholdError(f"{path} holds generic bounds for every model: bless into a family file instead "
                                     "(--thresholds FOLDER or FILE.yaml, with --family NAME for a new family)")
        else:
            family = next((m.family for m in request.models if m.family), None) or path.stem
            types = sorted({m.model_type for m in request.models})
            match = {"model_type": types, "name": [f"*{family}*"]}
            path.parent.mkdir(parents=True, exist_ok=True)
        targets[path] = (match, list(request.models))
    else:
        request.location.mkdir(parents=True, exist_ok=True)
        for model in request.models:
            path, match = target_for(request.location, model)
            targets.setdefault(path, (match, []))[1].append(model)
    changes = []
    for path, (match, models) in sorted(targets.items()):
        with FileLock(str(lock_path(path))):
            current = load_threshold_file(path) if path.exists() else None
            document, changed = next_document(current, match, models, request, path)
            written_card = write_baseline_card(path, document, models, request)
            try:
                write_threshold_file(path, document)
            except BaseException:
                if written_card is not None:
                    written_card.unlink(missing_ok=True)
                raise
            _remove_earlier_cards(path, current, written_card)
        old = f"version {current.version}" if current else "new file"
        changes.append(f"{path}: {old} → version {document['version']} "
                       f"({', '.join(m.spec for m in models)})")
        changes.extend(changed)
    return changes


def next_document(current: ThresholdFile | None, match: dict | None, models: Sequence[BlessedModel],
                  request: BlessRequest, path: Path | None = None) -> tuple[dict, list[str]]:
    """The next version of ``current`` (or a new family document) from the run's rows of ``models``:
    bounds, ``max_increase`` rules, ``settings``, ``not_bounded`` and the ``baseline_card`` entry (its sha256
    is filled in by :func:`write_baseline_card`)."""
    specs = {m.spec for m in models}
    n_layers = {m.spec: m.n_layers for m in models}
    rows = [row for row in request.rows if row.model in specs and row.head is None and row.value is not None
            and math.isfinite(row.value)]
    changes: list[str] = []
    unbounded: list[dict] = []
    if current is None:
        rules = _new_rules(rows, changes, unbounded)
        family = next((m.family for m in models if m.family), None) or (path.stem if path else models[0].model_type)
        document: dict = {"version": 1, "family": family, "match": match, "history": []}
    else:
        rules = _reblessed_rules(current, rows, n_layers, changes, unbounded)
        document = copy.deepcopy(dict(current.document))
        previous = {key: copy.deepcopy(current.document.get(key))
                    for key in ("version", "provenance", "environment", "settings", "rules")}
        document["history"] = [previous, *(document.get("history") or [])]
        document["version"] = current.version + 1
        document.pop("provisional", None)  # measured now
        document.pop("provisional_reason", None)
    if not rules:
        raise ThresholdError(f"{', '.join(sorted(specs))}: the run measured nothing a rule could bound")
    rules += _change_rules(rules, rows, current, changes)
    document["rules"] = rules
    document["not_bounded"] = unbounded or None
    document["environment"] = {key: str(request.environment.get(key)) for key in ENVIRONMENT_KEYS}
    document["provenance"] = {
        "date": datetime.date.today().isoformat(), "suite_version": request.suite_version,
        "models": [{"spec": m.spec, "revision": m.revision, "config_hash": m.config_hash} for m in models],
        "reason": request.reason.strip(),
    }
    if request.accepted_regression:
        document["provenance"]["accepted_regression"] = list(request.accepted_regression)
        changes.append(f"accepted as a regression (--accept-regression): {len(request.accepted_regression)} row(s)")
    document["settings"] = dict(request.settings)
    recorded = dict((current.benchmark_records if current else {}) or {})
    recorded.update({name: dict(info) for name, info in request.benchmarks.items()})
    document["benchmarks"] = recorded
    if request.card is not None and path is not None:
        document["baseline_card"] = {"file": f"{_file_stem(path.stem)}.v{document['version']}.card.json.gz",
                                     "models": [m.spec for m in models]}
    return document, changes


def _change_rules(rules: Sequence[dict], rows: Sequence[ResultRow], current: ThresholdFile | None,
                  changes: list[str]) -> list[dict]:
    """A ``max_increase`` rule (all layers and benchmarks) for every blessed metric the run measured that no
    rule bounds a change of yet; its tolerance from the file's ``policy`` or the registry."""
    bounded = {rule["metric"] for rule in rules if "max_increase" in rule}
    added = []
    for metric in BLESSED_METRICS:
        if metric in bounded or not any(row.metric == metric for row in rows):
            continue
        tolerance = current.tolerance(metric) if current is not None else spec_of(metric).tolerance
        widened = _resolvable_tolerance(tolerance, [row for row in rows if row.metric == metric])
        added.append({"metric": metric, "layers": "all", "max_increase": widened[0]})
        changes.append(f"{metric}: a paired change beyond {widened[0]:g} against this blessed run fails (max_increase)"
                       + (f"; {widened[1]}" if widened[1] else ""))
    return added


def _resolvable_tolerance(tolerance: float, rows: Sequence[ResultRow]) -> tuple[float, str]:
    """``(tolerance, why)``: the ``max_increase`` tolerance of the metric of ``rows``, widened for an exact rate
    when even an unchanged re-run of the blessed model could not pass it — on few items Newcombe's paired interval of no
    change at all reaches past the tolerance (±0.164 for 3 of 16), so the rule would make every later run
    INCONCLUSIVE. Widened to the next hundredth above that end, and said (``why``) with the items that
    would resolve the registry's tolerance; unchanged (``why`` empty) otherwise."""
    worst: tuple[float, float, int] | None = None  # (the unchanged run's upper end, its rate, its items)
    for row in rows:
        items = _rate_items([row])
        if items is None or row.value is None:
            continue
        high = intervals.unchanged_change_high(round(row.value * items), items)
        if worst is None or high > worst[0]:
            worst = (high, row.value, items)
    if worst is None or worst[0] < tolerance:
        return tolerance, ""
    high, rate, items = worst
    needed = intervals.items_to_resolve(tolerance, rate)
    return math.floor(high * 100) / 100 + 0.01, (
        f"widened from {tolerance:g}: on {items} items even an unchanged re-run's paired interval reaches "
        f"+{high:.3g}, so {tolerance:g} could never pass" + (f" ({needed} items would resolve it)" if needed else ""))


def write_baseline_card(path: Path, document: dict, models: Sequence[BlessedModel],
                        request: BlessRequest) -> Path | None:
    """Write the blessed run's card beside ``path`` (gzip; the rows of the metrics a ``max_increase`` rule
    bounds, pooled over heads, with their jackknife values or replicates) and record its sha256 in ``document``.
    Returns its path."""
    entry = document.get("baseline_card")
    if entry is None or request.card is None:
        return None
    specs = {m.spec for m in models}
    bounded = {rule["metric"] for rule in document["rules"] if "max_increase" in rule}
    card = dict(request.card)
    card["results"] = [row for row in request.card.get("results", []) if row["model"] in specs
                       and row.get("head") is None and row["metric"] in bounded
                       and (row.get("jackknife") or row.get("replicates"))]
    card["models"] = [model for model in request.card.get("models", []) if model.get("spec") in specs]
    card.pop("changes", None)
    data = gzip.compress(json.dumps(card, sort_keys=True, allow_nan=False).encode("utf-8"), mtime=0)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    target = _write_target(path).parent / entry["file"]
    atomic_write(target, data)
    return target


def _remove_earlier_cards(path: Path, previous: ThresholdFile | None, kept: Path | None) -> None:
    """The previous version's card is no longer paired with: remove it once the new version is in place."""
    old = previous.baseline_card_path if previous is not None else None
    if old is not None and (kept is None or old.resolve() != kept.resolve()):
        old.unlink(missing_ok=True)


def _worst_end(rows: Sequence[ResultRow], higher_worse: bool, point: bool, margin: float = 0.0) -> float:
    """The worst point estimate (``point``) or interval end of ``rows``, moved ``margin`` further in the worse
    direction: a ``max`` / ``min`` bound is the blessed run's worst interval end plus the metric's tolerance, so
    an unchanged checkpoint measured on another draw of samples (another seed) stays inside it, while the
    paired ``max_increase`` rule against the blessed run catches a regression of more than the tolerance."""
    values = [row.value if point or row.ci is None else (row.ci[1] if higher_worse else row.ci[0]) for row in rows]
    worst = max(values) + margin if higher_worse else min(values) - margin
    return float(f"{worst:.6g}")


def _rule(metric: str, benchmark: str, layer: int | None, form: str, limit: float, tolerance: float | None = None,
          note: str | None = None) -> dict:
    rule = {"metric": metric, "benchmarks": [benchmark], "layers": "all" if layer is None else str(layer), form: limit}
    if tolerance is not None:
        rule["tolerance"] = tolerance
    if note:
        rule["note"] = note
    return rule


def _rate_items(rows: Sequence[ResultRow]) -> int | None:
    """How many items the exact (Clopper–Pearson) rate of ``rows`` rests on (None: not such a rate)."""
    counts = [len(row.jackknife) for row in rows if row.interval == intervals.CLOPPER_PEARSON and row.jackknife]
    return min(counts) if counts else None


def _bounded(metric: str, form: str, limit: float, tolerance: float | None, where: str, changes: list[str],
             unbounded: list[dict], benchmark: str, layer: int | None, items: int | None = None) -> bool:
    """False when the bound could never fail — at the metric's end of range, or (a rate of ``items`` items)
    beyond what even the most extreme outcome's exact interval crosses: the reason goes into ``changes`` (the
    card) and ``unbounded`` (the file's ``not_bounded``) — never dropped silently, never written as a rule
    that would make every later run INCONCLUSIVE."""
    spec = spec_of(metric)
    direction = spec.direction if form == "baseline" else (HIGHER_IS_WORSE if form == "max" else LOWER_IS_WORSE)
    effective = limit if tolerance is None else (limit + tolerance if direction == HIGHER_IS_WORSE
                                                 else limit - tolerance)
    if not Bound(effective, direction).can_fail(spec.range):
        reason = (f"the measured bound {effective:g} sits at the end of the metric's range [{spec.low:g}, "
                  f"{spec.high:g}], so a bound could never fail; its paired change is still bounded (max_increase)")
    elif items is not None and not (reach := intervals.rate_bound_reachable(
            effective, direction == HIGHER_IS_WORSE, items))[0]:
        reason = (f"the measured bound {Bound(effective, direction).describe()} cannot fail on {items} items (the "
                  f"exact interval of the most extreme outcome reaches {reach[1]:.3g}; "
                  f"{f'{reach[2]} items or more would be needed' if reach[2] else 'no number of items can cross it'}), "
                  "so it is not written; its paired change is still bounded (max_increase)")
    else:
        return True
    changes.append(f"{where} {metric}: not bounded: {reason}")
    unbounded.append({"metric": metric, "benchmarks": [benchmark], "layers": "all" if layer is None else str(layer),
                      "reason": reason})
    return False


def _new_rules(rows: Sequence[ResultRow], changes: list[str], unbounded: list[dict]) -> list[dict]:
    rules = []
    groups: dict[tuple, list[ResultRow]] = {}
    for row in rows:
        if row.metric in BLESSED_METRICS:
            groups.setdefault((row.metric, row.benchmark, row.layer), []).append(row)
    for (metric, benchmark, layer), measured in sorted(groups.items(), key=lambda item: (
            item[0][1], -1 if item[0][2] is None else item[0][2], BLESSED_METRICS.index(item[0][0]))):
        higher_worse = spec_of(metric).direction == HIGHER_IS_WORSE
        form = "max" if higher_worse else "min"
        limit = _worst_end(measured, higher_worse, point=False, margin=spec_of(metric).tolerance or 0.0)
        where = f"{benchmark}" + (f" L{layer}" if layer is not None else "")
        if _bounded(metric, form, limit, None, where, changes, unbounded, benchmark, layer, _rate_items(measured)):
            rules.append(_rule(metric, benchmark, layer, form, limit))
    return rules


def _reblessed_rules(current: ThresholdFile, rows: Sequence[ResultRow], n_layers: Mapping[str, int],
                     changes: list[str], unbounded: list[dict]) -> list[dict]:
    """Each rule the run measured becomes one rule per measured (benchmark, layer); what it covered but the
    run did not measure keeps the old bound; rules the run did not touch stay as they are."""
    rules: list[dict] = []
    for rule in current.rules:
        original = dict(current.document["rules"][rule.index])
        covered = [row for row in rows if not rule.on_change
                   and rule.covers(row.metric, row.benchmark, row.layer, n_layers[row.model])]
        if not covered:
            if rule.on_change and "max_increase" in original:
                tolerance, why = _resolvable_tolerance(original["max_increase"],
                                                       [row for row in rows if row.metric == rule.metric])
                if why:
                    original["max_increase"] = tolerance
                    changes.append(f"{current.name} rules[{rule.index}] {rule.metric}: max_increase {why}")
            rules.append(original)
            continue
        groups: dict[tuple, list[ResultRow]] = {}
        for row in covered:
            groups.setdefault((row.benchmark, row.layer), []).append(row)
        higher_worse = rule.bound.direction == HIGHER_IS_WORSE
        for (benchmark, layer), measured in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or -1)):
            point = rule.form == "baseline"  # a baseline keeps its own tolerance
            limit = _worst_end(measured, higher_worse, point, 0.0 if point else current.tolerance(rule.metric) or 0.0)
            where = f"{current.name} rules[{rule.index}] {benchmark}" + (f" L{layer}" if layer is not None else "")
            if _bounded(rule.metric, rule.form, limit, rule.tolerance, where, changes, unbounded, benchmark,
                        layer, _rate_items(measured)):
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
    """Write ``document`` as YAML (keys in schema order, one rule per line) atomically (:func:`atomic_write`).
    Call under the file's lock when read-modify-writing."""
    ordered = {key: document[key] for key in FILE_ORDER if key in document and document[key] is not None}
    rules = ordered.pop("rules", [])
    history = ordered.pop("history", [])
    text = yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=120)
    text += "rules:\n" + "".join(
        "- " + yaml.safe_dump(rule, default_flow_style=True, sort_keys=False, allow_unicode=True, width=1000)
        for rule in rules)
    text += yaml.safe_dump({"history": history}, sort_keys=False, allow_unicode=True, width=120)
    atomic_write(_write_target(path), text.encode("utf-8"))


def _write_target(path: Path) -> Path:
    """Where writing ``path`` lands: its target when it is a symlink (the link stays a link)."""
    return path.resolve() if path.is_symlink() else path


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` through a unique temporary file in the same folder, flushed to disk, then
    an atomic rename: readers see the old file or the new one, never a part, and a failed write (a full disk,
    an interrupt) leaves the old one as it was. The file keeps its mode and, where the process may, its owner;
    a new file gets 0644 less the umask."""
    existing = os.stat(path) if path.exists() else None
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if existing is not None:
            os.chmod(temporary, stat.S_IMODE(existing.st_mode))
            if (existing.st_uid, existing.st_gid) != (os.getuid(), os.getgid()):
                # only root may give a file away; otherwise it keeps the writer's owner
                with contextlib.suppress(PermissionError):
                    os.chown(temporary, existing.st_uid, existing.st_gid)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, NEW_FILE_MODE & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
