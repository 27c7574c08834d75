"""Golden files of every card format, built from the synthetic run in ``synthetic.py``.

The terminal lines, Markdown, JSON and HTML of the card are compared with ``golden/``. After an
intended change to a format, regenerate and review the diff::

    BIAS_SUITE_REGENERATE_GOLDEN=1 python -m pytest tests/report/test_card_formats.py
    git diff tests/report/golden/

(the regenerating run fails on purpose, so the variable is never left on by accident). Look at the
HTML in a browser, or in headless Chromium (``tests/report/test_html_renders.py``), before committing.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pytest

from bias_suite.report.card import ReportCard, format_number
from tests.report.synthetic import GOLDEN_VERSION, PIPE_MODEL, synthetic_card, synthetic_record

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = "BIAS_SUITE_REGENERATE_GOLDEN"


def _text_of(card: ReportCard, name: str, tmp_path: Path) -> str:
    if name == "card.txt":
        return "\n".join(card.lines) + "\n"
    path = tmp_path / name
    card.write(path)  # the writer's own format (JSON: indent=1)
    return path.read_text(encoding="utf-8")


def _compare_with_golden(name: str, actual: str) -> None:
    golden = GOLDEN / name
    if os.environ.get(REGENERATE) == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
        pytest.fail(f"{REGENERATE}=1: rewrote {golden}; review `git diff`, then run again without it")
    if not golden.exists():
        pytest.fail(f"{golden} is missing: run with {REGENERATE}=1 to write it")
    expected = golden.read_text(encoding="utf-8")
    if name.endswith(".json"):
        assert json.loads(actual) == json.loads(expected), f"{name} differs from {golden} ({REGENERATE}=1 rewrites it)"
    else:
        assert actual == expected, f"{name} differs from {golden} ({REGENERATE}=1 rewrites it)"


@pytest.mark.parametrize("name", ["card.txt", "card.md", "card.json", "card.html"])
def test_card_format_matches_its_golden_file(card, name, tmp_path):
    _compare_with_golden(name, _text_of(card, name, tmp_path))


@pytest.mark.parametrize("name", ["card.txt", "card.md", "card.json", "card.html"])
def test_card_does_not_depend_on_the_order_rows_arrived_in(monkeypatch, name, tmp_path):
    """Under xdist, workers report in any order: the same rows give the same bytes."""
    monkeypatch.setattr("bias_suite.report.card.__version__", GOLDEN_VERSION)
    record = synthetic_record()
    random.Random(7).shuffle(record.rows)
    random.Random(8).shuffle(record.projections)
    record.models = dict(reversed(record.models.items()))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert _text_of(synthetic_card(record), name, tmp_path / "a") == _text_of(synthetic_card(), name, tmp_path / "b")


def test_card_json_carries_the_normalised_suite_version(card):
    assert card.to_json()["suite_version"] == GOLDEN_VERSION
    assert f"bias-suite {GOLDEN_VERSION}" in card.to_html()


def _table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def test_markdown_escapes_a_pipe_in_a_model_path(card):
    markdown = card.to_markdown()
    assert PIPE_MODEL.replace("|", "\\|") in markdown
    for line in _table_rows(markdown):
        assert PIPE_MODEL not in line, line
    # every row of a table has as many unescaped cell separators as its header
    for table in re.split(r"\n\n", markdown):
        rows = _table_rows(table)
        if rows:
            counts = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
            assert len(counts) == 1, table


def test_html_is_self_contained(card):
    page = card.to_html()
    for forbidden in ("<script", "http://", "https://", " src=", "url(", "@import", "<link", "<iframe", "<img"):
        assert forbidden not in page, forbidden


def test_html_verdicts_keep_each_model_on_its_own_details(card):
    """A model loaded with --allow-incomplete-weights has two summary lines; the next model's row keeps
    its own details."""
    page = card.to_html()
    rows = re.findall(r"<tr><td>([^<]*)</td><td class='[a-z-]+'>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>",
                      page)
    details = {model: (verdict, text) for model, verdict, text, _ in rows}
    assert details[PIPE_MODEL][0] == "NO BASELINE"
    assert "packaged default.yaml" in details[PIPE_MODEL][1]
    assert "filled at random" in details[PIPE_MODEL][1]
    assert details["tiny-llava"][0] == "FAIL"
    assert "thresholds/tiny-llava.yaml" in details["tiny-llava"][1]
    assert "filled at random" not in details["tiny-llava"][1]
    assert details["base&lt;b&gt;model"][0] == "REFERENCE"


def test_statuses_are_coloured_in_the_html(card):
    page = card.to_html()
    for status in ("pass", "warn", "inconclusive", "fail", "error", "unchecked"):
        assert f"<td class='{status}'>" in page, status
        assert f".{status}{{background:" in page, status


@pytest.mark.parametrize("value, sign, text", [
    (1000.0000000001, False, "1000"), (999.9999, False, "1000"), (1234.5, True, "+1230"), (-0.0, True, "+0"),
    (-0.0, False, "0"), (0.00259, False, "0.00259"), (3.36e-05, False, "3.36e-05"), (0.5, True, "+0.5"),
])
def test_numbers_read_without_exponent_below_1e5_and_without_negative_zero(value, sign, text):
    assert format_number(value, sign=sign) == text
