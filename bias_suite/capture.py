"""Exact capture of keys and attention summaries from the text decoder of an MLLM.

Mechanism:

* **pre-RoPE keys**: a forward hook on ``self_attn.k_proj`` (or ``k_norm`` where the model normalises
  keys before RoPE) of each chosen decoder layer gathers the capped key rows on the device.
* **attention summaries**: the text model's attention implementation is switched, for the duration of
  the capture only, to a registered ``AttentionInterface`` wrapper that sees ``query`` and ``key``
  exactly as the kernel receives them, together with the mask the model built. For the chosen query
  rows it computes, on the model's device in float32, each row's visual share, share without sinks and
  logit gap per head (:func:`bias_suite.attention.row_statistics`), then delegates to the model's real
  backend (sdpa, flash, eager). The matching ``AttentionMaskInterface`` entry is registered under the
  same name, otherwise the model would build no mask and padded batches would be silently wrong. The
  vision tower keeps its own backend.
* **image positions**: ``input_ids == config.image_token_id``; the count is checked against the number
  of visual features the model scatters into the sequence.

Nothing synchronises with the host inside the forward: everything a layer keeps stays on the device
until the forward ends, then crosses once. What a sample keeps per layer is the capped key rows (in the
model's dtype) and ``[n_query_rows, n_heads]`` summaries — independent of the sequence length.
``keep_post_rope=True`` also keeps every post-RoPE key and the query rows (float32), for library users
who recompute attention themselves; the gate never asks for them.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, fields
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from bias_suite.attention import RowShares, row_statistics, scaled_scores, sink_mask
from bias_suite.errors import (
    CaptureError,
    ImageTokenMismatchError,
    LayerSelectionError,
    MissingImageTokensError,
    NonFiniteKeysError,
)

QueryRows = Literal["after_image", "last", "all"]
CAPTURE_BACKEND_PREFIX = "bias_suite_capture"
MASSIVE_RATIO = 20.0


@dataclass(frozen=True)
class CaptureConfig:
    """What to capture.

    layers: decoder layer indices (negative counts from the end).
    query_rows: which query rows are summarised — ``"after_image"`` (every token after the last image
        token: the question, the last prompt position and any appended answer), ``"last"`` or ``"all"``.
    max_tokens_per_modality: optional cap on pre-RoPE key rows kept per sample and modality; the
        subsample is seeded by ``seed`` and the sample id, so it does not depend on batch composition.
    keep_post_rope: also keep every token's post-RoPE key and the query rows' post-RoPE queries (float32,
        sequence-length sized), and each layer's per-token max |h|, for recomputing attention yourself.
    massive_ratio: a token is an attention sink when its input max |h| exceeds this multiple of the
        median of its modality (the first real token always is one).
    """

    layers: tuple[int, ...]
    query_rows: QueryRows = "after_image"
    max_tokens_per_modality: int | None = None
    seed: int = 0
    keep_post_rope: bool = False
    massive_ratio: float = MASSIVE_RATIO

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
    """One decoder layer of one sample, padding removed, on the CPU.

    Positions index the sample's unpadded tokens (see :class:`SampleCapture`).
    """

    layer: int
    pre_rope_keys: Tensor  # [n_key_rows, n_kv_heads, head_dim], the model's dtype, rows at key_positions
    row_shares: RowShares  # [n_query_rows, n_heads] float32 each, rows at query_positions (model's mask)
    sink_positions: Tensor  # [n_sinks] int64: first token and massive activations of this layer's input
    sliding_window: int | None  # key window of this layer's attention, None for full attention
    post_rope_keys: Tensor | None = None  # [n_tokens, n_kv_heads, head_dim] float32 (keep_post_rope)
    post_rope_queries: Tensor | None = None  # [n_query_rows, n_heads, head_dim] float32 (keep_post_rope)
    hidden_max_abs: Tensor | None = None  # [n_tokens] float32, max |h| of the layer input (keep_post_rope)

    @property
    def retained_bytes(self) -> int:
        """Host memory this layer capture holds."""
        tensors = [self.pre_rope_keys, self.sink_positions, *(getattr(self.row_shares, f.name) for f in fields(RowShares)),
                   self.post_rope_keys, self.post_rope_queries, self.hidden_max_abs]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass(frozen=True)
class SampleCapture:
    """Everything captured for one sample. Positions index the unpadded token sequence."""

    sample_id: str
    input_ids: Tensor  # [n_tokens] int64
    image_mask: Tensor  # [n_tokens] bool, True at image placeholder tokens
    position_ids: Tensor  # [n_axes, n_tokens] int64: 1 axis for RoPE, 3 (t, h, w) for mRoPE
    key_positions: Tensor  # [n_key_rows] int64, sorted: tokens whose pre-RoPE keys were kept
    query_positions: Tensor  # [n_query_rows] int64, sorted: tokens whose query rows were summarised
    layers: dict[int, LayerCapture] = field(repr=False)

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def text_mask(self) -> Tensor:
        """``[n_tokens]`` bool, True at every non-image token (template and special tokens included)."""
        return ~self.image_mask

    def row_shares_at(self, layer: int, positions: Tensor) -> RowShares:
        """The attention summaries of ``layer`` at token ``positions`` (``[n]``, among the summarised rows)."""
        captured = self.query_positions
        index = torch.searchsorted(captured, positions).clamp(max=max(captured.numel() - 1, 0))
        found = captured[index] == positions if captured.numel() else torch.zeros_like(positions, dtype=torch.bool)
        if not bool(found.all()):
            raise ValueError(
                f"{self.sample_id}: query positions {positions[~found].tolist()} were not summarised; "
                "capture with CaptureConfig(query_rows='after_image') or 'all'"
            )
        return self.layers[layer].row_shares.select(index)


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


# --------------------------------------------------------------------------- the plan of one batch


@dataclass(frozen=True)
class BatchPlan:
    """Where every kept row of one batch sits, as device tensors (``B`` rows, ``S`` padded positions).

    Built before the forward so the hooks only gather — no host synchronisation inside the forward.
    """

    layers: tuple[int, ...]
    geometry: DecoderGeometry
    valid: Tensor  # [B, S] bool, real tokens
    image_mask: Tensor  # [B, S] bool, image placeholders among the real tokens
    ordinal: Tensor  # [B, S] int64, index of each position among its row's real tokens
    first_token: Tensor  # [B] int64, padded position of each row's first real token
    query_index: Tensor  # [B, R] int64 padded positions of the summarised query rows (repeats pad the tail)
    key_index: Tensor  # [B, K] int64 padded positions of the kept pre-RoPE key rows (repeats pad the tail)
    query_counts: tuple[int, ...]  # real query rows per sample
    key_counts: tuple[int, ...]  # real key rows per sample
    expected_image_tokens: int
    massive_ratio: float
    keep_post_rope: bool


def _padded_index(rows: Sequence[Tensor], device: torch.device) -> tuple[Tensor, tuple[int, ...]]:
    """Per-sample position lists → ``[B, max]`` (each row padded by repeating its last entry)."""
    width = max(1, max(int(r.numel()) for r in rows))
    padded = torch.stack([torch.cat([r, r[-1:].expand(width - r.numel())]) if r.numel() else torch.zeros(width, dtype=torch.long)
                          for r in rows])
    return padded.to(device), tuple(int(r.numel()) for r in rows)


def plan_batch(model: PreTrainedModel, inputs: Mapping[str, Tensor], sample_ids: Sequence[str],
               config: CaptureConfig) -> tuple[BatchPlan, list[Tensor], list[Tensor], list[Tensor]]:
    """The :class:`BatchPlan` of one batch, plus (host, per sample) the padded position of every real
    token, the unpadded query rows and the unpadded key rows."""
    input_ids = inputs["input_ids"]
    batch = input_ids.shape[0]
    if len(sample_ids) != batch:
        raise ValueError(f"{len(sample_ids)} sample ids for a batch of {batch}")
    layers = resolve_layers(model, config.layers)
    attention_mask = inputs.get("attention_mask")
    valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    image_mask = (input_ids == image_token_id(model)) & valid
    host_valid, host_image = valid.cpu(), image_mask.cpu()
    empty = [sample_ids[b] for b in range(batch) if not host_image[b].any()]
    if empty:
        raise MissingImageTokensError(
            f"samples {empty} have no image token in their prompt: format prompts with the model's chat "
            "template or processor so the image placeholder is inserted"
        )
    token_index = [host_valid[b].nonzero().flatten() for b in range(batch)]
    sample_image = [host_image[b][token_index[b]] for b in range(batch)]
    query_rows = [_query_rows(sample_image[b], config.query_rows) for b in range(batch)]
    key_rows = [_key_rows(sample_image[b], config.max_tokens_per_modality, config.seed, sample_ids[b])
                for b in range(batch)]
    device = input_ids.device
    query_index, query_counts = _padded_index([token_index[b][query_rows[b]] for b in range(batch)], device)
    key_index, key_counts = _padded_index([token_index[b][key_rows[b]] for b in range(batch)], device)
    plan = BatchPlan(
        layers=layers, geometry=decoder_geometry(model), valid=valid, image_mask=image_mask,
        ordinal=valid.long().cumsum(-1) - 1, first_token=valid.long().argmax(-1),
        query_index=query_index, key_index=key_index, query_counts=query_counts, key_counts=key_counts,
        expected_image_tokens=int(host_image.sum()), massive_ratio=config.massive_ratio,
        keep_post_rope=config.keep_post_rope,
    )
    return plan, token_index, query_rows, key_rows


# --------------------------------------------------------------------------- the attention wrapper


def _backend_of(attn_implementation: str | None) -> str:
    """The real backend behind a (possibly already wrapped) implementation name."""
    name = attn_implementation or "eager"
    prefix = CAPTURE_BACKEND_PREFIX + "|"
    return name[len(prefix):] if name.startswith(prefix) else name


def _capturing_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask, **kwargs):
    """Registered attention function: summarise the chosen layers' rows, then run the real backend."""
    delegate, recorder = module._bias_suite_capture
    if recorder is not None:
        recorder.record_attention(module, query, key, attention_mask, kwargs)
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


