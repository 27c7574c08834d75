"""The mathematics of the key-space statistics, stated as properties."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bias_suite.metrics import KEYSPACE_METRICS
from tests.metrics.keysets import FAST, keysets, make_keysets, random_rotation

PROPERTY = settings(max_examples=12, deadline=None, derandomize=True)
ORDER_FREE = [name for name in KEYSPACE_METRICS if name != "mmd2_pvalue"]


def defined_or_said(estimate) -> bool:
    """A value, or NaN with the reason it is undefined (never a silent NaN)."""
    return math.isfinite(estimate.value) or bool(estimate.undefined_because)


def same(a, b) -> bool:
    """Bit-identical estimates (NaN equal to NaN), interval and jackknife values included."""
    def key(estimate):
        return [repr(x) for x in (estimate.value, estimate.ci_low, estimate.ci_high, *(estimate.jackknife or ()))]
    return key(a) == key(b)


@PROPERTY
@given(keysets(shift=0.0, shared_offset=True))
def test_modalities_exchangeable_within_each_sample_show_no_separation(sets):
    metrics = sets.pooled()
    assert metrics["jsd"].value < 0.05
    assert 0.25 < metrics["auroc"].value < 0.75
    ratio = metrics["ratio"]
    assert defined_or_said(ratio) and (math.isnan(ratio.value) or 0.6 < ratio.value < 1.6)
    assert abs(metrics["mmd2"].value) < 0.05
    assert metrics["mmd2_pvalue"].value > 0.001


@PROPERTY
@given(keysets(shift=200.0))
def test_disjoint_clusters_are_fully_separated(sets):
    metrics = sets.pooled()
    assert metrics["jsd"].value > 0.999
    assert metrics["jsd_proj"].value > 0.9
    assert metrics["auroc"].value == 1.0
    assert metrics["mmd2_pvalue"].value == pytest.approx(1 / (FAST.n_permutations + 1))
    # bounded by how much the samples differ among themselves; undefined (said) when they do not measurably
    assert defined_or_said(metrics["ratio"]) and (math.isnan(metrics["ratio"].value) or metrics["ratio"].value > 10)


@PROPERTY
@given(keysets(shift=1.0))
def test_statistics_are_symmetric_in_the_two_modalities(sets):
    forward, backward = sets.pooled(), sets.swapped().pooled()
    for name in ("jsd", "auroc", "mmd2", "inter", "ratio", "centroid_cosine", "frechet", "frechet_mean_share"):
        assert backward[name].value == pytest.approx(forward[name].value, rel=1e-5, abs=1e-7, nan_ok=True), name
    assert backward["intra_image"].value == pytest.approx(forward["intra_text"].value, rel=1e-5)
    assert backward["norm_ratio"].value == pytest.approx(1 / forward["norm_ratio"].value, rel=1e-6)


@PROPERTY
@given(keysets(shift=0.7), st.randoms(use_true_random=False))
def test_statistics_do_not_depend_on_token_order_bit_for_bit(sets, random):
    image_order = list(range(len(sets.image_ids)))
    text_order = list(range(len(sets.text_ids)))
    random.shuffle(image_order)
    random.shuffle(text_order)
    shuffled = type(sets)(sets.image[image_order], tuple(sets.image_ids[i] for i in image_order),
                          sets.text[text_order], tuple(sets.text_ids[i] for i in text_order))
    before, after = sets.metrics(), shuffled.metrics()
    for ours, theirs in zip(before, after):
        for name in KEYSPACE_METRICS:
            assert same(ours.metrics[name], theirs.metrics[name]), (ours.head, name)


@PROPERTY
@given(keysets(shift=0.7), st.integers(0, 1000))
def test_statistics_are_invariant_to_a_common_rotation(sets, seed):
    # jsd_proj is left out: when the top-2 principal components are (nearly) tied, the histogram
    # plane is only defined up to a rotation within it. centroid_cosine and norm_ratio are about the
    # origin, which a rotation keeps.
    rotated = sets.transformed(random_rotation(sets.image.shape[-1], seed))
    before, after = sets.pooled(), rotated.pooled()
    for name in [n for n in ORDER_FREE if n != "jsd_proj"]:
        assert after[name].value == pytest.approx(before[name].value, rel=1e-4, abs=1e-5, nan_ok=True), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_separation_grows_as_one_cluster_moves_away(seed):
    shifts = [0.0, 1.0, 2.0, 4.0, 8.0]
    results = [make_keysets(seed, n_samples=12, dim=4, shift=shift, offset=0.3).pooled() for shift in shifts]
    for name in ("jsd", "mmd2", "auroc", "ratio", "frechet"):
        values = [r[name].value for r in results]
        assert all(b >= a - 0.02 * abs(a) - 0.01 for a, b in itertools.pairwise(values)), (name, values)
        assert values[-1] > values[0] + 0.1 * max(abs(values[-1]), 1e-3), (name, values)
