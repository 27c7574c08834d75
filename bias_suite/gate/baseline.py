"""A previous run's JSON card as a partner for paired changes (:mod:`bias_suite.gate.changes`).

Cards come from ``--bias-baseline CARD.json`` or from the blessed run stored beside a family file
(``CARD.json.gz``). Pairing needs the same samples, seed and replicate count: :func:`incompatibilities`
names what differs.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bias_suite.errors import BaselineError
from bias_suite.gate.rows import ResultRow

COMPARED_SETTINGS = ("n_samples", "max_tokens_per_modality", "seed", "n_bootstrap", "estimator_version")


@dataclass(frozen=True)
class Baseline:
    """A previous run's JSON card, as far as comparing needs it."""

    path: Path
    models: tuple[str, ...]
    rows: Mapping[tuple, ResultRow]  # pooled rows that can be paired, by (model, benchmark, layer, metric)
    benchmarks: Mapping[str, Mapping]  # name → {n_samples, hash}
    settings: Mapping[str, object]

    def partner_of(self, model: str, preferred: str | None = None) -> str:
        """The card's model a candidate is paired with: itself when the card holds it, else ``preferred``
        (the blessed model a family file names first), else the card's only model, else its first."""
        if model in self.models:
            return model
        if preferred is not None and preferred in self.models:
            return preferred
        return self.models[0] if self.models else model


def read_card(path: Path) -> dict:
    """The JSON card at ``path`` (gzip-compressed when it ends in ``.gz``)."""
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw.decode("utf-8"))


def load_baseline(path: str | Path, label: str = "--bias-baseline") -> Baseline:
    """Read a card written with ``--bias-report=….json`` (or a blessed ``….card.json.gz``); it must carry
    jackknife values or replicates (cards do). ``label`` names where the path came from in errors."""
    path = Path(path)
    try:
        card = read_card(path)
    except FileNotFoundError:
        raise BaselineError(f"{label} {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as error:
        raise BaselineError(f"{label} {path}: not a JSON card ({error})") from None
    if not isinstance(card, dict) or "results" not in card:
        raise BaselineError(f"{label} {path}: not a bias report card (no 'results')")
    rows = {}
    for entry in card["results"]:
        row = ResultRow.from_json(entry)
        if row.head is None and (row.jackknife is not None or row.replicates is not None):
            rows[(row.model, row.benchmark, row.layer, row.metric)] = row
    if not rows:
        raise BaselineError(f"{label} {path}: the card has no jackknife values or bootstrap replicates to pair with "
                            "(write it with this version of bias-suite)")
    return Baseline(path, tuple(model["spec"] for model in card.get("models", [])), rows,
                    {b["name"]: b for b in card.get("benchmarks", [])}, card.get("settings") or {})


def incompatibilities(baseline: Baseline, benchmarks: Mapping[str, Mapping],
                      settings: Mapping[str, object]) -> list[str]:
    """Why the run cannot be paired with the baseline (empty when it can)."""
    problems = []
    for key in COMPARED_SETTINGS:
        if key in baseline.settings and baseline.settings[key] != settings.get(key):
            problems.append(f"{key}: baseline {baseline.settings[key]}, this run {settings.get(key)}")
    for name, info in sorted(benchmarks.items()):
        other = baseline.benchmarks.get(name)
        if other is None:
            problems.append(f"benchmark {name!r} is not in the baseline ({', '.join(baseline.benchmarks) or 'none'})")
        elif other.get("hash") != info.get("hash"):
            problems.append(f"benchmark {name!r}: other samples (hash {info.get('hash')}, "
                            f"baseline {other.get('hash')})")
    return problems
