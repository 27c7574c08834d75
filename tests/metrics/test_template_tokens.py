"""Chat-template keys — the same pre-RoPE key in every sample — are fixed atoms of each sample's key
distribution: the within-block term keeps them, so the intra terms estimate non-negative distances between
samples (the plain U-statistic read significantly negative with 24 of 32 text tokens from the template)."""

from __future__ import annotations

import math

import pytest
import torch

from bias_suite.metrics import KeySpaceConfig, keyspace_metrics
from bias_suite.metrics.kernel import shared_key_mask
from bias_suite.metrics.keyspace import _as_heads
from bias_suite.metrics.layout import TokenLayout
from bias_suite.metrics.reference import reference_keyspace_metrics
from bias_suite.tools.populations import Population, draw_keys

CONFIG = KeySpaceConfig(n_bootstrap=50, n_permutations=20, n_folds=4)


@pytest.mark.parametrize("n_template", [8, 24])
@pytest.mark.parametrize("n_samples", [8, 16])
def test_identical_template_rows_leave_the_intra_terms_non_negative(n_template, n_samples):
    population = Population(delta=2.0, n_template=n_template)
    for seed in range(6):
        pooled = keyspace_metrics(*draw_keys(population, n_samples, seed), CONFIG)[-1].metrics
        for name in ("intra_text", "intra_image"):
            assert pooled[name].value > 0 and pooled[name].ci_high > 0, (seed, name, pooled[name])
        assert math.isfinite(pooled["ratio"].value)


def test_the_template_rows_and_nothing_else_are_atoms():
    image, image_ids, text, text_ids = draw_keys(Population(n_template=5, heads=2), 6, 0)
    layout = TokenLayout.of(image_ids, text_ids)
    keys = layout.arrange(_as_heads(image, "image"), _as_heads(text, "text"))
    atoms = shared_key_mask(keys, layout)
    expected = torch.zeros(layout.n_tokens, dtype=torch.bool)
    for sample in range(6):
        start = layout.block_starts[2 * sample + 1]
        expected[start:start + 5] = True  # the template rows open every text block
    assert torch.equal(atoms, expected[None].expand(2, -1))


def test_a_key_repeated_within_one_sample_only_is_not_an_atom():
    image, image_ids, text, text_ids = draw_keys(Population(heads=1), 6, 1)
    text = text.clone()
    text[1] = text[0]  # two tokens of sample 0 share a key; no other sample has it
    layout = TokenLayout.of(image_ids, text_ids)
    keys = layout.arrange(_as_heads(image, "image"), _as_heads(text, "text"))
    assert not bool(shared_key_mask(keys, layout).any())


def test_template_aware_terms_equal_the_reference():
    image, image_ids, text, text_ids = draw_keys(Population(delta=1.0, d=5, heads=1, m_image=9, m_text=11,
                                                            n_template=4), 8, 2)
    fast = keyspace_metrics(image, image_ids, text, text_ids, CONFIG)[-1].metrics
    reference = reference_keyspace_metrics(image, image_ids, text, text_ids, CONFIG)[-1]
    for name in ("intra_image", "intra_text", "inter", "ratio"):
        assert fast[name].value == pytest.approx(reference[name].value, rel=1e-4), name
        assert fast[name].ci == pytest.approx(reference[name].ci, rel=1e-4), name