class CaptureRecorder:
    """What one batch's forward leaves behind for the chosen layers, on the model's device."""

    def __init__(self, plan: BatchPlan):
        self.plan = plan
        self.pre_rope_keys: dict[int, Tensor] = {}  # [B, K, n_kv, head_dim], model dtype
        self.row_shares: dict[int, RowShares] = {}  # [B, R, n_heads] each
        self.sinks: dict[int, Tensor] = {}  # [B, S] bool
        self.post_rope_keys: dict[int, Tensor] = {}  # [B, n_kv, S, head_dim] (keep_post_rope)
        self.post_rope_queries: dict[int, Tensor] = {}  # [B, n_heads, R, head_dim] (keep_post_rope)
        self.hidden_max_abs: dict[int, Tensor] = {}  # [B, S] (keep_post_rope)
        self.sliding_windows: dict[int, int | None] = {}
        self.position_ids: Tensor | None = None
        self.n_image_features = 0
        self.placeholder_check_ran = False

    def record_attention(self, module: nn.Module, query: Tensor, key: Tensor, attention_mask, kwargs: dict) -> None:
        plan, geometry, layer = self.plan, self.plan.geometry, module.layer_idx
        if query.shape[1] != geometry.n_heads or key.shape[1] != geometry.n_kv_heads:
            raise CaptureError(
                f"layer {layer}: attention backend received query {tuple(query.shape)} / key {tuple(key.shape)}, "
                f"expected [batch, {geometry.n_heads}, seq, {geometry.head_dim}] / "
                f"[batch, {geometry.n_kv_heads}, seq, {geometry.head_dim}]"
            )
        batch, n_heads, _, head_dim = query.shape
        rows = plan.query_index[:, None, :, None].expand(batch, n_heads, -1, head_dim)
        queries = query.detach().gather(2, rows)  # [B, H, R, D]
        scaling = kwargs.get("scaling")
        scaling = float(getattr(module, "scaling", geometry.scaling) if scaling is None else scaling)
        scores = scaled_scores(queries, key.detach(), scaling, kwargs.get("softcap"))  # [B, H, R, S]
        window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
        self.sliding_windows[layer] = window
        visible = self._visible(attention_mask, module, window, key.shape[2])
        self.row_shares[layer] = row_statistics(scores, visible, plan.image_mask, self.sinks[layer])
        if plan.keep_post_rope:
            self.post_rope_keys[layer] = key.detach()
            self.post_rope_queries[layer] = queries

    def _visible(self, attention_mask, module: nn.Module, window: int | None, n_keys: int) -> Tensor:
        """``[B, R, S]`` bool: the keys each summarised row attends, read from the mask the model built
        for its backend (bidirectional image blocks, sliding windows, chunks included); when the backend
        got no materialised mask (causal fast path), the causal rule over real tokens."""
        plan = self.plan
        if isinstance(attention_mask, Tensor) and attention_mask.ndim == 4:
            mask = attention_mask[:, 0, :, :n_keys]
            rows = mask.gather(1, plan.query_index[..., None].expand(-1, -1, mask.shape[-1]))
            visible = rows if rows.dtype == torch.bool else rows > torch.finfo(rows.dtype).min / 2
            return visible & plan.valid[:, None, :n_keys]
        query_ordinal = plan.ordinal.gather(1, plan.query_index)  # [B, R]
        visible = plan.valid[:, None, :].expand(-1, plan.query_index.shape[1], -1)
        if getattr(module, "is_causal", True):
            visible = visible & (plan.ordinal[:, None, :] <= query_ordinal[:, :, None])
        if window:
            visible = visible & (plan.ordinal[:, None, :] > query_ordinal[:, :, None] - window)
        return visible

    def pre_rope_hook(self, layer: int):
        def hook(_module, _args, output: Tensor) -> None:
            keys = _as_batch_seq_heads(output.detach(), self.plan, layer)
            index = self.plan.key_index[:, :, None, None].expand(-1, -1, *keys.shape[2:])
            self.pre_rope_keys[layer] = keys.gather(1, index)

        return hook

    def hidden_hook(self, layer: int):
        def hook(_module, args, kwargs) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            max_abs = hidden.detach().abs().amax(dim=-1).float()
            plan = self.plan
            self.sinks[layer] = sink_mask(max_abs, plan.image_mask, plan.valid, plan.first_token, plan.massive_ratio)
            if plan.keep_post_rope:
                self.hidden_max_abs[layer] = max_abs

        return hook

    def rotary_hook(self, _module, args, kwargs) -> None:
        position_ids = kwargs.get("position_ids", args[1] if len(args) > 1 else None)
        if self.position_ids is None and position_ids is not None:
            self.position_ids = position_ids.detach()


