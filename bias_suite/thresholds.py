"""Versioned threshold files: schema, matching a model to its file, bounds, and writing the next version.

One YAML per model family under ``thresholds/`` (DESIGN §4)::

    version: 3
    family: llava
    match: {model_type: [llava], name: ["llava-hf/llava-1.5-*"]}   # name patterns win over model_type
    environment: {torch: 2.14.1, transformers: 5.24.0, attn_implementation: sdpa}
    provenance: {date: 2026-11-24, suite_version: 0.1.0, model_revision: null, reason: "..."}
    provisional: true                  # optional, with provisional_reason
    rules:
      - metric: mmd2                   # a name from bias_suite.gate.METRIC_DIRECTIONS
        layers: last_third             # a layer selector (default: all)
        benchmarks: [photos, shapes]   # names, or "all" (default)
        max: 0.5                       # or min: …, or baseline: … with tolerance: …
    history: [{version: 2, date: …, reason: …, rules: […]}, …]

``default.yaml`` (no ``match``) covers models no other file matches. Files are read with
``yaml.safe_load`` only; every mistake is reported with the file and the key at fault.
"""

from __future__ import annotations

import copy
import datetime
import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bias_suite.errors import BiasSuiteError, LayerSelectionError
from bias_suite.gate import HIGHER_IS_WORSE, LOWER_IS_WORSE, METRIC_DIRECTIONS, Bound
from bias_suite.layers import LayerSelector

DEFAULT_FILE = "default.yaml"
TOP_LEVEL_KEYS = {"version", "family", "match", "environment", "provenance", "provisional", "provisional_reason",
                  "rules", "history"}
RULE_KEYS = {"metric", "layers", "benchmarks", "max", "min", "baseline", "tolerance", "direction", "provisional", "note"}
ENVIRONMENT_KEYS = ("torch", "transformers", "attn_implementation")


class ThresholdError(BiasSuiteError, ValueError):
    """A threshold file is missing, unreadable or does not follow the schema."""


@dataclass(frozen=True)
class Rule:
    """One entry of ``rules``: a bound on ``metric`` for the layers and benchmarks it selects."""

    index: int  # position in the file's rules list (for messages and updates)
    metric: str
    layers: LayerSelector
    benchmarks: tuple[str, ...] | None  # None: every benchmark
    bound: Bound
    form: str  # "max", "min" or "baseline"
    tolerance: float | None = None

    def covers(self, metric: str, benchmark: str, layer: int | None, n_layers: int) -> bool:
        if metric != self.metric or (self.benchmarks is not None and benchmark not in self.benchmarks):
            return False
        if layer is None:
            return self.layers.text == "all"
        try:
            return layer in self.layers.resolve(n_layers)
        except LayerSelectionError:
            return False  # e.g. "31" on a 4-layer model: this rule is about another size


@dataclass(frozen=True)
class ThresholdFile:
    """A parsed threshold file. ``document`` is the YAML mapping as read (kept for updates)."""

    path: Path
    version: int
    rules: tuple[Rule, ...]
    document: Mapping = field(repr=False)

    @property
    def environment(self) -> Mapping[str, str]:
        return self.document.get("environment") or {}

    @property
    def provisional(self) -> bool:
        return bool(self.document.get("provisional", False))

    def rules_for(self, metric: str, benchmark: str, layer: int | None, n_layers: int) -> list[Rule]:
        return [rule for rule in self.rules if rule.covers(metric, benchmark, layer, n_layers)]

    def drift(self, environment: Mapping[str, str]) -> list[str]:
        """Differences between the environment this file was made with and ``environment``."""
        recorded = self.environment
        return [f"{key}: thresholds made with {recorded[key]}, running {environment.get(key)}"
                for key in ENVIRONMENT_KEYS if key in recorded and str(recorded[key]) != str(environment.get(key))]


def _fail(path: Path, where: str, problem: str) -> ThresholdError:
    return ThresholdError(f"{path}: {where}: {problem}")


def _number(path: Path, where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, where, f"expected a finite number, got {value!r}")
    return float(value)


