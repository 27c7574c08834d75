"""The fast key-space statistics equal a straightforward scikit-learn / scipy implementation."""

from __future__ import annotations

import math

import pytest

from bias_suite.metrics.reference import reference_keyspace_metrics
from tests.metrics.keysets import FAST, make_keysets

# The kernel is evaluated in float32: the intra/inter means are differences of nearly equal kernel
# means, and ratio divides by them, so they carry the float32 rounding amplified (about 1e-4 relative).
TOLERANCE = {"ratio": dict(rel=1e-3, abs=1e-5), "intra_image": dict(rel=1e-4, abs=1e-6),
             "intra_text": dict(rel=1e-4, abs=1e-6), "inter": dict(rel=1e-4, abs=1e-6)}
DEFAULT = dict(rel=1e-5, abs=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("shift", [0.0, 0.6, 5.0])
def test_fast_statistics_equal_the_scikit_learn_scipy_reference_per_head_and_pooled(shift):
    sets = make_keysets(7, n_samples=10, per_sample=(9, 13), dim=5, heads=2, shift=shift)
    fast = sets.metrics(FAST)
    reference = reference_keyspace_metrics(sets.image, sets.image_ids, sets.text, sets.text_ids, FAST)
    assert [r.head for r in fast] == [0, 1, None]
    for ours, theirs in zip(fast, reference):
        for name, estimate in ours.metrics.items():
            tolerance = TOLERANCE.get(name, DEFAULT)
            assert estimate.value == pytest.approx(theirs[name].value, nan_ok=True, **tolerance), (ours.head, name)
            if estimate.ci is not None and all(map(math.isfinite, estimate.ci)):
                assert estimate.ci == pytest.approx(theirs[name].ci, **tolerance), (ours.head, name)
