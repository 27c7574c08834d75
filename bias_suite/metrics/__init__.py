"""The numbers the gate stands on: key-space separation and attention share.

Pure torch on captured tensors (CPU or CUDA); nothing here imports transformers.
"""

from bias_suite.attention import RowShares
from bias_suite.metrics.attention_share import (
    AttentionResult,
    query_positions,
    row_shares,
    summarise_attention,
)
from bias_suite.metrics.estimate import Estimate, bootstrap_weights, sample_flips, with_interval
from bias_suite.metrics.keyspace import KeySpaceConfig, KeySpaceResult, keyspace_metrics, keyspace_metrics_by_layer
from bias_suite.metrics.registry import (
    ATTENTION_METRICS,
    BEHAVIOUR_METRICS,
    ESTIMATORS,
    KEYSPACE_METRICS,
    METRICS,
    MetricSpec,
    spec_of,
)

__all__ = [
    "ATTENTION_METRICS",
    "BEHAVIOUR_METRICS",
    "ESTIMATORS",
    "KEYSPACE_METRICS",
    "METRICS",
    "AttentionResult",
    "Estimate",
    "KeySpaceConfig",
    "KeySpaceResult",
    "MetricSpec",
    "RowShares",
    "bootstrap_weights",
    "keyspace_metrics",
    "keyspace_metrics_by_layer",
    "query_positions",
    "row_shares",
    "sample_flips",
    "spec_of",
    "summarise_attention",
    "with_interval",
]