def _as_batch_seq_heads(output: Tensor, plan: BatchPlan, layer: int) -> Tensor:
    """The key projection (or key norm) output as ``[B, S, n_kv_heads, head_dim]``, whatever layout the
    family produces it in: ``[B, S, kv·d]``, ``[B, S, kv, d]``, ``[B, kv, S, d]`` or ``[B·S, kv, d]``."""
    batch, seq = plan.valid.shape
    kv = plan.geometry.n_kv_heads
    shape = tuple(output.shape)
    if output.ndim == 3 and shape[:2] == (batch, seq):
        return output.reshape(batch, seq, kv, -1)
    if output.ndim == 4 and shape[:3] == (batch, seq, kv):
        return output
    if output.ndim == 4 and shape[:3] == (batch, kv, seq):
        return output.transpose(1, 2)
    if output.ndim == 3 and shape[0] == batch * seq and shape[1] == kv:
        return output.reshape(batch, seq, kv, -1)
    raise CaptureError(
        f"layer {layer}: the key projection returned {shape}; expected [batch={batch}, seq={seq}, ...] with "
        f"{kv} KV heads in one of the layouts [B, S, kv·d], [B, S, kv, d], [B, kv, S, d], [B·S, kv, d]"
    )


@contextmanager
def attach_capture(model: PreTrainedModel, plan: BatchPlan) -> Iterator[CaptureRecorder]:
    """Install hooks and the attention wrapper on the text decoder; remove everything on exit.

    The model computes exactly what it computes without capture (same backend, same mask): only
    recording is added. The visual features the model produces are checked against the image tokens.
    """
    decoder = text_decoder(model)
    recorder = CaptureRecorder(plan)
    text_config = decoder.config
    original_implementation = text_config._attn_implementation
    backend = plan.geometry.attn_implementation
    with ExitStack() as stack:
        text_config._attn_implementation = _capture_backend_name(backend)
        stack.callback(setattr, text_config, "_attn_implementation", original_implementation)
        for index, layer in enumerate(decoder.layers):
            attn = layer.self_attn
            attn._bias_suite_capture = (_delegate_for(attn, backend), recorder if index in plan.layers else None)
            stack.callback(delattr, attn, "_bias_suite_capture")
            if index in plan.layers:
                key_module = attn.k_norm if isinstance(getattr(attn, "k_norm", None), nn.Module) else attn.k_proj
                stack.callback(key_module.register_forward_hook(recorder.pre_rope_hook(index)).remove)
                hidden_hook = layer.register_forward_pre_hook(recorder.hidden_hook(index), with_kwargs=True)
                stack.callback(hidden_hook.remove)
        rotary = getattr(decoder, "rotary_emb", None)
        if rotary is None:
            raise CaptureError(f"{type(decoder).__name__} has no rotary_emb: capture needs a RoPE decoder")
        stack.callback(rotary.register_forward_pre_hook(recorder.rotary_hook, with_kwargs=True).remove)
        _wrap_placeholder_check(model, recorder, plan.expected_image_tokens, stack)
        yield recorder