def _parse_rule(path: Path, index: int, entry) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(entry, Mapping):
        raise _fail(path, where, f"expected a mapping, got {type(entry).__name__}")
    unknown = set(entry) - RULE_KEYS
    if unknown:
        raise _fail(path, f"{where}.{sorted(unknown)[0]}", f"unknown key; allowed: {', '.join(sorted(RULE_KEYS))}")
    metric = entry.get("metric")
    if metric not in METRIC_DIRECTIONS:
        raise _fail(path, f"{where}.metric", f"unknown metric {metric!r}; known: {', '.join(METRIC_DIRECTIONS)}")
    try:
        layers = LayerSelector.parse(str(entry.get("layers", "all")))
    except LayerSelectionError as error:
        raise _fail(path, f"{where}.layers", str(error)) from None
    benchmarks = entry.get("benchmarks", "all")
    if benchmarks == "all":
        benchmark_names = None
    elif isinstance(benchmarks, list) and benchmarks and all(isinstance(b, str) for b in benchmarks):
        benchmark_names = tuple(benchmarks)
    else:
        raise _fail(path, f"{where}.benchmarks", f"expected 'all' or a list of benchmark names, got {benchmarks!r}")
    direction = entry.get("direction", METRIC_DIRECTIONS[metric])
    if direction not in (HIGHER_IS_WORSE, LOWER_IS_WORSE):
        raise _fail(path, f"{where}.direction", f"expected {HIGHER_IS_WORSE} or {LOWER_IS_WORSE}, got {direction!r}")
    forms = [key for key in ("max", "min", "baseline") if key in entry]
    if len(forms) != 1:
        raise _fail(path, where, f"give exactly one of max, min or baseline (+ tolerance); found {forms or 'none'}")
    form = forms[0]
    limit = _number(path, f"{where}.{form}", entry[form])
    tolerance = None
    if form == "max":
        bound = Bound(limit, HIGHER_IS_WORSE)
    elif form == "min":
        bound = Bound(limit, LOWER_IS_WORSE)
    else:
        if "tolerance" not in entry:
            raise _fail(path, f"{where}.tolerance", "a baseline needs a tolerance")
        tolerance = _number(path, f"{where}.tolerance", entry["tolerance"])
        if tolerance < 0:
            raise _fail(path, f"{where}.tolerance", f"must be >= 0, got {tolerance}")
        bound = Bound(limit + tolerance if direction == HIGHER_IS_WORSE else limit - tolerance, direction)
    if form != "baseline" and "tolerance" in entry:
        raise _fail(path, f"{where}.tolerance", "only a baseline takes a tolerance")
    return Rule(index, metric, layers, benchmark_names, bound, form, tolerance)


