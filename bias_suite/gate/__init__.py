"""The gate: judged rows, threshold files, blessing and baselines (wing 7).

:mod:`~bias_suite.gate.rows` holds what is judged and written (``Bound``, ``ResultRow``, the status of an
estimate against a bound); :mod:`~bias_suite.gate.judge` judges a model's estimates against the rules of its
threshold file; :mod:`~bias_suite.gate.thresholds` reads and selects versioned threshold files;
:mod:`~bias_suite.gate.bless` writes their next version; :mod:`~bias_suite.gate.baseline` pairs a run with a
previous run's card. May import: wing 1, metrics (2) and benchmarks (3) — never a model or a capture.
"""

from bias_suite.gate.judge import Gauge, verdict
from bias_suite.gate.rows import Bound, ResultRow, judge, worst
from bias_suite.gate.thresholds import Selection, ThresholdFile, load_threshold_file, select_threshold_file

__all__ = [
    "Bound", "Gauge", "ResultRow", "Selection", "ThresholdFile", "judge", "load_threshold_file",
    "select_threshold_file", "verdict", "worst",
]
