"""The closed vocabularies of a gate run, in one place: the status of a row and the kind of a case.

Members are strings (``Status.PASS == "pass"``, ``json.dumps`` writes ``"pass"``), so rows, cards and
JUnit properties read exactly as the words they replace, and ``Status("fail")`` parses one back.
"""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """A string-valued member that prints as its value (``f"{Status.PASS}"`` is ``pass``)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Status(_Word):
    """How one row fared against its rule, from least to most severe."""

    UNCHECKED = "unchecked"  # no rule covers it (per-head detail, descriptive metrics)
    PASS = "pass"
    WARN = "warn"  # the point estimate is beyond the bound, the interval is not
    FAIL = "fail"  # the whole interval is beyond the bound
    ERROR = "error"  # not computable, or its rule cannot gate this run: never a pass

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Status.UNCHECKED: 0, Status.PASS: 1, Status.WARN: 2, Status.FAIL: 3, Status.ERROR: 4}


class CaseKind(_Word):
    """What a gate item measures; each kind is one test name of the gate's items."""

    KEYSPACE = "keyspace"  # key separation of one layer
    ATTENTION = "attention"  # attention share of one layer
    BEHAVIOUR = "behaviour"  # scored answers of a benchmark with behaviour (no layer; coupling rows per layer)

    @property
    def test_name(self) -> str:
        return _TEST_NAMES[self]


_TEST_NAMES = {CaseKind.KEYSPACE: "key_separation", CaseKind.ATTENTION: "attention_share",
               CaseKind.BEHAVIOUR: "text_preference"}


class BehaviourKind(_Word):
    """Which behaviour suite a benchmark's items belong to: it says how their scored answers are counted
    (:mod:`bias_suite.metrics.suites`). The built-ins and the public files that share a design share a kind."""

    CONFLICT = "conflict"  # image + contradicting caption: text_preference_rate
    LANGUAGE_PRIOR = "language-prior"  # built-in VLind-style stages, model-relative prior
    VLIND = "vlind"  # VLind-Bench's released file: declared commonsense, True/False statements
    CONFLICT_LEVELS = "conflict-levels"  # V-FAT-style levels (built-in L0–L3, or the assumed V-FAT file)
    CAPTION_VARIANTS = "caption-variants"  # matching / corrupted / irrelevant captions
    PAIRED_IMAGES = "paired-images"  # MMVP-style pairs of images that differ in one attribute
