"""How capture finds its way around an image-text-to-text model, from the model's own structure.

* the **text decoder**: the module that owns the decoder ``layers`` and embeds the model's input tokens
  (``get_decoder()``, followed down through ``*ForCausalLM`` wrappers);
* its **self-attention layers** (hybrid decoders also have linear-attention, convolution or
  cross-attention layers, which hold no keys over the token sequence);
* the **geometry** of its attention (heads, KV heads, head size, scaling, backend, 3-D mRoPE — read from
  the rotary embedding, the authority, not from a config key that may be absent);
* the **image token** id (the config's, or the VQ vocabulary mapping's);
* the **positions** a prefill runs with: the model's own, as ``generate()`` would compute them
  (padding-aware, the family's scheme: PaliGemma counts from 1, the Qwen-VL family computes 3-D
  positions) — never a copy that could disagree.

Families that cannot fit key-space capture get an error saying why: encoder-decoder models, decoders
without rotary positions, fused query/key/value projections, images entering through cross-attention.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from bias_suite.errors import CaptureError, LayerSelectionError

CAPTURE_BACKEND_PREFIX = "bias_suite_capture"
T = TypeVar("T")


@dataclass(frozen=True)
class DecoderGeometry:
    """Shape of the text decoder's attention, read from its modules."""

    n_layers: int  # decoder layers, with or without self-attention
    attention_layers: tuple[int, ...]  # layers with self-attention over the token sequence
    n_heads: int
    n_kv_heads: int
    head_dim: int
    scaling: float  # multiplier of q·k inside the softmax, usually head_dim ** -0.5
    attn_implementation: str  # the backend capture delegates to
    uses_mrope: bool  # 3-D rotary positions (Qwen2-VL family)


def family_name(model: nn.Module) -> str:
    """The model's family as transformers names it (``config.model_type``), else its class name."""
    return getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__


@contextmanager
def naming_the_family(model: nn.Module) -> Iterator[None]:
    """Capture errors raised inside start with the model's family (``"gemma3: ..."``), so a failure in a
    run over many models says which one and why."""
    family = family_name(model)
    try:
        yield
    except (CaptureError, LayerSelectionError) as error:
        if str(error).startswith(f"{family}:"):
            raise
        raise type(error)(f"{family}: {error}") from error


def _names_the_family(function: Callable[..., T]) -> Callable[..., T]:
    """Decorate a function of ``model, ...`` so its capture errors name the model's family."""
    @functools.wraps(function)
    def wrapper(model, *args, **kwargs):
        with naming_the_family(model):
            return function(model, *args, **kwargs)

    return wrapper


def _embeds_with(module: nn.Module, embeddings: nn.Module) -> bool:
    try:
        return module.get_input_embeddings() is embeddings
    except (AttributeError, NotImplementedError):
        return False


@_names_the_family
def text_decoder(model: nn.Module) -> nn.Module:
    """The language-model backbone (the module that owns ``layers``) of an image-text-to-text model.

    ``get_decoder()`` of a model whose language model is a ``*ForCausalLM`` returns that wrapper (Llama 4,
    BLIP-2, Kosmos-2): it is followed down while the module owns no layers; when that stops short, the
    decoder is the module that holds the layers and embeds the model's own input tokens.
    """
    name = type(model).__name__
    if getattr(model.config, "is_encoder_decoder", False):
        raise CaptureError(f"{name} is an encoder-decoder model: its images go through a bidirectional encoder, not "
                           "a decoder's causal key space; bias-suite captures decoder-only language models")
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    seen: set[int] = set()
    while decoder is not None and not isinstance(getattr(decoder, "layers", None), nn.ModuleList):
        if id(decoder) in seen or not hasattr(decoder, "get_decoder"):
            decoder = None
            break
        seen.add(id(decoder))
        following = decoder.get_decoder()
        decoder = None if following is decoder else following
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if decoder is None and embeddings is not None:
        decoder = next((m for m in model.modules() if isinstance(getattr(m, "layers", None), nn.ModuleList)
                        and _embeds_with(m, embeddings)), None)
    if decoder is None or not isinstance(getattr(decoder, "layers", None), nn.ModuleList):
        raise CaptureError(f"{name}: cannot find the text decoder (a module with decoder layers that embeds the "
                           "model's input tokens); bias-suite captures decoder-only language models")
    return decoder


def self_attention(layer: nn.Module) -> nn.Module | None:
    """The layer's self-attention module; None for layers without one (cross-attention, linear attention,
    short convolutions)."""
    attention = getattr(layer, "self_attn", None)
    return attention if isinstance(attention, nn.Module) and hasattr(attention, "layer_idx") else None


@_names_the_family
def decoder_geometry(model: nn.Module) -> DecoderGeometry:
    decoder = text_decoder(model)
    attention_layers = tuple(i for i, layer in enumerate(decoder.layers) if self_attention(layer) is not None)
    if not attention_layers:
        raise CaptureError(f"{type(model).__name__}: no decoder layer has self-attention over the token sequence "
                           "(images enter through cross-attention?): there are no keys to compare")
    attention = self_attention(decoder.layers[attention_layers[0]])
    config = decoder.config
    n_heads = config.num_attention_heads
    n_kv_heads = getattr(config, "num_key_value_heads", None) or n_heads
    head_dim = getattr(attention, "head_dim", None) or config.hidden_size // n_heads
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rotary = getattr(decoder, "rotary_emb", None)
    return DecoderGeometry(
        n_layers=len(decoder.layers),
        attention_layers=attention_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        scaling=float(getattr(attention, "scaling", head_dim**-0.5)),
        attn_implementation=backend_of(config._attn_implementation),
        # The rotary embedding is the authority: Qwen-VL rotaries fall back to a default mrope_section
        # when the config has none (Qwen3-VL's default config).
        uses_mrope="mrope_section" in rope or hasattr(rotary, "mrope_section"),
    )


