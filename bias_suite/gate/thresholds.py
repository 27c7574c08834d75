"""Versioned threshold files: schema, strict reading, and which file gates a model.

One YAML per model family::

    version: 3
    family: llava-1.5-ours
    match: {model_type: [llava], name: ["*llava-1.5-ours*"]}
    environment: {torch: 2.14.1, transformers: 5.25.0, attn_implementation: sdpa}
    provenance: {date: 2026-12-06, suite_version: 0.2.0, models: [...], reason: "..."}
    settings: {n_samples: 16, max_tokens_per_modality: 64, seed: 0, n_bootstrap: 1000, dtype: float32,
               attn_implementation: sdpa, processor: {...}, torch: '2.14', transformers: '5.25'}
    benchmarks: {shapes: {n_samples: 16, hash: 3f2a…}}                   # what the bounds were measured on
    policy: {tolerances: {mmd2: 0.03}}            # optional: tolerances of paired changes (registry defaults)
    baseline_card: {file: llava-1.5-ours.card.json.gz, sha256: …, models: [ckpts/ours-v1]}  # the blessed run
    not_bounded: [{metric: ratio, benchmarks: [shapes], layers: '2', reason: …}]   # what bless left unbounded
    provisional: true                  # optional, with provisional_reason
    rules:
      - {metric: mmd2, benchmarks: [shapes], layers: '3', max: 0.52}
      - {metric: logit_gap.question, layers: last_third, baseline: 0.4, tolerance: 0.1}
      - {metric: mmd2, layers: all, max_increase: 0.05}        # a paired change against the blessed run
    history: [{version: 2, provenance: …, rules: […]}, …]

Which file gates a model: the family it declares (``--family NAME``: the file whose ``family`` is NAME),
else a file whose ``match.name`` patterns fit its spec (or its last path part) — and ``match.model_type``,
when given. A file that matches by ``model_type`` alone, the folder's ``default.yaml`` and the package's
generic bounds gate a model too, but do not baseline it: a model they alone gate is NO BASELINE (renaming
a checkpoint's folder can never turn a FAIL into a PASS). The generic bounds apply to every model as sanity
checks that can fail on their own.

``settings`` is the comparability key of the measured bounds: a run that differs in one of its keys is
INCONCLUSIVE for the rules that key affects, naming the key (never a false FAIL, never a silent PASS).

Files are read with a safe loader that also refuses duplicate keys and files over
:data:`MAX_FILE_BYTES`; every mistake names the file and key. A rule that could never fail (a bound at or
beyond the metric's range), a rule on a metric that is only reported (size-dependent), and a file without
rules are errors.
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
from bias_suite.metrics.registry import DIRECTIONS, HIGHER_IS_WORSE, LOWER_IS_WORSE, METRICS, metric_names, spec_of
from bias_suite.options import BUILTIN_BENCHMARK_NAMES

DEFAULT_FILE = "default.yaml"
PACKAGED_DEFAULT = Path(__file__).resolve().parents[1] / "data" / DEFAULT_FILE  # bias_suite/data/
TOP_LEVEL_KEYS = {"version", "family", "match", "environment", "provenance", "settings", "benchmarks",
                  "provisional", "provisional_reason", "rules", "history", "policy", "baseline_card", "not_bounded"}
HISTORY_KEYS = TOP_LEVEL_KEYS - {"history"}
RULE_KEYS = {"metric", "layers", "benchmarks", "max", "min", "baseline", "tolerance", "max_increase", "direction",
             "note"}
SETTING_KEYS = ("n_samples", "max_tokens_per_modality", "seed", "n_bootstrap", "estimator_version", "dtype",
                "attn_implementation", "processor", "torch", "transformers")
# A difference in one of these makes every measured rule of a file not comparable; the others only what they
# affect: seed and n_bootstrap the paired changes (and seed the size-dependent metrics).
EVERY_RULE_KEYS = ("n_samples", "max_tokens_per_modality", "estimator_version", "dtype", "attn_implementation",
                   "processor", "torch", "transformers")
SIZE_KEYS = ("n_samples", "max_tokens_per_modality", "seed")
PAIRED_KEYS = ("n_samples", "seed", "n_bootstrap")
ENVIRONMENT_KEYS = ("torch", "transformers", "attn_implementation")
MAX_FILE_BYTES = 4 * 1024 * 1024  # a threshold file is a reviewed text: larger ones are refused before parsing
BASELINE_CARD_KEYS = {"file", "sha256", "models"}
NOT_BOUNDED_KEYS = {"metric", "benchmarks", "layers", "reason"}
FORMS = ("max", "min", "baseline", "max_increase")


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it: ~10× faster


class _StrictLoader(_SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (YAML would keep the last)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return _SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_yaml(path: Path) -> object:
    """The YAML document at ``path`` (safe tags only, duplicate keys refused, at most :data:`MAX_FILE_BYTES`)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ThresholdError(f"{path}: {size / 2**20:.1f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB a threshold file "
                             "may hold (it is a reviewed text: trim its history or split it by family)")
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

    @property
    def baselines(self) -> bool:
        """True when its bounds were measured on the family's models (not generic, not provisional)."""
        return not (self.is_default or self.is_packaged_default or self.provisional)

    @property
    def baseline_card(self) -> Mapping | None:
        """``{file, sha256, models}`` of the blessed run's card stored beside this file, when there is one."""
        return self.document.get("baseline_card")

    @property
    def baseline_card_path(self) -> Path | None:
        card = self.baseline_card
        # beside the file itself: a symlinked threshold file's card was written beside its target
        return None if card is None else self.path.resolve().parent / card["file"]

    @property
    def not_bounded(self) -> list[Mapping]:
        return list(self.document.get("not_bounded") or [])

    def tolerance(self, metric: str) -> float | None:
        """The tolerance of a paired change of ``metric``: the file's ``policy``, else the registry's default."""
        tolerances = (self.document.get("policy") or {}).get("tolerances") or {}
        base = metric.partition(".")[0]
        for name in (metric, base):
            if name in tolerances:
                return float(tolerances[name])
        return spec_of(metric).tolerance

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
                         benchmark_hash: str | None, n_samples: int | None = None) -> str | None:
        """Why ``rule`` cannot gate a run made with ``settings`` on ``benchmark`` (None when it can): the run
        differs from what the bounds were measured with in a key that affects the rule (see
        :data:`EVERY_RULE_KEYS`), or the benchmark's content changed.

        settings: the run's comparability key (``RunSettings.recorded()`` plus dtype, attention backend,
        processor, torch and transformers major.minor); n_samples: how many samples of ``benchmark`` this
        run measured (compared with the count recorded for that benchmark, else ``settings.n_samples``)."""
        recorded = dict(self.settings)
        run = dict(settings)
        record = self.benchmark_records.get(benchmark) or {}
        if record.get("n_samples") is not None:
            recorded["n_samples"] = record["n_samples"]
        if n_samples is not None:
            run["n_samples"] = n_samples
        keys = [*EVERY_RULE_KEYS]
        if not spec_of(rule.metric).size_invariant:
            keys += [key for key in SIZE_KEYS if key not in keys]
        if rule.on_change:
            keys += [key for key in PAIRED_KEYS if key not in keys]
        for key in keys:
            if key in recorded and key in run and recorded[key] != run[key]:
                return (f"not comparable: {key} differs (the bounds of {self.name} were measured with "
                        f"{_shown(recorded[key])}, this run has {_shown(run[key])}; rules[{rule.index}] "
                        f"{rule.metric}): run with the same {key} or bless a new version")
        same_subset = record.get("n_samples") == run.get("n_samples") and recorded.get("seed") == run.get("seed")
        if record and same_subset and benchmark_hash is not None and record.get("hash") not in (None, benchmark_hash):
            return (f"not comparable: benchmark {benchmark!r} has other content than {self.name} rules[{rule.index}] "
                    f"was measured on (hash {benchmark_hash}, recorded {record.get('hash')}); bless a new version")
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


