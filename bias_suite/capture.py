"""Exact capture of keys, queries and image positions from the text decoder of an MLLM.

Mechanism (see DESIGN §2):

* **pre-RoPE keys**: forward hook on ``self_attn.k_proj`` (or ``k_norm`` where the model normalises
  keys before RoPE) of each chosen decoder layer.
* **post-RoPE queries and keys**: the text model's attention implementation is switched, for the
  duration of the capture only, to a registered ``AttentionInterface`` wrapper that records ``query``
  and ``key`` exactly as the kernel receives them and then delegates to the model's real backend
  (sdpa, flash, eager). The matching ``AttentionMaskInterface`` entry is registered under the same
  name, otherwise the model would build no mask and padded batches would be silently wrong. The
  vision tower keeps its own backend.
* **image positions**: ``input_ids == config.image_token_id``; the count is checked against the
  number of visual features the model scatters into the sequence.

Nothing here needs ``output_attentions``. Tensors are moved to CPU float32 per batch, only for the
chosen layers, so memory is bounded by one batch on the device plus the kept rows on the host.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from bias_suite.errors import (
    CaptureError,
    ImageTokenMismatchError,
    LayerSelectionError,
    MissingImageTokensError,
    NonFiniteKeysError,
)

QueryRows = Literal["after_image", "last", "all"]
CAPTURE_BACKEND_PREFIX = "bias_suite_capture"


@dataclass(frozen=True)
class CaptureConfig:
    """What to capture.

    layers: decoder layer indices (negative counts from the end).
    query_rows: which post-RoPE query rows to keep — ``"after_image"`` (every token after the last
        image token: the question and the last prompt position), ``"last"`` or ``"all"``.
    max_tokens_per_modality: optional cap on pre-RoPE key rows kept per sample and modality; the
        subsample is seeded by ``seed`` and the sample id, so it does not depend on batch composition.
    keep_post_rope_keys: post-RoPE keys of every token are needed to recompute attention rows; turn
        off when only the key-space view is wanted.
    """

    layers: tuple[int, ...]
    query_rows: QueryRows = "after_image"
    max_tokens_per_modality: int | None = None
    seed: int = 0
    keep_post_rope_keys: bool = True

    def __post_init__(self) -> None:
        if self.query_rows not in ("after_image", "last", "all"):
            raise ValueError(f"query_rows must be 'after_image', 'last' or 'all', not {self.query_rows!r}")
        if self.max_tokens_per_modality is not None and self.max_tokens_per_modality < 1:
            raise ValueError(f"max_tokens_per_modality must be >= 1, not {self.max_tokens_per_modality}")
        if not self.layers:
            raise ValueError("CaptureConfig.layers is empty: name at least one decoder layer")


@dataclass(frozen=True)
class DecoderGeometry:
    """Shape of the text decoder's attention, read from its modules."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    scaling: float  # multiplier of q·k inside the softmax, usually head_dim ** -0.5
    attn_implementation: str  # the backend capture delegates to
    uses_mrope: bool  # 3-D rotary positions (Qwen2-VL family)


@dataclass(frozen=True)
class LayerCapture:
    """One decoder layer of one sample, padding removed. float32 on CPU."""

    layer: int
    pre_rope_keys: Tensor  # [n_key_rows, n_kv_heads, head_dim], rows at SampleCapture.key_positions
    post_rope_keys: Tensor | None  # [n_tokens, n_kv_heads, head_dim], every token, as the kernel sees them
    post_rope_queries: Tensor  # [n_query_rows, n_heads, head_dim], rows at SampleCapture.query_positions
    hidden_max_abs: Tensor  # [n_tokens], max |h| of the layer's input hidden state (massive activations)
    sliding_window: int | None  # key window of this layer's attention, None for full causal attention


@dataclass(frozen=True)
class SampleCapture:
    """Everything captured for one sample. Positions index the unpadded token sequence."""

    sample_id: str
    input_ids: Tensor  # [n_tokens] int64
    image_mask: Tensor  # [n_tokens] bool, True at image placeholder tokens
    position_ids: Tensor  # [n_axes, n_tokens] int64: 1 axis for RoPE, 3 (t, h, w) for mRoPE
    key_positions: Tensor  # [n_key_rows] int64, sorted: tokens whose pre-RoPE keys were kept
    query_positions: Tensor  # [n_query_rows] int64, sorted: tokens whose post-RoPE queries were kept
    layers: dict[int, LayerCapture] = field(repr=False)

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def text_mask(self) -> Tensor:
        """``[n_tokens]`` bool, True at every non-image token (template and special tokens included)."""
        return ~self.image_mask

    def sink_positions(self, layer: int, massive_ratio: float = 20.0) -> Tensor:
        """Attention-sink positions for ``layer``: the first token, plus every token whose input hidden
        state has a massive activation (max |h| above ``massive_ratio`` × the median over tokens).
        Returns ``[n_sinks]`` int64, sorted."""
        max_abs = self.layers[layer].hidden_max_abs
        massive = max_abs > massive_ratio * max_abs.median()
        massive[0] = True
        return massive.nonzero().flatten()