def backend_of(attn_implementation: str | None) -> str:
    """The real backend behind a (possibly already wrapped) implementation name."""
    name = attn_implementation or "eager"
    prefix = CAPTURE_BACKEND_PREFIX + "|"
    return name.removeprefix(prefix)


@_names_the_family
def resolve_layers(model: nn.Module, layers: Sequence[int], model_name: str | None = None,
                   geometry: DecoderGeometry | None = None) -> tuple[int, ...]:
    """Normalise layer indices (negatives count from the end); raise naming the model on bad ones and on
    layers without self-attention. ``geometry``: the model's, when the caller carries it."""
    geometry = geometry or decoder_geometry(model)
    n_layers = geometry.n_layers
    name = model_name or getattr(model.config, "name_or_path", None) or type(model).__name__
    resolved = []
    for layer in layers:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise LayerSelectionError(f"layer {layer!r} is not an integer index")
        if not -n_layers <= layer < n_layers:
            raise LayerSelectionError(
                f"layer {layer} out of range: {name} has {n_layers} decoder layers (0–{n_layers - 1})"
            )
        resolved.append(layer % n_layers)
    without = sorted({layer for layer in resolved if layer not in geometry.attention_layers})
    if without:
        kinds = sorted({type(text_decoder(model).layers[layer]).__name__ for layer in without})
        raise LayerSelectionError(f"layers {without} of {name} have no self-attention ({', '.join(kinds)}): keys "
                                  f"exist only in layers {list(geometry.attention_layers)}")
    return tuple(sorted(set(resolved)))


@_names_the_family
def image_token_id(model: nn.Module) -> int:
    """The placeholder token the model replaces with visual features."""
    config = model.config
    token_id = getattr(config, "image_token_id", None)
    if token_id is None:
        token_id = getattr(config, "image_token_index", None)
    if token_id is None:  # Chameleon / Emu3: the placeholder id lives in the VQ vocabulary mapping
        mapping = getattr(getattr(model, "model", model), "vocabulary_mapping", None)
        token_id = getattr(mapping, "image_token_id", None)
    if token_id is None:
        raise CaptureError(
            f"{type(model).__name__} has no image token id (config.image_token_id / image_token_index): images "
            "do not enter as placeholder tokens in the sequence, so image and text keys cannot be told apart"
        )
    return int(token_id)


@_names_the_family
def prefill_kwargs(model: PreTrainedModel, inputs: Mapping[str, Tensor],
                   geometry: DecoderGeometry | None = None) -> dict:
    """The keyword arguments capture runs ``model`` with: the processor's inputs, no KV cache, and the
    positions the model itself computes for a prefill — what ``generate()`` feeds it: its padding-aware
    position computation (``_prepare_position_ids_for_generation``, overridden by the Qwen-VL family for
    3-D positions) and its family adjustments (``prepare_inputs_for_generation``: PaliGemma counts from 1).
    A left-padded sample therefore gets the same positions as when it is run alone. Tests use it to run
    oracle forwards on identical inputs. ``geometry``: the model's, when the caller carries it."""
    geometry = geometry or decoder_geometry(model)
    kwargs = dict(inputs)
    kwargs["use_cache"] = False
    parameters = inspect.signature(model.forward).parameters
    if geometry.uses_mrope and "mm_token_type_ids" in parameters and kwargs.get("mm_token_type_ids") is None:
        raise CaptureError(
            f"{type(model).__name__} uses 3-D mRoPE positions and needs 'mm_token_type_ids' "
            "(the processor returns it); "
            "without it positions silently fall back to 1-D"
        )
    if "position_ids" in kwargs:
        return kwargs
    if "position_ids" in parameters and hasattr(model, "_prepare_position_ids_for_generation"):
        base = getattr(model, "model", model)
        saved_deltas = getattr(base, "rope_deltas", None)  # the Qwen-VL override caches these
        positions = model._prepare_position_ids_for_generation(inputs["input_ids"], dict(inputs))
        prepared = model.prepare_inputs_for_generation(
            inputs["input_ids"], **{k: v for k, v in inputs.items() if k != "input_ids"},
            position_ids=positions, use_cache=False, is_first_iteration=True,
        )
        if hasattr(base, "rope_deltas"):
            base.rope_deltas = saved_deltas
        kwargs["position_ids"] = prepared.get("position_ids", positions)
    elif not geometry.uses_mrope:
        # A forward without a position_ids parameter (InstructBLIP) passes it on to its language model:
        # positions that count real tokens only.
        attention_mask = inputs.get("attention_mask")
        valid = torch.ones_like(inputs["input_ids"]) if attention_mask is None else attention_mask
        kwargs["position_ids"] = (valid.long().cumsum(-1) - 1).clamp(min=0)
    return kwargs
