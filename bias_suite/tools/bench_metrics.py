"""The metric-suite part of ``python -m bias_suite bench``.

* ``metrics_speedup_vs_reference``: the fast key-space statistics against the straightforward
  scikit-learn / scipy reference (:mod:`bias_suite.metrics.reference`, which refits the nested
  cross-validation without each sample with scikit-learn), same run, same data;
  ``metrics_max_relative_difference`` shows they agree (values and intervals). Workload: 16 samples × 64
  image and 64 text keys × 4 KV heads × head_dim 128, 200 bootstrap replicates.
* ``keyspace_layer_seconds``: one layer at head_dim 128 × 8 KV heads × 16 samples × 64 keys per modality on
  one thread, with the default bootstrap count (``keyspace_layer_seconds_b200``: with 200 replicates; their
  ratio is the cost of the default).
* ``keyspace_case_seconds_llava7b``: one gate case (one layer, one benchmark) at LLaVA-1.5-7B's key
  geometry — 32 KV heads × 128, 16 samples × 64 image and 40 text keys (the default token cap and
  sample count) — with the default settings, on the cores this process has. Target ≤ 1.0 s on 2 cores
  (0.8 s before the refit and bandwidth jackknives; about 3.6 s now: see the README).

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
from bias_suite.options import DEFAULT_BOOTSTRAP


@dataclass(frozen=True)
class MetricsShape:
    n_samples: int = 16
    image_tokens: int = 64  # per sample
    text_tokens: int = 64  # per sample
    n_heads: int = 4
    head_dim: int = 128

    @classmethod
    def quick(cls) -> MetricsShape:
        return cls(n_samples=8, image_tokens=10, text_tokens=10, n_heads=2, head_dim=8)

    @classmethod
    def layer(cls) -> MetricsShape:
        """The per-layer cost geometry: 8 KV heads × 128, 16 samples × 64 keys per modality."""
        return cls(n_heads=8)

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


def _median_seconds(function, repeats: int) -> float:
    function()  # warm-up (thread pool, allocator)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def run_metrics(quick: bool = False, repeats: int = 3) -> dict[str, float]:
    """Fast vs reference key-space statistics, one layer on one thread, and one LLaVA-7B gate case."""
    shape = MetricsShape.quick() if quick else MetricsShape()
    config = KeySpaceConfig(n_bootstrap=200)
    keys = synthetic_keys(shape)
    fast_median = _median_seconds(lambda: keyspace_metrics(*keys, config), repeats)
    fast = keyspace_metrics(*keys, config)
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

    layer_keys = synthetic_keys(MetricsShape.quick() if quick else MetricsShape.layer(), seed=2)
    layer = {name: _median_seconds(lambda b=bootstrap: keyspace_metrics(*layer_keys, KeySpaceConfig(n_bootstrap=b),
                                                                       threads=1), repeats)
             for name, bootstrap in (("default", DEFAULT_BOOTSTRAP), ("b200", 200))}

    case = MetricsShape.quick() if quick else MetricsShape.llava7b_case()
    case_keys = synthetic_keys(case, seed=1)
    return {
        "metrics_keys_per_modality": shape.n_samples * shape.image_tokens,
        "metrics_heads": shape.n_heads,
        "metrics_head_dim": shape.head_dim,
        "metrics_seconds": fast_median,
        "metrics_reference_seconds": reference_seconds,
        "metrics_speedup_vs_reference": reference_seconds / fast_median,
        "metrics_max_relative_difference": largest,
        "keyspace_layer_seconds": layer["default"],
        "keyspace_layer_seconds_b200": layer["b200"],
        "keyspace_bootstrap_default": DEFAULT_BOOTSTRAP,
        "keyspace_bootstrap_cost": layer["default"] / layer["b200"] - 1,
        "keyspace_case_threads": torch.get_num_threads(),
        "keyspace_case_seconds_llava7b": _median_seconds(lambda: keyspace_metrics(*case_keys, KeySpaceConfig()),
                                                         repeats),
    }
