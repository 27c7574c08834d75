"""Versioned threshold files: schema, strict reading, and which file gates a model.

One YAML per model family, chosen by what it matches (name patterns, then model_type)::

    version: 3
    family: llava-1.5-ours
    match: {model_type: [llava], name: ["*llava-1.5-ours*"]}
    environment: {torch: 2.14.1, transformers: 5.24.0, attn_implementation: sdpa}
    provenance: {date: 2026-11-24, suite_version: 0.2.0, models: [...], reason: "..."}
    settings: {n_samples: 16, max_tokens_per_modality: 64, seed: 0}     # what the bounds were measured with
    benchmarks: {shapes: {n_samples: 16, hash: 3f2a…}}                   # and on which samples
    provisional: true                  # optional, with provisional_reason
    rules:
      - {metric: mmd2, benchmarks: [shapes], layers: '3', max: 0.52}
      - {metric: logit_gap.question, layers: last_third, baseline: 0.4, tolerance: 0.1}
      - {metric: mmd2, layers: all, max_increase: 0.05}                # against --bias-baseline
    history: [{version: 2, provenance: …, rules: […]}, …]

Matching: a file with ``match.name`` patterns gates the models whose spec (or its last path part) one
of them matches, and, when it also lists ``match.model_type``, only models of those types; a file with
``match.model_type`` alone gates every model of those types; name matches win. A model nothing matches is
gated by ``default.yaml`` in the folder, else by the package's own generic defaults — "not baselined".

Files are read with a safe loader that also refuses duplicate keys; every mistake names the file and key.
A rule that could never fail (a bound at or beyond the metric's range), a rule on a metric that is only
reported (size-dependent), and a file without rules are errors.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bias_suite.errors import ThresholdError
from bias_suite.gate.rows import Bound
from bias_suite.layers import LayerSelector
from bias_suite.metrics.registry import DIRECTIONS, HIGHER_IS_WORSE, LOWER_IS_WORSE, metric_names, spec_of
from bias_suite.options import BUILTIN_BENCHMARK_NAMES

DEFAULT_FILE = "default.yaml"
PACKAGED_DEFAULT = Path(__file__).resolve().parents[1] / "data" / DEFAULT_FILE  # bias_suite/data/
TOP_LEVEL_KEYS = {"version", "family", "match", "environment", "provenance", "settings", "benchmarks",
                  "provisional", "provisional_reason", "rules", "history"}
RULE_KEYS = {"metric", "layers", "benchmarks", "max", "min", "baseline", "tolerance", "max_increase", "direction",
             "note"}
SETTING_KEYS = ("n_samples", "max_tokens_per_modality", "seed")
ENVIRONMENT_KEYS = ("torch", "transformers", "attn_implementation")
FORMS = ("max", "min", "baseline", "max_increase")


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML would keep the last)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_yaml(path: Path) -> object:
    """The YAML document at ``path`` (safe tags only, duplicate keys refused)."""
    loader = _StrictLoader(path.read_text(encoding="utf-8"))
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@dataclass(frozen=True)
class Rule:
    """One entry of ``rules``: a bound on ``metric`` for the layers and benchmarks it selects.

    ``form`` is ``max``, ``min``, ``baseline`` (bound = baseline ± tolerance in the worse direction) or
    ``max_increase`` (bounds the change against a baseline run, in the worse direction).
    """

    index: int  # position in the file's rules list (for messages and updates)
    metric: str
    layers: LayerSelector
    benchmarks: tuple[str, ...] | None  # None: every benchmark
    bound: Bound
    form: str
    tolerance: float | None = None

    def covers(self, metric: str, benchmark: str, layer: int | None, n_layers: int) -> bool:
        if metric != self.metric or (self.benchmarks is not None and benchmark not in self.benchmarks):
            return False
        if layer is None:
            return self.layers.text == "all"
        return layer in self.layers.resolve_within(n_layers)

    @property
    def on_change(self) -> bool:
        """True for a ``max_increase`` rule (it bounds the change against a baseline run)."""
        return self.form == "max_increase"


@dataclass(frozen=True)
class ThresholdFile:
    """A parsed threshold file. ``document`` is the YAML mapping as read (kept for updates)."""

    path: Path
    version: int
    rules: tuple[Rule, ...]
    document: Mapping = field(repr=False)

    @property
    def name(self) -> str:
        return "packaged default.yaml" if self.is_packaged_default else self.path.name

    @property
    def is_packaged_default(self) -> bool:
        return self.path.resolve() == PACKAGED_DEFAULT.resolve()

    @property
    def is_default(self) -> bool:
        """Generic bounds (``default.yaml``): no model is baselined by them."""
        return self.path.name == DEFAULT_FILE and not self.document.get("match")

    @property
    def family(self) -> str | None:
        return self.document.get("family")

    @property
    def match(self) -> Mapping[str, list[str]]:
        return self.document.get("match") or {}

    @property
    def environment(self) -> Mapping[str, str]:
        return self.document.get("environment") or {}

    @property
    def settings(self) -> Mapping[str, int | None]:
        return self.document.get("settings") or {}

    @property
    def benchmark_records(self) -> Mapping[str, Mapping]:
        return self.document.get("benchmarks") or {}

    @property
    def provisional(self) -> bool:
        return bool(self.document.get("provisional", False))

    def rules_for(self, metric: str, benchmark: str, layer: int | None, n_layers: int) -> list[Rule]:
        return [rule for rule in self.rules if rule.covers(metric, benchmark, layer, n_layers)]

    def matches(self, model_type: str, names: Sequence[str]) -> str | None:
        """``"name"`` or ``"model_type"`` when this file gates such a model, else None."""
        patterns, types = self.match.get("name", []), self.match.get("model_type", [])
        if patterns:
            named = any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns)
            return "name" if named and (not types or model_type in types) else None
        return "model_type" if model_type in types else None

    def drift(self, environment: Mapping[str, str]) -> list[str]:
        """Differences between the environment this file was made with and ``environment``."""
        recorded = self.environment
        return [f"{key}: thresholds made with {recorded[key]}, running {environment.get(key)}"
                for key in ENVIRONMENT_KEYS if key in recorded and str(recorded[key]) != str(environment.get(key))]

    def unreachable_rules(self, n_layers: int) -> list[str]:
        """Rules whose layer selector names no layer of a model with ``n_layers`` decoder layers."""
        return [f"{self.name} rules[{rule.index}] ({rule.metric}, layers {rule.layers.text!r}) names no layer of a "
                f"model with {n_layers} decoder layers (0–{n_layers - 1})"
                for rule in self.rules if not rule.layers.resolve_within(n_layers)]

    def settings_problem(self, rule: Rule, settings: Mapping[str, object], benchmark: str,
                         benchmark_hash: str | None) -> str | None:
        """Why ``rule`` cannot gate a run made with ``settings`` on ``benchmark`` (None when it can).

        A size-dependent metric's bound holds only for the settings it was measured with; any metric's
        bound holds only for the benchmark content it was measured on (compared when the subset is the
        same: same sample count and seed)."""
        recorded = self.settings
        if not spec_of(rule.metric).size_invariant:
            for key in SETTING_KEYS:
                if key in recorded and recorded[key] != settings.get(key):
                    return (f"{self.name} rules[{rule.index}] bounds {rule.metric}, which depends on {key}: the bound "
                            f"was measured with {key}={recorded[key]}, this run uses {settings.get(key)}; run with the "
                            "same setting or bless a new version")
        record = self.benchmark_records.get(benchmark)
        same_subset = record is not None and record.get("n_samples") == settings.get("n_samples") \
            and recorded.get("seed") == settings.get("seed")
        if same_subset and benchmark_hash is not None and record.get("hash") not in (None, benchmark_hash):
            return (f"{self.name} rules[{rule.index}]: benchmark {benchmark!r} has other content than the bound was "
                    f"measured on (hash {benchmark_hash}, recorded {record.get('hash')}); bless a new version")
        return None


def _fail(path: Path, where: str, problem: str) -> ThresholdError:
    return ThresholdError(f"{path}: {where}: {problem}")


def _number(path: Path, where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, where, f"expected a finite number, got {value!r}")
    return float(value)


def _parse_rule(path: Path, index: int, entry, known_benchmarks: set[str]) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(entry, Mapping):
        raise _fail(path, where, f"expected a mapping, got {type(entry).__name__}")
    unknown = set(entry) - RULE_KEYS
    if unknown:
        raise _fail(path, f"{where}.{sorted(unknown)[0]}", f"unknown key; allowed: {', '.join(sorted(RULE_KEYS))}")
    metric = entry.get("metric")
    try:
        spec = spec_of(metric) if isinstance(metric, str) else None
    except KeyError:
        spec = None
    if spec is None:
        raise _fail(path, f"{where}.metric", f"unknown metric {metric!r}; known: {', '.join(metric_names())}")
    if not spec.gateable:
        raise _fail(path, f"{where}.metric", f"{metric} is reported, not gated: {_not_gateable_reason(spec)}")
    try:
        layers = LayerSelector.parse(str(entry.get("layers", "all")))
    except ValueError as error:
        raise _fail(path, f"{where}.layers", str(error)) from None
    benchmarks = entry.get("benchmarks", "all")
    if benchmarks == "all":
        benchmark_names = None
    elif isinstance(benchmarks, list) and benchmarks and all(isinstance(b, str) for b in benchmarks):
        benchmark_names = tuple(benchmarks)
        for name in benchmark_names:
            if name not in known_benchmarks and not Path(name).exists():
                raise _fail(path, f"{where}.benchmarks", f"{name!r} is neither a built-in benchmark "
                            f"({', '.join(BUILTIN_BENCHMARK_NAMES)}), nor recorded under benchmarks:, nor a file here")
    else:
        raise _fail(path, f"{where}.benchmarks", f"expected 'all' or a list of benchmark names, got {benchmarks!r}")
    direction = entry.get("direction", spec.direction)
    if direction not in DIRECTIONS:
        raise _fail(path, f"{where}.direction", f"expected {HIGHER_IS_WORSE} or {LOWER_IS_WORSE}, got {direction!r}")
    forms = [key for key in FORMS if key in entry]
    if len(forms) != 1:
        raise _fail(path, where, f"give exactly one of max, min, baseline (+ tolerance) or max_increase; "
                                 f"found {forms or 'none'}")
    form = forms[0]
    limit = _number(path, f"{where}.{form}", entry[form])
    tolerance = None
    if form in ("max", "min"):
        bound = Bound(limit, HIGHER_IS_WORSE if form == "max" else LOWER_IS_WORSE)
    elif form == "max_increase":
        if limit < 0:
            raise _fail(path, f"{where}.max_increase", f"must be >= 0, got {limit}")
        bound = Bound(limit, HIGHER_IS_WORSE)  # on the change in the worse direction
    else:
        if "tolerance" not in entry:
            raise _fail(path, f"{where}.tolerance", "a baseline needs a tolerance")
        tolerance = _number(path, f"{where}.tolerance", entry["tolerance"])
        if tolerance < 0:
            raise _fail(path, f"{where}.tolerance", f"must be >= 0, got {tolerance}")
        bound = Bound(limit + tolerance if direction == HIGHER_IS_WORSE else limit - tolerance, direction)
    if form != "baseline" and "tolerance" in entry:
        raise _fail(path, f"{where}.tolerance", "only a baseline takes a tolerance")
    if form != "max_increase" and not bound.can_fail(spec.range):
        raise _fail(path, f"{where}.{form}", f"{metric} lies in [{spec.low:g}, {spec.high:g}], so a bound "
                    f"{bound.describe()} can never fail: choose a bound inside the range")
    return Rule(index, metric, layers, benchmark_names, bound, form, tolerance)


def _not_gateable_reason(spec) -> str:
    if spec.reported_because:
        return spec.reported_because
    if spec.direction is None:
        return "it has no direction in which it means more bias"
    return "its expected value depends on the number of samples and tokens (see its estimator)"


def load_threshold_file(path: str | Path) -> ThresholdFile:
    """Parse and validate one file. Raises :class:`ThresholdError` naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ThresholdError(f"threshold file {path} does not exist")
    try:
        document = read_yaml(path)
    except yaml.YAMLError as error:
        raise ThresholdError(f"{path}: not valid YAML: {error}") from None
    except UnicodeDecodeError as error:
        raise ThresholdError(f"{path}: not UTF-8 text ({error})") from None
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
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise _fail(path, f"match.{key}", f"expected a non-empty list of strings, got {value!r}")
    for key in ("environment", "provenance", "settings", "benchmarks"):
        if not isinstance(document.get(key, {}) or {}, Mapping):
            raise _fail(path, key, "expected a mapping")
    unknown_settings = set(document.get("settings") or {}) - set(SETTING_KEYS)
    if unknown_settings:
        raise _fail(path, f"settings.{sorted(unknown_settings)[0]}",
                    f"unknown setting; known: {', '.join(SETTING_KEYS)}")
    rules = document.get("rules")
    if not isinstance(rules, list):
        raise _fail(path, "rules", f"expected a list of rules, got {rules!r}")
    if not rules:
        raise _fail(path, "rules", "the list is empty: a threshold file must gate something")
    history = document.get("history", [])
    if not isinstance(history, list):
        raise _fail(path, "history", "expected a list")
    known = set(BUILTIN_BENCHMARK_NAMES) | set(document.get("benchmarks") or {})
    return ThresholdFile(path, version, tuple(_parse_rule(path, i, entry, known) for i, entry in enumerate(rules)),
                         document)


