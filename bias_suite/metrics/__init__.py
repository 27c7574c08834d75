"""The numbers the gate stands on: key-space separation and attention share (DESIGN §1).

Pure torch/scipy/scikit-learn on captured tensors; nothing here imports transformers.
"""

from bias_suite.metrics.attention_share import (
    ATTENTION_METRICS,
    AttentionResult,
    RowShares,
    capture_row_shares,
    query_positions,
    row_shares,
    summarise,
)
from bias_suite.metrics.estimate import Estimate, bootstrap_weights, with_interval
from bias_suite.metrics.keyspace import ESTIMATORS, KEYSPACE_METRICS, KeySpaceConfig, KeySpaceResult, keyspace_metrics

__all__ = [
    "ATTENTION_METRICS", "AttentionResult", "ESTIMATORS", "Estimate", "KEYSPACE_METRICS", "KeySpaceConfig",
    "KeySpaceResult", "RowShares", "bootstrap_weights", "capture_row_shares", "keyspace_metrics",
    "query_positions", "row_shares", "summarise", "with_interval",
]
