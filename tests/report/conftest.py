"""Fixtures for the report card's tests: the synthetic card, its suite version normalised."""

from __future__ import annotations

import pytest

from bias_suite.report.card import ReportCard
from tests.report.synthetic import GOLDEN_VERSION, synthetic_card


@pytest.fixture
def card(monkeypatch) -> ReportCard:
    """The synthetic card; the suite version it prints is ``GOLDEN_VERSION`` for the whole test, so the
    golden files do not change with the installed version."""
    monkeypatch.setattr("bias_suite.report.card.__version__", GOLDEN_VERSION)
    return synthetic_card()
