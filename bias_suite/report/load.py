"""A report card read back from its JSON (``--bias-report=card.json``), to render it in any format again.

The JSON card holds everything the formats show except the key projections (the HTML scatter plots are
left out of a card rendered from JSON) and whether the run was ``--strict-env``; a shard's card loads as the
card of its shard (its ``shard`` section is for ``bias-suite merge``, not rendered).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bias_suite.errors import BaselineError
from bias_suite.gate.baseline import read_card
from bias_suite.gate.changes import Change
from bias_suite.gate.records import BenchmarkRecord, GatedBy, ModelRecord, ModelVerdict
from bias_suite.gate.rows import ResultRow
from bias_suite.metrics.samples import SampleRecord
from bias_suite.report.card import SCHEMA_VERSION, ReportCard
from bias_suite.vocabulary import Verdict


def card_from_json(data: Mapping) -> ReportCard:
    """The :class:`ReportCard` a JSON card (schema 3) was written from."""
    if not isinstance(data, Mapping) or "results" not in data:
        raise ValueError("no 'results': not a JSON report card")
    if data.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"card schema {data.get('schema')!r}: this bias-suite reads schema {SCHEMA_VERSION}")
    verdicts = {entry["model"]: ModelVerdict.from_json(entry) for entry in data.get("verdict_details", ())}
    return ReportCard(
        rows=tuple(ResultRow.from_json(row) for row in data["results"]),
        models=tuple(ModelRecord.from_json(model) for model in data.get("models", ())),
        benchmarks=tuple(BenchmarkRecord.from_json(benchmark) for benchmark in data.get("benchmarks", ())),
        thresholds={entry["model"]: GatedBy.from_json(entry) for entry in data.get("thresholds", ())},
        environment=dict(data.get("environment") or {}), settings=dict(data.get("settings") or {}),
        drift=tuple(data.get("drift", ())), updates=tuple(data.get("updates", ())),
        problems=tuple(data.get("problems", ())),
        changes=tuple(Change.from_json(change) for change in data.get("changes", ())),
        not_baselined=tuple(model for model, verdict in verdicts.items() if verdict.verdict is Verdict.NO_BASELINE),
        created=data.get("created", ""), model_verdicts=verdicts,
        samples=tuple(SampleRecord.from_json(record) for record in data.get("samples", ())),
    )


def load_card(path: str | Path) -> ReportCard:
    """The card in the JSON file at ``path`` (``.json`` or ``.json.gz``); a :class:`BaselineError` naming the
    file when it is not one."""
    path = Path(path)
    try:
        return card_from_json(read_card(path))
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such card") from None
    except (ValueError, KeyError, TypeError, OSError, EOFError) as error:
        raise BaselineError(f"{path}: not a bias report card ({error!r})") from None
