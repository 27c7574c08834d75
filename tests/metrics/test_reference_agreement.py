"""The fast key-space statistics equal a straightforward scikit-learn / scipy implementation."""

from __future__ import annotations

import math

import pytest

from bias_suite.metrics.reference import reference_keyspace_metrics
from tests.metrics.keysets import FAST, make_keysets


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # bootstrap draws that leave a half-split empty
@pytest.mark.parametrize("shift", [0.0, 0.6, 5.0])
def test_fast_statistics_equal_the_scikit_learn_scipy_reference(shift):
    sets = make_keysets(7, n_samples=10, per_sample=(9, 13), dim=5, heads=2, shift=shift)
    fast = sets.metrics(FAST)
    reference = reference_keyspace_metrics(sets.image, sets.image_ids, sets.text, sets.text_ids, FAST)
    for ours, theirs in zip(fast, reference):
        for name, estimate in ours.metrics.items():
            assert estimate.value == pytest.approx(theirs[name].value, rel=1e-5, abs=1e-6), (ours.head, name)
            if estimate.ci is not None and all(map(math.isfinite, estimate.ci)):
                assert estimate.ci == pytest.approx(theirs[name].ci, rel=1e-5, abs=1e-6), (ours.head, name)
