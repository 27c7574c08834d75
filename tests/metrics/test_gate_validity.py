"""Gated key-space metrics can move across their whole useful range, estimate population quantities
(no drift with the number of samples or the token cap), and their tests are calibrated."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from bias_suite.metrics import METRICS, KeySpaceConfig, keyspace_metrics
from tests.metrics.keysets import make_keysets

SIZE_INVARIANT = [name for name, spec in METRICS.items()
                  if spec.family == "keyspace" and spec.gateable and spec.size_invariant]


def realistic(seed: int, n_samples: int, shift: float, per_sample=(64, 40), heads: int = 2) -> dict:
    """Keys at a 7B model's head_dim (128) with per-image variation, shift in within-sample σ units."""
    return make_keysets(seed, n_samples=n_samples, per_sample=per_sample, dim=128, heads=heads, shift=shift,
                        offset=0.5, centre=4.0).pooled(KeySpaceConfig(n_bootstrap=100, n_permutations=50))


def test_jsd_keeps_rising_towards_one_as_the_modalities_separate():
    """The old logistic bound stopped at 0.9924 for 30σ, 100σ and 1000σ alike, and gave 0.956 at 10σ."""
    values = [realistic(0, 16, shift)["jsd"].value for shift in (4.0, 10.0, 30.0, 1000.0)]
    assert values[0] < values[1] <= values[2] <= values[3]
    assert values[1] > 0.99
    assert values[3] > 0.9999


def test_a_jsd_bound_of_0_999_can_fail():
    estimate = realistic(1, 16, 30.0)["jsd"]
    assert estimate.ci_low > 0.999


@pytest.mark.parametrize("shift", [0.0, 2.0])
def test_size_invariant_metrics_agree_at_8_16_and_32_samples(shift):
    results = {n: realistic(10 + n, n, shift) for n in (8, 16, 32)}
    for name in SIZE_INVARIANT:
        intervals = {n: results[n][name].ci for n in results}
        for a in intervals:
            for b in intervals:
                assert intervals[a][0] <= intervals[b][1] and intervals[b][0] <= intervals[a][1], (name, intervals)


def test_size_invariant_metrics_do_not_move_with_the_token_cap():
    few = realistic(3, 16, 2.0, per_sample=(8, 8))
    many = realistic(3, 16, 2.0, per_sample=(64, 40))
    for name in SIZE_INVARIANT:
        assert few[name].ci_low <= many[name].ci_high and many[name].ci_low <= few[name].ci_high, name


def test_ratio_no_longer_grows_with_the_amount_of_data():
    """Fixed 10σ shift: the old size-normalised ratio read 52 / 125 / 253 / 489 at 8 / 16 / 32 / 64 samples."""
    values = [realistic(20, n, 10.0)["ratio"].value for n in (8, 32)]
    assert values[1] < 2 * values[0]


def test_mmd2_pvalue_is_uniform_under_a_shared_per_sample_offset():
    """Image and text keys of a sample share its offset and are otherwise identical: the null holds, and
    the old relabelling of whole blocks across samples returned p = 1.000 here."""
    config = KeySpaceConfig(n_bootstrap=1, n_permutations=99)
    pvalues = [make_keysets(seed, n_samples=12, per_sample=(10, 6), dim=3, offset=1.0, shared_offset=True)
               .pooled(config)["mmd2_pvalue"].value for seed in range(200)]
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01
    assert 0.01 <= np.mean(np.asarray(pvalues) <= 0.05) <= 0.1


def test_mmd2_pvalue_detects_a_modest_shift():
    config = KeySpaceConfig(n_bootstrap=1, n_permutations=99)
    pvalues = [make_keysets(seed, n_samples=12, per_sample=(10, 6), dim=3, offset=1.0, shared_offset=True,
                            shift=1.0).pooled(config)["mmd2_pvalue"].value for seed in range(20)]
    assert np.mean(np.asarray(pvalues) <= 0.05) > 0.8


def test_projected_jsd_of_two_identical_gaussians_is_near_zero():
    """The plug-in histogram JS read 0.24–0.29 bits here; the bootstrap bias correction removes most of it."""
    generator = torch.Generator().manual_seed(0)
    image, text = torch.randn(16 * 64, 32, generator=generator), torch.randn(16 * 40, 32, generator=generator)
    ids_image, ids_text = [i // 64 for i in range(16 * 64)], [i // 40 for i in range(16 * 40)]
    result = keyspace_metrics(image, ids_image, text, ids_text, KeySpaceConfig(n_bootstrap=100))[-1]
    assert result.metrics["jsd_proj"].value < 0.08
