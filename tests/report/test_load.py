"""A JSON card read back (report/load.py) is the card it was written from; ``bias-suite render`` writes it in
every format again."""

from __future__ import annotations

import json

from bias_suite.report.load import card_from_json
from bias_suite.tools.render import main as render


def test_a_json_card_read_back_writes_the_same_json(unsharded):
    _, card = unsharded
    assert card_from_json(card).to_json() == card


def test_render_writes_markdown_and_html_from_a_json_card(unsharded, tmp_path, monkeypatch, capsys):
    _, card = unsharded
    monkeypatch.chdir(tmp_path)
    (tmp_path / "card.json").write_text(json.dumps(card))
    assert render(["card.json", "--report=out/card.md", "--report=out/card.html", "--report=out/card.json"]) == 0
    assert json.loads((tmp_path / "out" / "card.json").read_text()) == card
    markdown = (tmp_path / "out" / "card.md").read_text()
    assert markdown.startswith("# Bias report card") and "NO BASELINE" in markdown
    assert "<html" in (tmp_path / "out" / "card.html").read_text()[:500].lower()
    assert render(["card.json"]) == 0 and "NO BASELINE · tiny-llava" in capsys.readouterr().out


def test_render_of_a_file_that_is_not_a_card_exits_4(tmp_path, capsys):
    (tmp_path / "x.json").write_text("[1, 2]")
    assert render([str(tmp_path / "x.json")]) == 4
    assert "not a bias report card" in capsys.readouterr().err
