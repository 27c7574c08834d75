"""The closed vocabularies of a gate run, in one place: a row's status, a model's verdict, a case's kind.

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
    """How one row fared against its rule (a bound, or a tolerance on a paired change), least severe first."""

    UNCHECKED = "unchecked"  # no rule covers it (per-head detail, descriptive metrics, a reference's own rows)
    PASS = "pass"  # within the bound; for a change: the whole interval within its tolerance (GO)
    WARN = "warn"  # the point estimate is beyond the bound, the interval is not
    INCONCLUSIVE = "inconclusive"  # cannot be compared (another key, too few samples) or straddles a tolerance
    FAIL = "fail"  # the whole interval is beyond the bound or the tolerance (NO-GO)
    ERROR = "error"  # could not be computed: never a pass

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Status.UNCHECKED: 0, Status.PASS: 1, Status.WARN: 2, Status.INCONCLUSIVE: 3, Status.FAIL: 4,
             Status.ERROR: 5}


class Verdict(_Word):
    """What a model's gate run says, and the process's exit code for it (the worst model's decides).

    ``PASS``: every gated case is covered by a baseline (a blessed family file, a blessed run or a reference
    in the same run) and nothing failed. ``FAIL``: a bound or a tolerance was crossed by a whole interval.
    ``INCONCLUSIVE``: something could not be compared or computed (other settings or environment, too few
    samples, an interval that straddles its tolerance, an error). ``NO BASELINE``: only generic sanity
    bounds gated a case — nothing says whether this model is more biased than the one it replaces.
    """

    PASS = "PASS"
    NO_BASELINE = "NO BASELINE"
    INCONCLUSIVE = "INCONCLUSIVE"
    FAIL = "FAIL"

    @property
    def severity(self) -> int:
        return _VERDICT_ORDER.index(self)

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]


_VERDICT_ORDER = (Verdict.PASS, Verdict.NO_BASELINE, Verdict.INCONCLUSIVE, Verdict.FAIL)
_EXIT_CODES = {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.INCONCLUSIVE: 6, Verdict.NO_BASELINE: 7}


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
