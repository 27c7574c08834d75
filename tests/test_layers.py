"""Layer selectors: the syntax of --layers and of threshold files."""

import pytest

from bias_suite.errors import LayerSelectionError
from bias_suite.layers import LayerSelector


@pytest.mark.parametrize("text, n_layers, expected", [
    ("all", 4, (0, 1, 2, 3)),
    ("0,4,8", 12, (0, 4, 8)),
    ("0-3", 8, (0, 1, 2, 3)),
    ("every:4", 10, (0, 4, 8)),
    ("first_third", 32, tuple(range(11))),
    ("middle_third", 32, tuple(range(11, 21))),
    ("last_third", 32, tuple(range(21, 32))),
    ("last_third", 4, (3,)),
    ("-1", 4, (3,)),
    ("0,last_third", 6, (0, 4, 5)),
])
def test_selectors_resolve_to_sorted_layer_indices(text, n_layers, expected):
    assert LayerSelector.parse(text).resolve(n_layers) == expected


def test_thirds_cover_every_layer_exactly_once():
    for n_layers in range(3, 41):
        thirds = [LayerSelector.parse(t).resolve(n_layers) for t in ("first_third", "middle_third", "last_third")]
        assert sorted(sum(thirds, ())) == list(range(n_layers))


@pytest.mark.parametrize("text", ["", "middle_half", "every:0", "1..3", "first-third"])
def test_unknown_selectors_are_refused_when_parsed(text):
    with pytest.raises(LayerSelectionError, match=r"selector|every"):
        LayerSelector.parse(text)


def test_out_of_range_layer_names_the_model_and_its_range():
    with pytest.raises(LayerSelectionError, match=r"layer 40 out of range: tiny-llava has 4 decoder layers \(0–3\)"):
        LayerSelector.parse("40").resolve(4, "tiny-llava")


# A hybrid decoder (Qwen3.5-style): self-attention in every fourth layer, linear attention elsewhere.
HYBRID_ATTENTION = (3, 7, 11, 15)


@pytest.mark.parametrize(("selector", "expected"), [
    ("all", (3, 7, 11, 15)),
    ("every:2", (3, 11)),  # every other self-attention layer
    ("last_third", (15,)),
    ("0-8", (3, 7)),  # a range keeps the self-attention layers inside it
    ("-1", (15,)),
])
def test_selectors_count_self_attention_layers_of_hybrid_decoders(selector, expected):
    assert LayerSelector.parse(selector).resolve(16, "hybrid", HYBRID_ATTENTION) == expected


@pytest.mark.parametrize(("selector", "message"), [
    ("0", r"layer 0 of hybrid has no self-attention: keys exist only in layers \[3, 7, 11, 15\]"),
    ("0-2", r"'0-2' of hybrid holds no self-attention layer"),
])
def test_a_layer_without_self_attention_is_refused_by_name(selector, message):
    with pytest.raises(LayerSelectionError, match=message):
        LayerSelector.parse(selector).resolve(16, "hybrid", HYBRID_ATTENTION)
