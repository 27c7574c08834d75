"""The synthetic card's HTML, rendered by headless Chromium: the browser's DOM holds every plot the card
promises, and the page paints.

Skipped when no Chromium is installed, unless ``BIAS_SUITE_REQUIRE_CHROMIUM=1`` (CI sets it and
installs Chromium), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bias_suite.report.card import CARD_METRICS
from bias_suite.report.svg import HEATMAP_METRICS
from tests.report.synthetic import LAYERS, MODELS, PIPE_MODEL

REQUIRE = "BIAS_SUITE_REQUIRE_CHROMIUM"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
SECONDS = 120


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        reason = "no chromium or chromium-browser on PATH (Debian: apt-get install chromium)"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{REQUIRE}=1 but {reason}")
        pytest.skip(reason)
    return binary


def _run(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    command = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=SECONDS, check=False)


@pytest.fixture
def page(card, tmp_path) -> Path:
    path = tmp_path / "card.html"
    card.write(path)
    return path


class _SvgCollector(HTMLParser):
    """The attributes of every <svg> element of a DOM dump."""

    def __init__(self):
        super().__init__()
        self.svgs: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self.svgs.append({name: value or "" for name, value in attrs})


def test_chromium_dom_holds_every_plot_of_the_card(chromium, page, tmp_path):
    result = _run(chromium, tmp_path, "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<h1>Bias report card</h1>" in result.stdout, "Chromium did not load the card"
    collector = _SvgCollector()
    collector.feed(result.stdout)
    svgs = collector.svgs
    kinds = Counter(svg.get("class") for svg in svgs)

    curves = {(svg["data-metric"], svg["data-benchmark"]) for svg in svgs if svg.get("class") == "curve"}
    for benchmark in LAYERS:
        for metric in CARD_METRICS:
            assert (metric, benchmark) in curves, f"no curve of {metric} on {benchmark}"
    assert kinds["curve"] == len(CARD_METRICS) * len(LAYERS)  # one per metric and benchmark, models overlaid

    heatmaps = {(svg["data-metric"], svg["data-model"], svg["data-benchmark"]) for svg in svgs
                if svg.get("class") == "heatmap"}
    assert heatmaps == {(metric, model, benchmark) for metric in HEATMAP_METRICS for model in MODELS
                        for benchmark in LAYERS}
    assert kinds["pca"] == kinds["tsne"] == 4  # two models × layers 0 and 2 of photos
    assert len(svgs) == sum(kinds.values()) == kinds["curve"] + len(heatmaps) + 8
    assert PIPE_MODEL in result.stdout


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_chromium_paints_the_card(chromium, page, tmp_path):
    screenshot = tmp_path / "card.png"
    result = _run(chromium, tmp_path, "--window-size=1400,3000", f"--screenshot={screenshot}", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert screenshot.exists(), result.stderr[-2000:]
    assert _png_size(screenshot) == (1400, 3000)
    # a blank page compresses to a few kilobytes; plots, tables and text to far more
    assert screenshot.stat().st_size > 100_000
