"""The metric-suite part of ``python -m bias_suite bench``: fast key-space statistics against the
straightforward scikit-learn / scipy reference (:mod:`bias_suite.metrics.reference`), same run, same data.

Workload: 4,000 keys per modality × 8 KV heads × head_dim 128 from 40 samples (100 image and 100
text tokens each), with a per-sample offset (tokens of one sample are dependent, as in a model) and
image keys shifted away from text keys. Default bootstrap and permutation counts (200 each).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch

from bias_suite.metrics import KeySpaceConfig, keyspace_metrics
from bias_suite.metrics.reference import reference_keyspace_metrics


@dataclass(frozen=True)
class MetricsShape:
    n_samples: int = 40
    tokens_per_sample: int = 100  # per modality
    n_heads: int = 8
    head_dim: int = 128

    @classmethod
    def quick(cls) -> "MetricsShape":
        return cls(n_samples=8, tokens_per_sample=10, n_heads=2, head_dim=8)


def synthetic_keys(shape: MetricsShape, seed: int = 0):
    """``(image [n, H, d], image_ids, text [n, H, d], text_ids)`` float32."""
    generator = torch.Generator().manual_seed(seed)
    n = shape.n_samples * shape.tokens_per_sample
    sample_of_token = torch.arange(n) // shape.tokens_per_sample
    offsets = 0.5 * torch.randn(shape.n_samples, shape.n_heads, shape.head_dim, generator=generator)
    direction = torch.randn(shape.n_heads, shape.head_dim, generator=generator)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    image = torch.randn(n, shape.n_heads, shape.head_dim, generator=generator) + offsets[sample_of_token] + 1.5 * direction
    text = torch.randn(n, shape.n_heads, shape.head_dim, generator=generator) + offsets[sample_of_token]
    ids = [f"sample-{i:03d}" for i in sample_of_token.tolist()]
    return image, ids, text, ids


def run_metrics(quick: bool = False, repeats: int = 3) -> dict[str, float]:
    shape = MetricsShape.quick() if quick else MetricsShape()
    config = KeySpaceConfig()
    keys = synthetic_keys(shape)
    fast_seconds, fast = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        fast = keyspace_metrics(*keys, config)
        fast_seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    reference = reference_keyspace_metrics(*keys, config)
    reference_seconds = time.perf_counter() - start

    largest = 0.0
    for ours, theirs in zip(fast, reference):
        for name, estimate in ours.metrics.items():
            pairs = [(estimate.value, theirs[name].value)]
            pairs += list(zip(estimate.ci or (), theirs[name].ci or ()))
            for a, b in pairs:
                if math.isfinite(a) or math.isfinite(b):
                    largest = max(largest, abs(a - b) / max(1.0, abs(b)))
    fast_median = statistics.median(fast_seconds)
    return {
        "metrics_keys_per_modality": shape.n_samples * shape.tokens_per_sample,
        "metrics_heads": shape.n_heads,
        "metrics_head_dim": shape.head_dim,
        "metrics_seconds": fast_median,
        "metrics_reference_seconds": reference_seconds,
        "metrics_speedup_vs_reference": reference_seconds / fast_median,
        "metrics_max_relative_difference": largest,
    }