def _wrap_placeholder_check(model: nn.Module, recorder: CaptureRecorder, expected: int, stack: ExitStack) -> None:
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
    plan, token_index, query_rows, key_rows = plan_batch(model, inputs, sample_ids, config)
    forward_kwargs = prefill_kwargs(model, inputs)
    batch, seq = plan.valid.shape
    last_position = torch.stack([index[-1] for index in token_index])
    kept = torch.unique(last_position)  # only the last real positions' logits are needed
    keep_parameter = inspect.signature(model.forward).parameters.get("logits_to_keep")
    if keep_parameter is not None and kept.tolist() == [seq - 1]:
        forward_kwargs["logits_to_keep"] = 1
    elif keep_parameter is not None and "Tensor" in str(keep_parameter.annotation):
        forward_kwargs["logits_to_keep"] = kept.to(plan.valid.device)
    else:
        kept = torch.arange(seq)

    with torch.no_grad(), attach_capture(model, plan) as recorder:
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
    missing = [layer for layer in plan.layers if layer not in recorder.row_shares]
    if missing:
        raise CaptureError(
            f"layers {missing} never reached the attention wrapper: the model bypasses "
            "transformers' AttentionInterface, so capture cannot see its post-RoPE keys"
        )
    logits = outputs.logits
    column = torch.searchsorted(kept, last_position) if logits.shape[1] == kept.numel() else last_position
    last_logits = logits[torch.arange(batch), column.to(logits.device)].float().cpu()
    host = _to_host(recorder)
    samples = tuple(
        _sample_capture(host, b, sample_ids[b], inputs["input_ids"], plan, token_index[b], query_rows[b], key_rows[b])
        for b in range(batch)
    )
    return BatchCapture(samples=samples, geometry=plan.geometry, last_logits=last_logits)


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
    """Unpadded token indices whose query rows are summarised, ``[n_rows]`` int64."""
    n_tokens = sample_image_mask.shape[0]
    if query_rows == "all":
        return torch.arange(n_tokens)
    if query_rows == "last":
        return torch.tensor([n_tokens - 1])
    last_image = int(sample_image_mask.nonzero().max())
    return torch.arange(last_image + 1, n_tokens)


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