@dataclass(frozen=True)
class BatchCapture:
    """Result of :func:`capture_batch`: one :class:`SampleCapture` per input row, in input order."""

    samples: tuple[SampleCapture, ...]
    geometry: DecoderGeometry
    last_logits: Tensor  # [batch, vocab] float32, logits at each sample's last position


# --------------------------------------------------------------------------- model structure


def text_decoder(model: nn.Module) -> nn.Module:
    """The language-model backbone of an image-text-to-text model (the module that owns ``layers``)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None or not isinstance(getattr(decoder, "layers", None), nn.ModuleList):
        raise CaptureError(
            f"{type(model).__name__}: cannot find the text decoder (get_decoder().layers); "
            "capture supports transformers image-text-to-text models with a decoder-only language model"
        )
    return decoder


def decoder_geometry(model: nn.Module) -> DecoderGeometry:
    decoder = text_decoder(model)
    attn = decoder.layers[0].self_attn
    config = decoder.config
    n_heads = config.num_attention_heads
    n_kv_heads = getattr(config, "num_key_value_heads", None) or n_heads
    head_dim = getattr(attn, "head_dim", None) or config.hidden_size // n_heads
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return DecoderGeometry(
        n_layers=len(decoder.layers),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        scaling=float(getattr(attn, "scaling", head_dim**-0.5)),
        attn_implementation=_backend_of(config._attn_implementation),
        uses_mrope="mrope_section" in rope,
    )


def resolve_layers(model: nn.Module, layers: Sequence[int], model_name: str | None = None) -> tuple[int, ...]:
    """Normalise layer indices (negatives count from the end); raise naming the model on bad ones."""
    n_layers = len(text_decoder(model).layers)
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
    return tuple(sorted(set(resolved)))


def image_token_id(model: nn.Module) -> int:
    config = model.config
    token_id = getattr(config, "image_token_id", None)
    if token_id is None:
        token_id = getattr(config, "image_token_index", None)
    if token_id is None:
        raise CaptureError(
            f"{type(model).__name__} config has no image_token_id / image_token_index: "
            "cannot tell image tokens from text tokens"
        )
    return int(token_id)


# --------------------------------------------------------------------------- the attention wrapper


def _backend_of(attn_implementation: str | None) -> str:
    """The real backend behind a (possibly already wrapped) implementation name."""
    name = attn_implementation or "eager"
    prefix = CAPTURE_BACKEND_PREFIX + "|"
    return name[len(prefix):] if name.startswith(prefix) else name


def _capturing_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask, **kwargs):
    """Registered attention function: record q/k of chosen layers, then run the real backend."""
    delegate, recorder = module._bias_suite_capture
    if recorder is not None:
        recorder.record_attention(module.layer_idx, query, key)
    return delegate(module, query, key, value, attention_mask, **kwargs)


def _capture_backend_name(backend: str) -> str:
    """Register (once) and return the wrapper name for ``backend``.

    The name contains the backend's own name so transformers' checks that look for e.g. "flash" in
    ``config._attn_implementation`` (unpadding, position handling) behave as with the real backend.
    """
    name = f"{CAPTURE_BACKEND_PREFIX}|{backend}"
    if name not in ALL_ATTENTION_FUNCTIONS:
        if backend not in ALL_MASK_ATTENTION_FUNCTIONS:
            raise CaptureError(
                f"attention implementation {backend!r} has no mask function in transformers' "
                "AttentionMaskInterface; capture supports sdpa, eager and flash_attention_*"
            )
        AttentionInterface.register(name, _capturing_attention)
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[backend])
    return name


def _delegate_for(attn_module: nn.Module, backend: str):
    if backend == "eager":
        eager = getattr(sys.modules[type(attn_module).__module__], "eager_attention_forward", None)
        if eager is None:
            raise CaptureError(f"{type(attn_module).__name__} has no eager_attention_forward to delegate to")
        return eager
    if backend not in ALL_ATTENTION_FUNCTIONS:
        raise CaptureError(f"attention implementation {backend!r} is not registered in transformers")
    return ALL_ATTENTION_FUNCTIONS[backend]


# --------------------------------------------------------------------------- recording


class _Recorder:
    """Collects one batch's tensors for the chosen layers (on the model's device until finalised)."""

    def __init__(self, layers: tuple[int, ...], geometry: DecoderGeometry, query_index: list[Tensor]):
        self.layers = layers
        self.geometry = geometry
        self.query_index = query_index  # per sample: [n_query_rows] padded positions
        self.pre_rope_keys: dict[int, Tensor] = {}  # [batch, seq, n_kv, head_dim]
        self.post_rope_keys: dict[int, Tensor] = {}  # [batch, n_kv, seq, head_dim]
        self.post_rope_queries: dict[int, list[Tensor]] = {}  # per sample [n_heads, n_rows, head_dim]
        self.hidden_max_abs: dict[int, Tensor] = {}  # [batch, seq]
        self.sliding_windows: dict[int, int | None] = {}
        self.position_ids: Tensor | None = None
        self.n_image_features = 0
        self.placeholder_check_ran = False

    def record_attention(self, layer: int, query: Tensor, key: Tensor) -> None:
        g = self.geometry
        if query.shape[1] != g.n_heads or key.shape[1] != g.n_kv_heads:
            raise CaptureError(
                f"layer {layer}: attention backend received query {tuple(query.shape)} / key {tuple(key.shape)}, "
                f"expected [batch, {g.n_heads}, seq, {g.head_dim}] / [batch, {g.n_kv_heads}, seq, {g.head_dim}]"
            )
        self.post_rope_keys[layer] = key.detach()
        self.post_rope_queries[layer] = [query[b, :, rows].detach() for b, rows in enumerate(self.query_index)]

    def pre_rope_hook(self, layer: int):
        def hook(_module, _args, output: Tensor) -> None:
            batch, seq = output.shape[:2]
            self.pre_rope_keys[layer] = output.detach().reshape(batch, seq, self.geometry.n_kv_heads, -1)

        return hook

    def hidden_hook(self, layer: int):
        def hook(_module, args, kwargs) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            self.hidden_max_abs[layer] = hidden.detach().abs().amax(dim=-1)

        return hook

    def rotary_hook(self, _module, args, kwargs) -> None:
        position_ids = kwargs.get("position_ids", args[1] if len(args) > 1 else None)
        if self.position_ids is None and position_ids is not None:
            self.position_ids = position_ids.detach()


@contextmanager
def attach_capture(
    model: PreTrainedModel, layers: tuple[int, ...], query_index: list[Tensor], expected_image_tokens: int
) -> Iterator[_Recorder]:
    """Install hooks and the attention wrapper on the text decoder; remove everything on exit.

    The model behaves exactly as before (same backend, same mask) while attached: only recording is
    added. ``expected_image_tokens`` is checked against the visual features the model produces.
    """
    decoder = text_decoder(model)
    geometry = decoder_geometry(model)
    recorder = _Recorder(layers, geometry, query_index)
    text_config = decoder.config
    original_implementation = text_config._attn_implementation
    backend = geometry.attn_implementation
    with ExitStack() as stack:
        text_config._attn_implementation = _capture_backend_name(backend)
        stack.callback(setattr, text_config, "_attn_implementation", original_implementation)
        for index, layer in enumerate(decoder.layers):
            attn = layer.self_attn
            attn._bias_suite_capture = (_delegate_for(attn, backend), recorder if index in layers else None)
            stack.callback(delattr, attn, "_bias_suite_capture")
            if index in layers:
                recorder.sliding_windows[index] = getattr(attn, "sliding_window", None)
                key_module = attn.k_norm if isinstance(getattr(attn, "k_norm", None), nn.Module) else attn.k_proj
                stack.callback(key_module.register_forward_hook(recorder.pre_rope_hook(index)).remove)
                hidden_hook = layer.register_forward_pre_hook(recorder.hidden_hook(index), with_kwargs=True)
                stack.callback(hidden_hook.remove)
        rotary = getattr(decoder, "rotary_emb", None)
        if rotary is None:
            raise CaptureError(f"{type(decoder).__name__} has no rotary_emb: capture needs a RoPE decoder")
        stack.callback(rotary.register_forward_pre_hook(recorder.rotary_hook, with_kwargs=True).remove)
        _wrap_placeholder_check(model, recorder, expected_image_tokens, stack)
        yield recorder


def _wrap_placeholder_check(model: nn.Module, recorder: _Recorder, expected: int, stack: ExitStack) -> None:
    """Count the visual features the model scatters into the sequence and compare with the tokens."""
    owner = next((m for m in (getattr(model, "model", None), model) if hasattr(m, "get_placeholder_mask")), None)
    if owner is None:
        raise CaptureError(
            f"{type(model).__name__} has no get_placeholder_mask: cannot verify that image tokens and "
            "visual features match"
        )
    original = owner.get_placeholder_mask

    def checked_placeholder_mask(*args, **kwargs):
        features = kwargs.get("image_features")
        if features is not None:
            recorder.placeholder_check_ran = True
            recorder.n_image_features += int(features.shape[0])
            if recorder.n_image_features != expected:
                raise ImageTokenMismatchError(
                    f"the prompts hold {expected} image tokens but {type(model).__name__} produced "
                    f"{recorder.n_image_features} visual features: the prompt's image placeholders do not match "
                    "the image (build prompts with the model's own processor, one image per placeholder)"
                )
        return original(*args, **kwargs)

    owner.get_placeholder_mask = checked_placeholder_mask
    stack.callback(delattr, owner, "get_placeholder_mask")


# --------------------------------------------------------------------------- the capture call


def capture_batch(
    model: PreTrainedModel,
    inputs: Mapping[str, Tensor],
    sample_ids: Sequence[str],
    config: CaptureConfig,
) -> BatchCapture:
    """Run one batched prefill and return the captured tensors per sample.

    inputs: what the model's processor returned (``input_ids`` ``[batch, seq]``, ``attention_mask``,
    ``pixel_values``, …), already on the model's device. Padding may be left or right.
    """
    input_ids = inputs["input_ids"]
    batch = input_ids.shape[0]
    if len(sample_ids) != batch:
        raise ValueError(f"{len(sample_ids)} sample ids for a batch of {batch}")
    layers = resolve_layers(model, config.layers)
    geometry = decoder_geometry(model)
    attention_mask = inputs.get("attention_mask")
    valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    image_mask = (input_ids == image_token_id(model)) & valid
    _check_image_tokens(image_mask, sample_ids)
    forward_kwargs = prefill_kwargs(model, inputs)
    token_index = [valid[b].nonzero().flatten() for b in range(batch)]  # padded position of each token
    last_position = torch.stack([index[-1] for index in token_index])
    left_padded = bool((last_position == input_ids.shape[1] - 1).all())
    if left_padded and "logits_to_keep" in inspect.signature(model.forward).parameters:
        forward_kwargs["logits_to_keep"] = 1  # only the last position's logits are needed
    query_rows = [_query_rows(image_mask[b][token_index[b]], config.query_rows) for b in range(batch)]
    query_index = [token_index[b][rows] for b, rows in enumerate(query_rows)]

    with torch.no_grad(), attach_capture(model, layers, query_index, int(image_mask.sum())) as recorder:
        try:
            outputs = model(**forward_kwargs)
        except ValueError as error:  # transformers' own placeholder check, for models we do not wrap
            if "do not match" in str(error):
                raise ImageTokenMismatchError(f"{', '.join(sample_ids)}: {error}") from error
            raise
    if not recorder.placeholder_check_ran:
        raise CaptureError(
            f"{type(model).__name__} produced no visual features for this batch: was pixel_values dropped?"
        )
    missing = [layer for layer in layers if layer not in recorder.post_rope_keys]
    if missing:
        raise CaptureError(
            f"layers {missing} never reached the attention wrapper: the model bypasses "
            "transformers' AttentionInterface, so capture cannot see its post-RoPE keys"
        )

    logits = outputs.logits
    last_logits = (logits[:, -1] if logits.shape[1] == 1 else logits[torch.arange(batch), last_position]).float().cpu()
    samples = tuple(
        _sample_capture(recorder, b, sample_ids[b], input_ids, image_mask, token_index[b], query_rows[b], config)
        for b in range(batch)
    )
    return BatchCapture(samples=samples, geometry=geometry, last_logits=last_logits)


def _check_image_tokens(image_mask: Tensor, sample_ids: Sequence[str]) -> None:
    empty = [sample_ids[b] for b in range(image_mask.shape[0]) if not image_mask[b].any()]
    if empty:
        raise MissingImageTokensError(
            f"samples {empty} have no image token in their prompt: format prompts with the model's chat "
            "template or processor so the image placeholder is inserted"
        )


def prefill_kwargs(model: PreTrainedModel, inputs: Mapping[str, Tensor]) -> dict:
    """The keyword arguments capture runs ``model`` with.

    The processor's inputs, no KV cache, and rotary positions that count real tokens only (so a
    left-padded sample gets the same positions as when run alone). Tests use it to run oracle
    forwards on identical inputs.
    """
    geometry = decoder_geometry(model)
    kwargs = dict(inputs)
    kwargs["use_cache"] = False
    parameters = inspect.signature(model.forward).parameters
    if geometry.uses_mrope:
        if "mm_token_type_ids" in parameters and kwargs.get("mm_token_type_ids") is None:
            raise CaptureError(
                f"{type(model).__name__} uses 3-D mRoPE positions and needs 'mm_token_type_ids' (the processor "
                "returns it); without it positions silently fall back to 1-D"
            )
    elif "position_ids" not in kwargs:
        # Positions count real tokens only, so a left-padded sample gets the same rotary positions
        # (and the same post-RoPE keys) as when it is run alone.
        attention_mask = inputs.get("attention_mask")
        valid = torch.ones_like(inputs["input_ids"]) if attention_mask is None else attention_mask
        positions = valid.long().cumsum(-1) - 1
        kwargs["position_ids"] = positions.clamp(min=0)
    return kwargs


def _query_rows(sample_image_mask: Tensor, query_rows: QueryRows) -> Tensor:
    """Unpadded token indices whose queries are kept, ``[n_rows]`` int64."""
    n_tokens = sample_image_mask.shape[0]
    device = sample_image_mask.device
    if query_rows == "all":
        return torch.arange(n_tokens, device=device)
    if query_rows == "last":
        return torch.tensor([n_tokens - 1], device=device)
    last_image = int(sample_image_mask.nonzero().max())
    return torch.arange(last_image + 1, n_tokens, device=device)


def _key_rows(image_mask: Tensor, cap: int | None, seed: int, sample_id: str) -> Tensor:
    """Seeded subsample of at most ``cap`` token indices per modality (all when ``cap`` is None)."""
    if cap is None:
        return torch.arange(image_mask.shape[0])
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    kept = []
    for modality in (image_mask, ~image_mask):
        positions = modality.nonzero().flatten()
        if positions.numel() > cap:
            positions = positions[torch.randperm(positions.numel(), generator=generator)[:cap]]
        kept.append(positions)
    return torch.cat(kept).sort().values


def _to_host(tensor: Tensor) -> Tensor:
    return tensor.to(device="cpu", dtype=torch.float32)


def _sample_capture(
    recorder: _Recorder,
    b: int,
    sample_id: str,
    input_ids: Tensor,
    image_mask: Tensor,
    token_index: Tensor,
    query_rows: Tensor,
    config: CaptureConfig,
) -> SampleCapture:
    sample_image_mask = image_mask[b][token_index].cpu()
    key_rows = _key_rows(sample_image_mask, config.max_tokens_per_modality, config.seed, sample_id)
    positions = recorder.position_ids
    positions = positions if positions.ndim == 3 else positions.unsqueeze(0)  # [n_axes, batch, seq]
    layers = {}
    for layer in recorder.layers:
        post_keys = _to_host(recorder.post_rope_keys[layer][b][:, token_index].transpose(0, 1))
        captured = LayerCapture(
            layer=layer,
            pre_rope_keys=_to_host(recorder.pre_rope_keys[layer][b][token_index][key_rows.to(token_index.device)]),
            post_rope_keys=post_keys if config.keep_post_rope_keys else None,
            post_rope_queries=_to_host(recorder.post_rope_queries[layer][b].transpose(0, 1)),
            hidden_max_abs=_to_host(recorder.hidden_max_abs[layer][b][token_index]),
            sliding_window=recorder.sliding_windows[layer],
        )
        _check_finite(captured, sample_id, post_keys)
        layers[layer] = captured
    return SampleCapture(
        sample_id=sample_id,
        input_ids=input_ids[b][token_index].cpu(),
        image_mask=sample_image_mask,
        position_ids=positions[:, b][:, token_index].cpu(),
        key_positions=key_rows,
        query_positions=query_rows.cpu(),
        layers=layers,
    )


def _check_finite(captured: LayerCapture, sample_id: str, post_rope_keys: Tensor) -> None:
    for name, tensor in (
        ("pre-RoPE keys", captured.pre_rope_keys),
        ("post-RoPE keys", post_rope_keys),
        ("post-RoPE queries", captured.post_rope_queries),
    ):
        if torch.isfinite(tensor.sum()):  # fast path: a finite sum means every element is finite
            continue
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise NonFiniteKeysError(
                f"sample {sample_id!r}, layer {captured.layer}: {bad} of {tensor.numel()} {name} values are NaN "
                "or inf (check the checkpoint's weights and the dtype: fp16 overflows where bf16 does not)"
            )
