"""Per-sample records: plain JSON that survives a round trip, a key distance in text-spread units, strata."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bias_suite.metrics.samples import LayerMeasures, SampleRecord, by_image_tokens, coupling_estimates, key_distances


def record(sample_id: str, n_image_tokens: int, share: float, margin: float, layer: int = 2) -> SampleRecord:
    return SampleRecord("m", "b", sample_id, n_image_tokens,
                        (("margin", margin), ("trap_margin", math.nan), ("correct", 1.0)),
                        (LayerMeasures(layer, share, share, -share, 0.1, 0.05, 1.0 - share),))


def test_a_record_survives_json_with_plain_types_and_null_for_nan():
    original = record("s/1", 16, 0.4, 1.25)
    data = json.loads(json.dumps(original.to_json(), allow_nan=False))
    assert data["outcomes"]["trap_margin"] is None
    back = SampleRecord.from_json(data)
    assert back.to_json() == original.to_json()
    assert back.at(2).visual_share == 0.4 and math.isnan(back.outcome("trap_margin"))
    with pytest.raises(KeyError, match="layer 3 was not measured"):
        back.at(3)


def test_key_distance_is_the_centroid_gap_in_units_of_the_text_spread():
    rng = np.random.default_rng(0)
    text = torch.tensor(rng.standard_normal((400, 2, 4)))
    shifted = torch.tensor(rng.standard_normal((30, 2, 4))) + torch.tensor([3.0, 0, 0, 0])
    centred = text[:30].clone()
    distances = key_distances([shifted, centred, torch.zeros(0, 2, 4)], text)
    centre, spread = text.mean(0), (text - text.mean(0)).square().sum(-1).mean(0).sqrt()
    expected = ((shifted.mean(0) - centre).norm(dim=-1) / spread).mean()
    assert float(distances[0]) == pytest.approx(float(expected))
    assert float(distances[0]) == pytest.approx(3.0 / 2.0, rel=0.2)  # a shift of 3 against a spread of √4
    assert float(distances[1]) < 0.3 and math.isnan(float(distances[2]))


def test_strata_by_image_token_count_average_their_own_samples():
    records = [record(f"a{i}", 64, 0.2 + 0.01 * i, 0.0) for i in range(5)]
    records += [record(f"b{i}", 256, 0.6, 0.0) for i in range(3)]
    strata = by_image_tokens(records, 2, n_bootstrap=20)
    assert sorted(strata) == [64, 256]
    assert strata[64].value == pytest.approx(0.22) and strata[256].value == pytest.approx(0.6)


def test_coupling_of_records_correlates_each_measure_with_the_margin():
    records = [record(f"s{i}", 16, 0.1 * i, float(i) ** 3) for i in range(10)]
    coupling = coupling_estimates(records, 2, n_bootstrap=50)
    assert coupling["visual_share_coupling"].value == pytest.approx(1.0)
    assert coupling["logit_gap_coupling"].value == pytest.approx(-1.0)
    assert coupling["key_distance_coupling"].value == pytest.approx(-1.0)
