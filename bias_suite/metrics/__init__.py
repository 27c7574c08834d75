"""Metrics: the numbers the gate stands on, computed on captured tensors (wing 2).

Key-space separation of image and text keys (:mod:`~bias_suite.metrics.keyspace` with its kernel,
classifier and moment statistics), attention rows and their shares (:mod:`~bias_suite.metrics.attention_rows`,
:mod:`~bias_suite.metrics.attention_share`), behaviour rates (:mod:`~bias_suite.metrics.behaviour`) and each
behaviour suite's counting of scored answers (:mod:`~bias_suite.metrics.suites`), per-sample records and the
rank coupling of internals with behaviour (:mod:`~bias_suite.metrics.samples`,
:mod:`~bias_suite.metrics.coupling`), every estimate with an interval over samples and the paired change
of two runs (:mod:`~bias_suite.metrics.estimate`, :mod:`~bias_suite.metrics.intervals`: jackknife-t,
bootstrap-t, Clopper–Pearson, Newcombe), and the registry of every metric's facts
(:mod:`~bias_suite.metrics.registry`). Pure torch, CPU or CUDA: nothing here imports
transformers. May import: errors, layers, options, vocabulary (wing 1).
"""

from bias_suite.metrics.attention_rows import RowShares, attention_rows
from bias_suite.metrics.attention_share import (
    AttentionResult,
    query_positions,
    row_shares,
    summarise_attention,
)
from bias_suite.metrics.behaviour import rate_estimate
from bias_suite.metrics.coupling import rank_coupling
from bias_suite.metrics.estimate import Estimate, bootstrap_weights, paired_change, sample_flips, with_interval
from bias_suite.metrics.keyspace import KeySpaceConfig, KeySpaceResult, keyspace_metrics, keyspace_metrics_by_layer
from bias_suite.metrics.registry import (
    ATTENTION_METRICS,
    BEHAVIOUR_METRICS,
    COUPLING_METRICS,
    ESTIMATORS,
    KEYSPACE_METRICS,
    METRICS,
    MetricSpec,
    spec_of,
)
from bias_suite.metrics.samples import LayerMeasures, SampleRecord, coupling_estimates
from bias_suite.metrics.suites import ScoredItem, ScoredQuery, suite_estimates

__all__ = [
    "ATTENTION_METRICS",
    "BEHAVIOUR_METRICS",
    "COUPLING_METRICS",
    "ESTIMATORS",
    "KEYSPACE_METRICS",
    "METRICS",
    "AttentionResult",
    "Estimate",
    "KeySpaceConfig",
    "KeySpaceResult",
    "LayerMeasures",
    "MetricSpec",
    "RowShares",
    "SampleRecord",
    "ScoredItem",
    "ScoredQuery",
    "attention_rows",
    "bootstrap_weights",
    "coupling_estimates",
    "keyspace_metrics",
    "keyspace_metrics_by_layer",
    "paired_change",
    "query_positions",
    "rank_coupling",
    "rate_estimate",
    "row_shares",
    "sample_flips",
    "spec_of",
    "suite_estimates",
    "summarise_attention",
    "with_interval",
]
