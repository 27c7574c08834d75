"""Capture: one batched prefill per batch, and what it records (wing 5).

:mod:`~bias_suite.capture.batch` plans a batch and returns per-sample captures (pre-RoPE keys, attention
summaries of the chosen query rows, sinks); :mod:`~bias_suite.capture.recorder` attaches the hooks and the
attention wrapper for the forward; :mod:`~bias_suite.capture.selfcheck` compares the first batch with the
model's own forward; :mod:`~bias_suite.capture.extract` loops over a benchmark; and
:mod:`~bias_suite.capture.scoring` scores candidate answers by teacher-forced log-likelihood. May import:
wing 1, metrics (2, attention rows), benchmarks (3) and models (4).
"""

from bias_suite.capture.batch import BatchCapture, CaptureConfig, LayerCapture, SampleCapture, capture_batch
from bias_suite.capture.extract import extract
from bias_suite.capture.scoring import answer_log_likelihoods, text_preference, text_preference_estimate

__all__ = [
    "BatchCapture", "CaptureConfig", "LayerCapture", "SampleCapture", "answer_log_likelihoods", "capture_batch",
    "extract", "text_preference", "text_preference_estimate",
]