@dataclass(frozen=True)
class Selection:
    """The file that gates a model and how it was chosen: ``name``, ``model_type``, ``default`` (the
    folder's ``default.yaml``) or ``packaged default`` (bias-suite's own generic bounds)."""

    file: ThresholdFile
    matched_by: str

    @property
    def baselined(self) -> bool:
        """True when bounds measured on the model's family gate it (not generic or provisional ones)."""
        return not (self.file.is_default or self.file.is_packaged_default or self.file.provisional)


def threshold_files(location: Path) -> list[ThresholdFile]:
    """Every threshold file in a folder (sorted by name); an absent folder has none."""
    if not location.is_dir():
        return []
    return [load_threshold_file(path) for path in sorted([*location.glob("*.yaml"), *location.glob("*.yml")])]


def family_file(location: Path, model_type: str, names: Sequence[str]) -> ThresholdFile | None:
    """The family file in ``location`` that gates the model (name matches first), or None. Two files
    matching equally is an error."""
    files = [f for f in threshold_files(location) if not f.is_default]
    for kind in ("name", "model_type"):
        found = [f for f in files if f.matches(model_type, names) == kind]
        if len(found) > 1:
            raise ThresholdError(
                f"{', '.join(str(f.path) for f in found)} all match {kind} of {names[0]!r}: "
                "make their patterns disjoint")
        if found:
            return found[0]
    return None


def select_threshold_file(location: str | Path, model_type: str, names: Sequence[str]) -> Selection:
    """The threshold file for a model: ``location`` itself when it is a file; in a folder, the family
    file that matches (:func:`family_file`), else the folder's ``default.yaml``, else the package's."""
    location = Path(location)
    if location.is_file():
        return Selection(load_threshold_file(location), "file")
    if location.exists() and not location.is_dir():
        raise ThresholdError(f"--thresholds {location}: not a file or a folder")
    found = family_file(location, model_type, names)
    if found is not None:
        return Selection(found, found.matches(model_type, names) or "name")
    default = location / DEFAULT_FILE
    if default.is_file():
        return Selection(load_threshold_file(default), "default")
    return Selection(load_threshold_file(PACKAGED_DEFAULT), "packaged default")