def load_threshold_file(path: str | Path) -> ThresholdFile:
    """Parse and validate one file. Raises :class:`ThresholdError` naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ThresholdError(f"threshold file {path} does not exist")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ThresholdError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, Mapping):
        raise ThresholdError(f"{path}: expected a mapping at the top level, got {type(document).__name__}")
    unknown = set(document) - TOP_LEVEL_KEYS
    if unknown:
        raise _fail(path, sorted(unknown)[0], f"unknown key; allowed: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(path, "version", f"expected an integer >= 1, got {version!r}")
    match = document.get("match", {})
    if not isinstance(match, Mapping) or set(match) - {"model_type", "name"}:
        raise _fail(path, "match", "expected a mapping with model_type and/or name (lists of strings)")
    for key, value in match.items():
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(path, f"match.{key}", f"expected a list of strings, got {value!r}")
    for key in ("environment", "provenance"):
        if not isinstance(document.get(key, {}) or {}, Mapping):
            raise _fail(path, key, "expected a mapping")
    rules = document.get("rules")
    if not isinstance(rules, list):
        raise _fail(path, "rules", f"expected a list of rules, got {rules!r}")
    history = document.get("history", [])
    if not isinstance(history, list):
        raise _fail(path, "history", "expected a list")
    return ThresholdFile(path, version, tuple(_parse_rule(path, i, entry) for i, entry in enumerate(rules)), document)


def select_threshold_file(location: str | Path, model_type: str, names: Sequence[str]) -> ThresholdFile:
    """The threshold file for a model: ``location`` itself when it is a file; in a directory, the file
    whose ``match.name`` pattern matches one of ``names`` (spec, hub id), else whose ``match.model_type``
    lists ``model_type``, else ``default.yaml``. Two files matching equally is an error."""
    location = Path(location)
    if location.is_file():
        return load_threshold_file(location)
    if not location.is_dir():
        raise ThresholdError(f"--thresholds {location}: no such file or directory")
    files = [load_threshold_file(path) for path in sorted([*location.glob("*.yaml"), *location.glob("*.yml")])]
    for key, matches in (("name", lambda pattern: any(fnmatch.fnmatchcase(n, pattern) for n in names)),
                         ("model_type", lambda value: value == model_type)):
        found = [f for f in files if any(matches(v) for v in (f.document.get("match") or {}).get(key, []))]
        if len(found) > 1:
            raise ThresholdError(
                f"{', '.join(str(f.path) for f in found)} all match {key} of {names[0]!r}: make the patterns disjoint")
        if found:
            return found[0]
    default = location / DEFAULT_FILE
    if default.is_file():
        return load_threshold_file(default)
    raise ThresholdError(f"no threshold file in {location} matches {names[0]!r} (model_type {model_type!r}) "
                         f"and there is no {DEFAULT_FILE}")


@dataclass(frozen=True)
class Measured:
    """A measured value covered by a rule, as the updater needs it."""

    value: float
    ci: tuple[float, float] | None


def next_version(
    threshold: ThresholdFile,
    measured: Mapping[int, Sequence[Measured]],
    reason: str,
    environment: Mapping[str, str],
    provenance: Mapping[str, object],
    target: Path | None = None,
) -> tuple[Path, dict, list[str]]:
    """The next version of ``threshold`` after a run: ``(path to write, document, changes)``.

    measured: for each rule index, the values it covered in this run. ``max``/``min`` rules move to
    the worst interval end seen (so the run that made them passes); ``baseline`` rules move to the
    worst point estimate and keep their tolerance. The previous version is kept in ``history``.
    """
    if not reason or not reason.strip():
        raise ThresholdError("--update-thresholds needs --reason TEXT: say why the thresholds change")
    document = copy.deepcopy(dict(threshold.document))
    rules = document["rules"]
    changes = []
    for rule in threshold.rules:
        values = [m for m in measured.get(rule.index, ()) if math.isfinite(m.value)]
        if not values:
            continue
        higher_worse = rule.bound.direction == HIGHER_IS_WORSE
        if rule.form == "baseline":
            new = (max if higher_worse else min)(m.value for m in values)
        else:
            ends = [(m.ci[0 if not higher_worse else 1] if m.ci else m.value) for m in values]
            new = max(ends) if higher_worse else min(ends)
        new = float(f"{new:.6g}")
        old = rules[rule.index][rule.form]
        if new != old:
            changes.append(f"{threshold.path.name}: rules[{rule.index}] {rule.metric} (layers {rule.layers.text}): "
                           f"{rule.form} {old} → {new}")
        rules[rule.index][rule.form] = new
    previous = {key: copy.deepcopy(threshold.document.get(key)) for key in ("version", "provenance", "environment", "rules")}
    document["history"] = [previous, *(document.get("history") or [])]
    document["version"] = threshold.version + 1
    document["environment"] = {key: str(environment.get(key)) for key in ENVIRONMENT_KEYS}
    document["provenance"] = {"date": datetime.date.today().isoformat(), **provenance, "reason": reason.strip()}
    document.pop("provisional", None)  # the values are measured now
    document.pop("provisional_reason", None)
    return (target or threshold.path), document, changes


def write_threshold_file(path: Path, document: Mapping) -> None:
    """Write ``document`` as YAML (keys in schema order), atomically."""
    order = ["version", "family", "match", "provisional", "provisional_reason", "environment", "provenance", "rules", "history"]
    ordered = {key: document[key] for key in order if key in document}
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True), encoding="utf-8")
    temporary.replace(path)