def _shown(value: object) -> str:
    return ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, Mapping) else str(value)


def _check_policy(path: Path, policy) -> None:
    if policy is None:
        return
    if not isinstance(policy, Mapping) or set(policy) - {"tolerances"}:
        raise _fail(path, "policy", "expected a mapping with tolerances: {metric: value}")
    tolerances = policy.get("tolerances") or {}
    if not isinstance(tolerances, Mapping):
        raise _fail(path, "policy.tolerances", "expected a mapping from metric to tolerance")
    for metric, value in tolerances.items():
        try:
            spec = spec_of(metric) if isinstance(metric, str) and "." in metric else METRICS[metric]
        except KeyError:
            raise _fail(path, f"policy.tolerances.{metric}", f"unknown metric; known: {', '.join(metric_names())}") \
                from None
        if not spec.gateable:
            raise _fail(path, f"policy.tolerances.{metric}", f"{metric} is reported, not gated")
        if _number(path, f"policy.tolerances.{metric}", value) < 0:
            raise _fail(path, f"policy.tolerances.{metric}", f"must be >= 0, got {value}")


def _check_baseline_card(path: Path, card) -> None:
    if card is None:
        return
    if not isinstance(card, Mapping) or set(card) - BASELINE_CARD_KEYS or "file" not in card:
        raise _fail(path, "baseline_card", f"expected a mapping with {', '.join(sorted(BASELINE_CARD_KEYS))}")
    name = card["file"]
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        raise _fail(path, "baseline_card.file", f"expected a file name beside the threshold file, got {name!r}")
    models = card.get("models", [])
    if not isinstance(models, list) or not all(isinstance(model, str) for model in models):
        raise _fail(path, "baseline_card.models", f"expected a list of model specs, got {models!r}")
    if "sha256" in card and not (isinstance(card["sha256"], str) and len(card["sha256"]) == 64):
        raise _fail(path, "baseline_card.sha256", f"expected 64 hex digits, got {card['sha256']!r}")