def _to_host(recorder: CaptureRecorder) -> dict[str, dict[int, object]]:
    """Everything the recorder holds, moved to the CPU once after the forward."""
    host: dict[str, dict[int, object]] = {"pre_rope_keys": {}, "row_shares": {}, "sinks": {}, "post_rope_keys": {},
                                          "post_rope_queries": {}, "hidden_max_abs": {}}
    for layer in recorder.plan.layers:
        host["pre_rope_keys"][layer] = recorder.pre_rope_keys[layer].cpu()
        host["row_shares"][layer] = recorder.row_shares[layer].to("cpu")
        host["sinks"][layer] = recorder.sinks[layer].cpu()
        for name in ("post_rope_keys", "post_rope_queries", "hidden_max_abs"):
            value = getattr(recorder, name).get(layer)
            if value is not None:
                host[name][layer] = value.float().cpu()
    host["position_ids"] = recorder.position_ids.cpu() if recorder.position_ids is not None else None
    host["sliding_windows"] = dict(recorder.sliding_windows)
    return host


def _sample_capture(host: dict, b: int, sample_id: str, input_ids: Tensor, plan: BatchPlan, token_index: Tensor,
                    query_rows: Tensor, key_rows: Tensor) -> SampleCapture:
    n_queries, n_keys = plan.query_counts[b], plan.key_counts[b]
    layers = {}
    for layer in plan.layers:
        shares = host["row_shares"][layer]
        post_keys = host["post_rope_keys"].get(layer)
        post_queries = host["post_rope_queries"].get(layer)
        max_abs = host["hidden_max_abs"].get(layer)
        captured = LayerCapture(
            layer=layer,
            pre_rope_keys=host["pre_rope_keys"][layer][b, :n_keys],
            row_shares=RowShares(*(getattr(shares, f.name)[b, :n_queries] for f in fields(RowShares))),
            sink_positions=host["sinks"][layer][b][token_index].nonzero().flatten(),
            sliding_window=host["sliding_windows"][layer],
            post_rope_keys=None if post_keys is None else post_keys[b][:, token_index].transpose(0, 1),
            post_rope_queries=None if post_queries is None else post_queries[b][:, :n_queries].transpose(0, 1),
            hidden_max_abs=None if max_abs is None else max_abs[b][token_index],
        )
        _check_finite(captured, sample_id)
        layers[layer] = captured
    positions = host["position_ids"]
    if positions is None:
        positions = plan.ordinal.cpu()[None]
    positions = positions if positions.ndim == 3 else positions.unsqueeze(0)  # [n_axes, batch, seq]
    return SampleCapture(
        sample_id=sample_id,
        input_ids=input_ids[b].cpu()[token_index],
        image_mask=plan.image_mask[b].cpu()[token_index],
        position_ids=positions[:, b][:, token_index],
        key_positions=key_rows,
        query_positions=query_rows,
        layers=layers,
    )


def _check_finite(captured: LayerCapture, sample_id: str) -> None:
    for name, tensor in (
        ("pre-RoPE keys", captured.pre_rope_keys),
        ("attention summaries", captured.row_shares.visual_share),
        ("post-RoPE keys", captured.post_rope_keys),
        ("post-RoPE queries", captured.post_rope_queries),
    ):
        if tensor is None or torch.isfinite(tensor.float().sum()):  # a finite sum means every element is finite
            continue
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise NonFiniteKeysError(
                f"sample {sample_id!r}, layer {captured.layer}: {bad} of {tensor.numel()} {name} values are NaN "
                "or inf (check the checkpoint's weights and the dtype: fp16 overflows where bf16 does not)"
            )
