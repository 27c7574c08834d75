"""Attention that survives a processor change: the count-adjusted share and the mass on sinks.

A processor change (another resolution, another tiling) changes how many image tokens a prompt has. The
raw visual share and the share normalised by the image fraction both move with the count even when every
image key is attended exactly as before; ``visual_log_odds`` (per-key attention of image vs text keys, sinks
left out) does not. Oracles: hand softmax arithmetic, and exchangeable keys drawn at several counts.
"""

from __future__ import annotations

import math

import pytest
import torch

from bias_suite.metrics import row_shares
from bias_suite.metrics.attention_rows import attention_rows

SCALING = 1.0
N_TEXT = 24
HEAD_DIM = 8


def prompt(n_image: int, seed: int, image_sink: bool = False):
    """Text before and after ``n_image`` image keys; image keys score ~1 logit below text keys for the query
    direction (exchangeable within each modality). One query row at the end, one head."""
    generator = torch.Generator().manual_seed(seed)
    n = N_TEXT + n_image
    image = torch.zeros(n, dtype=torch.bool)
    image[4:4 + n_image] = True
    keys = 0.5 * torch.randn(n, 1, HEAD_DIM, generator=generator)
    keys[image, 0, 0] -= 1.0  # the query is e0: image logits 1 lower on average
    sinks = torch.zeros(n, dtype=torch.bool)
    sinks[0] = True  # the first token is a sink
    if image_sink:
        keys[4, 0, 0] = 3.0  # one massive image key draws attention whatever the count
        sinks[4] = True
    query = torch.zeros(1, 1, HEAD_DIM)
    query[0, 0, 0] = 1.0
    return query, keys, torch.tensor([n - 1]), image, sinks


def averaged(n_image: int, name: str, image_sink: bool = False, draws: int = 200) -> float:
    values = [float(getattr(row_shares(*prompt(n_image, seed, image_sink), SCALING), name)[0, 0])
              for seed in range(draws)]
    return sum(values) / len(values)


@pytest.mark.parametrize("image_sink", [False, True], ids=["no-image-sink", "one-image-sink"])
def test_visual_log_odds_does_not_move_with_the_image_token_count(image_sink):
    counts = (16, 64, 256)
    log_odds = [averaged(n, "visual_log_odds", image_sink) for n in counts]
    share = [averaged(n, "visual_share", image_sink) for n in counts]
    share_norm = [averaged(n, "visual_share_norm", image_sink) for n in counts]
    assert max(log_odds) - min(log_odds) < 0.1
    assert log_odds[0] == pytest.approx(-1.0, abs=0.15)  # log E e^(s_I) / E e^(s_T) = −1 for these keys
    assert share[-1] - share[0] > 0.2  # the raw share follows the count
    assert abs(share_norm[-1] - share_norm[0]) > 0.1  # and so does the share over the image fraction


def test_visual_log_odds_equals_hand_arithmetic():
    query, keys, positions, image, sinks = prompt(6, seed=3)
    row = attention_rows(query, keys, positions, SCALING)[0, 0]
    kept = ~sinks
    image_mass, text_mass = float(row[image & kept].sum()), float(row[~image & kept].sum())
    expected = math.log(image_mass / text_mass) - math.log(int((image & kept).sum()) / int((~image & kept).sum()))
    shares = row_shares(query, keys, positions, image, sinks, SCALING)
    assert float(shares.visual_log_odds[0, 0]) == pytest.approx(expected, abs=1e-5)


def test_sink_mass_is_the_attention_on_sinks_of_both_modalities():
    query, keys, positions, image, sinks = prompt(8, seed=4, image_sink=True)
    row = attention_rows(query, keys, positions, SCALING)[0, 0]
    shares = row_shares(query, keys, positions, image, sinks, SCALING)
    assert float(shares.sink_mass[0, 0]) == pytest.approx(float(row[sinks].sum()), abs=1e-6)
    assert float(shares.visual_sink_mass[0, 0]) == pytest.approx(float(row[4]), abs=1e-6)
    assert float(shares.visual_share[0, 0]) == pytest.approx(
        float(shares.visual_sink_mass[0, 0]) + float(row[image & ~sinks].sum()), abs=1e-6)


def test_a_row_without_non_sink_image_keys_has_no_log_odds():
    query, keys, positions, image, sinks = prompt(1, seed=5, image_sink=True)  # the only image key is a sink
    assert math.isnan(float(row_shares(query, keys, positions, image, sinks, SCALING).visual_log_odds[0, 0]))