def _check_not_bounded(path: Path, entries) -> None:
    if entries is None:
        return
    if not isinstance(entries, list):
        raise _fail(path, "not_bounded", "expected a list of {metric, benchmarks, layers, reason}")
    for index, entry in enumerate(entries):
        where = f"not_bounded[{index}]"
        if not isinstance(entry, Mapping) or set(entry) - NOT_BOUNDED_KEYS or not {"metric", "reason"} <= set(entry):
            raise _fail(path, where, f"expected a mapping with {', '.join(sorted(NOT_BOUNDED_KEYS))} "
                                     "(metric and reason required)")
        if not isinstance(entry["reason"], str) or not entry["reason"].strip():
            raise _fail(path, f"{where}.reason", "say why the metric is not bounded")


def _check_history(path: Path, history, version: int) -> None:
    """Earlier versions, validated like the rest: a list of mappings with known keys, each an older version
    with a list of rule mappings (their rules are not re-judged: a metric may have changed meaning since)."""
    if not isinstance(history, list):
        raise _fail(path, "history", "expected a list of earlier versions")
    for index, entry in enumerate(history):
        where = f"history[{index}]"
        if not isinstance(entry, Mapping):
            raise _fail(path, where, f"expected a mapping (an earlier version), got {type(entry).__name__}")
        unknown = set(entry) - HISTORY_KEYS
        if unknown:
            raise _fail(path, f"{where}.{sorted(map(str, unknown))[0]}",
                        f"unknown key; allowed: {', '.join(sorted(HISTORY_KEYS))}")
        old = entry.get("version")
        if isinstance(old, bool) or not isinstance(old, int) or not 1 <= old < version:
            raise _fail(path, f"{where}.version", f"expected an integer from 1 to {version - 1} (an earlier version), "
                                                  f"got {old!r}")
        rules = entry.get("rules", [])
        if not isinstance(rules, list) or not all(isinstance(rule, Mapping) for rule in rules):
            raise _fail(path, f"{where}.rules", "expected a list of rules (mappings)")
        for number, rule in enumerate(rules):
            unknown = set(rule) - RULE_KEYS
            if unknown:
                raise _fail(path, f"{where}.rules[{number}].{sorted(map(str, unknown))[0]}",
                            f"unknown key; allowed: {', '.join(sorted(RULE_KEYS))}")
        for key in ("provenance", "environment", "settings", "benchmarks"):
            if not isinstance(entry.get(key, {}) or {}, Mapping):
                raise _fail(path, f"{where}.{key}", "expected a mapping")


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
    _check_policy(path, document.get("policy"))
    _check_baseline_card(path, document.get("baseline_card"))
    _check_not_bounded(path, document.get("not_bounded"))
    rules = document.get("rules")
    if not isinstance(rules, list):
        raise _fail(path, "rules", f"expected a list of rules, got {rules!r}")
    if not rules:
        raise _fail(path, "rules", "the list is empty: a threshold file must gate something")
    _check_history(path, document.get("history", []), version)
    known = set(BUILTIN_BENCHMARK_NAMES) | set(document.get("benchmarks") or {})
    return ThresholdFile(path, version, tuple(_parse_rule(path, i, entry, known) for i, entry in enumerate(rules)),
                         document)


@dataclass(frozen=True)
class Selection:
    """The file that gates a model, how it was chosen, the generic sanity bounds that apply besides it, and
    every file considered (with why it did not gate the model), for the card.

    ``matched_by``: ``declared`` (``--family``), ``name``, ``file`` (``--thresholds=FILE``), ``model_type``,
    ``default`` (the folder's ``default.yaml``) or ``packaged default`` (bias-suite's generic bounds)."""

    file: ThresholdFile
    matched_by: str
    sanity: ThresholdFile | None = None
    considered: tuple[str, ...] = ()
    declared_family: str | None = None

    @property
    def baselined(self) -> bool:
        """True when bounds measured on this model's family gate it: a file it declares, names, or was given,
        that is neither generic nor provisional. Architecture alone (``model_type``) never baselines a model."""
        return self.matched_by in ("declared", "name", "file") and self.file.baselines


