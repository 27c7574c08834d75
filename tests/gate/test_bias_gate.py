"""The release gate: what ``pytest --model=...`` runs.

Parametrized by the bias-suite plugin over ``--model`` × ``--benchmark`` × ``--layers`` (ids like
``test_key_separation[tiny-llava-photos-L2]``); each test measures one case, records its rows for
the report card, and fails when a gated metric's whole bootstrap interval is beyond its bound.
"""

import pytest

pytestmark = pytest.mark.bias_gate


def test_key_separation(bias_case, bias_gate):
    """Image vs text pre-RoPE keys of one decoder layer: jsd, mmd2, ratio, auroc, Fréchet, …"""
    bias_gate.check(bias_case, "keyspace")


def test_attention_share(bias_case, bias_gate):
    """Attention that text positions pay to image keys at one decoder layer: visual_share, logit_gap, …"""
    bias_gate.check(bias_case, "attention")


def test_text_preference(bias_behaviour_case, bias_gate):
    """How often the model follows a caption that contradicts the image (conflict benchmarks)."""
    bias_gate.check(bias_behaviour_case, "behaviour")
