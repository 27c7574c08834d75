"""The metric-suite part of ``python -m bias_suite bench``.

* ``metrics_speedup_vs_reference``: the fast key-space statistics against the straightforward
  scikit-learn / scipy reference (:mod:`bias_suite.metrics.reference`), same run, same data;
  ``metrics_max_relative_difference`` shows they agree. Workload: 4,000 keys per modality × 8 KV heads ×
  head_dim 128 from 40 samples (100 image and 100 text tokens each).
* ``keyspace_case_seconds_llava7b``: one gate case (one layer, one benchmark) at LLaVA-1.5-7B's key
  geometry — 32 KV heads × 128, 16 samples × 64 image and 40 text keys (the default token cap and
  sample count) — with the default settings, on the cores this process has. Target ≤ 1.0 s on 2 cores.

Keys are Gaussian with a per-sample offset (tokens of one sample are dependent, as in a model) and
image keys shifted away from text keys.
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
    image_tokens: int = 100  # per sample
    text_tokens: int = 100  # per sample
    n_heads: int = 8
    head_dim: int = 128

    @classmethod
    def quick(cls) -> MetricsShape:
        return cls(n_samples=8, image_tokens=10, text_tokens=10, n_heads=2, head_dim=8)

    @classmethod
    def llava7b_case(cls) -> MetricsShape:
        """One gate case of LLaVA-1.5-7B: 32 KV heads × 128, 16 samples × (64 image + 40 text) kept keys."""
        return cls(n_samples=16, image_tokens=64, text_tokens=40, n_heads=32, head_dim=128)


def synthetic_keys(shape: MetricsShape, seed: int = 0):
    """``(image [n_i, H, d], image_ids, text [n_t, H, d], text_ids)`` float32."""
    generator = torch.Generator().manual_seed(seed)
    offsets = 0.5 * torch.randn(shape.n_samples, shape.n_heads, shape.head_dim, generator=generator)
    direction = torch.randn(shape.n_heads, shape.head_dim, generator=generator)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    parts = []
    for per_sample, shift in ((shape.image_tokens, 1.5), (shape.text_tokens, 0.0)):
        sample_of_token = torch.arange(shape.n_samples * per_sample) // per_sample
        keys = torch.randn(sample_of_token.numel(), shape.n_heads, shape.head_dim, generator=generator)
        keys = keys + offsets[sample_of_token] + shift * direction
        parts += [keys, [f"sample-{i:03d}" for i in sample_of_token.tolist()]]
    return tuple(parts)


def run_metrics(quick: bool = False, repeats: int = 3) -> dict[str, float]:
    """Fast vs reference key-space statistics, and one LLaVA-7B gate case."""
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

    case = MetricsShape.quick() if quick else MetricsShape.llava7b_case()
    case_keys = synthetic_keys(case, seed=1)
    keyspace_metrics(*case_keys, config)  # warm-up (thread pool, allocator)
    case_seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        keyspace_metrics(*case_keys, config)
        case_seconds.append(time.perf_counter() - start)
    return {
        "metrics_keys_per_modality": shape.n_samples * shape.image_tokens,
        "metrics_heads": shape.n_heads,
        "metrics_head_dim": shape.head_dim,
        "metrics_seconds": fast_median,
        "metrics_reference_seconds": reference_seconds,
        "metrics_speedup_vs_reference": reference_seconds / fast_median,
        "metrics_max_relative_difference": largest,
        "keyspace_case_threads": torch.get_num_threads(),
        "keyspace_case_seconds_llava7b": statistics.median(case_seconds),
    }