def threshold_files(location: Path) -> list[ThresholdFile]:
    """Every threshold file in a folder (sorted by name); an absent folder has none."""
    if not location.is_dir():
        return []
    return [load_threshold_file(path) for path in sorted([*location.glob("*.yaml"), *location.glob("*.yml")])]


def family_file(location: Path, model_type: str, names: Sequence[str],
                files: Sequence[ThresholdFile] | None = None) -> ThresholdFile | None:
    """The family file in ``location`` that gates the model (name matches first), or None. Two files
    matching equally is an error. ``files``: the folder's :func:`threshold_files`, when the caller has them."""
    files = [f for f in (threshold_files(location) if files is None else files) if not f.is_default]
    for kind in ("name", "model_type"):
        found = [f for f in files if f.matches(model_type, names) == kind]
        if len(found) > 1:
            raise ThresholdError(
                f"{', '.join(str(f.path) for f in found)} all match {kind} of {names[0]!r}: "
                "make their patterns disjoint")
        if found:
            return found[0]
    return None


def declared_file(location: Path, family: str, files: Sequence[ThresholdFile] | None = None) -> ThresholdFile | None:
    """The file of a declared family in a folder: ``family: NAME`` in the file, else the file named NAME.yaml.
    ``files``: the folder's :func:`threshold_files`, when the caller has them."""
    files = [f for f in (threshold_files(location) if files is None else files) if not f.is_default]
    found = [f for f in files if f.family == family] or [f for f in files if f.path.stem == family]
    if len(found) > 1:
        raise ThresholdError(f"{', '.join(str(f.path) for f in found)} all declare family {family!r}: keep one")
    return found[0] if found else None


def _why_not(file: ThresholdFile, model_type: str, names: Sequence[str]) -> str:
    if file.is_default:
        return f"{file.path}: generic bounds (sanity checks only)"
    patterns, types = file.match.get("name", []), file.match.get("model_type", [])
    if patterns and not any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns):
        return f"{file.path}: name patterns {patterns} do not match {names[0]!r}"
    if types and model_type not in types:
        return f"{file.path}: model_type {types} does not include {model_type!r}"
    if not patterns and types:
        return f"{file.path}: matches the architecture ({model_type}) only, which never baselines a model"
    return f"{file.path}: no match block"


def generic_file(location: Path, files: Sequence[ThresholdFile] | None = None) -> tuple[ThresholdFile, str]:
    """The generic bounds for a folder: its ``default.yaml``, else the package's. ``files``: the folder's
    :func:`threshold_files`, when the caller has them (its ``default.yaml`` is then not read again)."""
    if files is not None:
        loaded = next((f for f in files if f.path.name == DEFAULT_FILE), None)
        if loaded is not None:
            return loaded, "default"
    elif location.is_dir() and (location / DEFAULT_FILE).is_file():
        return load_threshold_file(location / DEFAULT_FILE), "default"
    return load_threshold_file(PACKAGED_DEFAULT), "packaged default"


def select_threshold_file(location: str | Path, model_type: str, names: Sequence[str],
                          family: str | None = None) -> Selection:
    """The threshold file for a model and the generic bounds that also apply.

    ``location`` a file: that file (``--thresholds=FILE``). A folder: the file of the declared ``family``
    (``--family NAME``), else the family file whose name patterns match; else a file matching the
    architecture alone, the folder's ``default.yaml`` or the package's generic bounds (none of which
    baseline the model)."""
    location = Path(location)
    if location.is_file():
        generic, generic_kind = generic_file(location.parent)
        chosen = load_threshold_file(location)
        return Selection(chosen, "file", None if chosen.is_default else generic, (f"{location}: given",),
                         family)
    if location.exists() and not location.is_dir():
        raise ThresholdError(f"--thresholds {location}: not a file or a folder")
    files = threshold_files(location)
    generic, generic_kind = generic_file(location, files)
    considered = tuple(_why_not(f, model_type, names) for f in files)
    if family is not None:
        declared = declared_file(location, family, files)
        if declared is not None:
            return Selection(declared, "declared", generic, (f"{declared.path}: declared with --family {family}",),
                             family)
        considered = (f"no file in {location}/ declares family {family!r}", *considered)
        return Selection(generic, generic_kind, None, considered, family)
    found = family_file(location, model_type, names, files)
    if found is not None:
        matched_by = found.matches(model_type, names)
        return Selection(found, matched_by or "name", generic, (f"{found.path}: matched by {matched_by}",), None)
    return Selection(generic, generic_kind, None, considered or (f"no threshold file in {location}/",), None)
