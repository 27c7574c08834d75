"""What capture attaches to a model for one batched forward, and what it records there.

* **pre-RoPE keys**: a forward hook on ``self_attn.k_proj`` — or on ``k_norm`` where the model normalises
  keys before RoPE; the norm's layout (``[B, S, kv·d]``, ``[B, S, kv, d]``, ``[B, kv, S, d]``,
  ``[B·S, kv, d]``) is identified by matching its input with the ``k_proj`` output, never guessed.
* **attention summaries**: the text decoder's attention implementation is switched, for this forward
  only, to a registered ``AttentionInterface`` wrapper that sees ``query``, ``key`` and the mask the model
  built, summarises the chosen query rows on the device (:func:`bias_suite.metrics.attention_rows.row_statistics`),
  then delegates to the real backend (sdpa, flash, eager). The matching ``AttentionMaskInterface`` entry
  is registered under the same name (without it the model would build no mask). Other attention
  modules of the decoder (cross-attention) pass straight through.
* **where features went**: the model's own placeholder mask (``get_placeholder_mask``, arguments bound by
  its signature, features counted as rows of the text hidden size), or — for models that merge another
  way (Idefics ``inputs_merger``) — the decoder-entry rows whose embeddings differ from the token
  embeddings. After the forward, capture checks them against the image tokens.

Nothing synchronises with the host inside the forward.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from bias_suite.errors import CaptureError, ImageTokenMismatchError
from bias_suite.metrics.attention_rows import RowShares, row_statistics, scaled_scores, sink_mask
from bias_suite.models.decoder import CAPTURE_BACKEND_PREFIX, DecoderGeometry, backend_of, self_attention, text_decoder


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
    input_ids: Tensor  # [B, S]
    massive_ratio: float
    keep_post_rope: bool
    self_check: bool = False  # also keep the kept rows' post-RoPE keys, for bias_suite.capture.selfcheck


def _capturing_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask, **kwargs):
    """Registered attention function: summarise the chosen layers' rows, then run the real backend."""
    state = getattr(module, "_bias_suite_capture", None)
    if state is None:  # another attention of the decoder (Mllama's cross-attention): just delegate
        return _delegate_for(module, backend_of(module.config._attn_implementation))(
            module, query, key, value, attention_mask, **kwargs)
    delegate, recorder = state
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


# The layouts a key norm may run in, as (to [B, S, kv, d] from the norm's input, same for its output).
def _layouts(batch: int, seq: int, kv: int, head_dim: int):
    return (
        lambda t: t.reshape(batch, seq, kv, head_dim) if t.shape[:2] == (batch, seq) else None,  # [B,S,kv·d]/[B,S,kv,d]
        lambda t: t.transpose(1, 2) if t.ndim == 4 and t.shape[:3] == (batch, kv, seq) else None,  # [B,kv,S,d]
        # [B·S,kv,d]
        lambda t: t.reshape(batch, seq, kv, head_dim) if t.ndim == 3 and t.shape[0] == batch * seq else None,
    )


class CaptureRecorder:
    """What one batch's forward leaves behind for the chosen layers, on the model's device."""

    def __init__(self, plan: BatchPlan):
        self.plan = plan
        self.pre_rope_keys: dict[int, Tensor] = {}  # [B, K, n_kv, head_dim], model dtype
        self.row_shares: dict[int, RowShares] = {}  # [B, R, n_heads] each
        self.sinks: dict[int, Tensor] = {}  # [B, S] bool
        self.post_rope_keys: dict[int, Tensor] = {}  # [B, n_kv, S, head_dim] (keep_post_rope)
        self.post_rope_queries: dict[int, Tensor] = {}  # [B, n_heads, R, head_dim] (keep_post_rope)
        self.visible: dict[int, Tensor] = {}  # [B, R, S] bool (keep_post_rope)
        self.checked_keys: dict[int, Tensor] = {}  # [B, n_kv, K, head_dim] post-RoPE keys at key rows (self_check)
        self.hidden_max_abs: dict[int, Tensor] = {}  # [B, S] (keep_post_rope)
        self.sliding_windows: dict[int, int | None] = {}
        self.position_ids: Tensor | None = None
        self.n_image_features = 0
        self.model_image_mask: Tensor | None = None  # [B, S] bool, from the model's own placeholder mask
        self.merged_rows: Tensor | None = None  # [B, S] bool, decoder-entry rows the merge overwrote
        self._projected: dict[int, Tensor] = {}
        self._plans: dict[torch.device, BatchPlan] = {}

    def plan_on(self, device: torch.device) -> BatchPlan:
        """The plan with its tensors on ``device``. It is built on the input device; under a device map the
        layers run on several GPUs, and each layer's hooks index its own tensors with a copy on its device
        (made once per batch and device; the plan itself when the device is the same)."""
        if device == self.plan.valid.device:
            return self.plan
        if device not in self._plans:
            moved = {f.name: getattr(self.plan, f.name).to(device) for f in fields(BatchPlan)
                     if isinstance(getattr(self.plan, f.name), Tensor)}
            self._plans[device] = replace(self.plan, **moved)
        return self._plans[device]

    def record_attention(self, module: nn.Module, query: Tensor, key: Tensor, attention_mask, kwargs: dict) -> None:
        plan, geometry, layer = self.plan_on(query.device), self.plan.geometry, module.layer_idx
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
        visible = self._visible(plan, attention_mask, module, window, key.shape[2])
        self.row_shares[layer] = row_statistics(scores, visible, plan.image_mask, self.sinks[layer],
                                                overwrite_scores=True)
        if plan.keep_post_rope:
            self.post_rope_keys[layer] = key.detach()
            self.post_rope_queries[layer] = queries
            self.visible[layer] = visible
        if plan.self_check:
            index = plan.key_index[:, None, :, None].expand(batch, key.shape[1], -1, head_dim)
            self.checked_keys[layer] = key.detach().gather(2, index)

    def _visible(self, plan: BatchPlan, attention_mask, module: nn.Module, window: int | None, n_keys: int) -> Tensor:
        """``[B, R, S]`` bool: the keys each summarised row attends, read from the mask the model built
        for its backend (bidirectional image blocks and prefixes, sliding windows, chunks included); when
        the backend got no materialised mask (causal fast path), the causal rule over real tokens."""
        if isinstance(attention_mask, Tensor) and attention_mask.ndim == 4:
            mask = attention_mask[:, 0, :, -n_keys:]
            rows = mask.gather(1, plan.query_index[..., None].expand(-1, -1, mask.shape[-1]))
            visible = rows if rows.dtype == torch.bool else rows > torch.finfo(rows.dtype).min / 2
            return visible & plan.valid[:, None, -n_keys:]
        query_ordinal = plan.ordinal.gather(1, plan.query_index)  # [B, R]
        visible = plan.valid[:, None, :].expand(-1, plan.query_index.shape[1], -1)
        if getattr(module, "is_causal", True):
            visible = visible & (plan.ordinal[:, None, :] <= query_ordinal[:, :, None])
        if window:
            visible = visible & (plan.ordinal[:, None, :] > query_ordinal[:, :, None] - window)
        return visible

    def _keep_keys(self, layer: int, keys: Tensor) -> None:
        """keys ``[B, S, kv, d]``: gather the planned rows."""
        index = self.plan_on(keys.device).key_index[:, :, None, None].expand(-1, -1, *keys.shape[2:])
        self.pre_rope_keys[layer] = keys.gather(1, index)

    def k_proj_hook(self, layer: int, normalised: bool):
        """On ``k_proj``: keep the planned rows, or (with a key norm after it) hold the output for
        :meth:`k_norm_hook` to identify the norm's layout."""
        def hook(_module, _args, output: Tensor) -> None:
            batch, seq = self.plan.valid.shape
            projected = output.detach().reshape(batch, seq, self.plan.geometry.n_kv_heads, -1)
            if normalised:
                self._projected[layer] = projected
            else:
                self._keep_keys(layer, projected)

        return hook

    def k_norm_hook(self, layer: int):
        def hook(_module, args, output: Tensor) -> None:
            projected = self._projected.pop(layer)
            batch, seq, kv, head_dim = projected.shape
            source = args[0] if args else None
            for to_standard in _layouts(batch, seq, kv, head_dim):
                try:
                    candidate = to_standard(source) if source is not None else None
                except RuntimeError:
                    continue
                if candidate is not None and source.shape == output.shape and torch.equal(candidate, projected):
                    self._keep_keys(layer, to_standard(output.detach()))
                    return
            raise CaptureError(f"layer {layer}: cannot relate the key norm's input {tuple(source.shape)} to the key "
                               f"projection's output {tuple(projected.shape)}")

        return hook

    def hidden_hook(self, layer: int):
        def hook(_module, args, kwargs) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            max_abs = hidden.detach().abs().amax(dim=-1).float()
            plan = self.plan_on(hidden.device)
            self.sinks[layer] = sink_mask(max_abs, plan.image_mask, plan.valid, plan.first_token, plan.massive_ratio)
            if plan.keep_post_rope:
                self.hidden_max_abs[layer] = max_abs

        return hook

    def rotary_hook(self, _module, args, kwargs) -> None:
        position_ids = kwargs.get("position_ids", args[1] if len(args) > 1 else None)
        if self.position_ids is None and position_ids is not None:
            self.position_ids = position_ids.detach()

    def decoder_hook(self, embeddings: nn.Module):
        """At the decoder's entry: rows of ``inputs_embeds`` that differ from the embeddings of
        ``input_ids`` are where the model merged visual features, whatever the merge."""
        input_ids = self.plan.input_ids

        def hook(_module, _args, kwargs) -> None:
            inputs_embeds = kwargs.get("inputs_embeds")
            if inputs_embeds is None or inputs_embeds.shape[:2] != input_ids.shape:
                return
            ids = input_ids.clamp(max=embeddings.weight.shape[0] - 1)
            self.merged_rows = (inputs_embeds != embeddings(ids).to(inputs_embeds)).any(-1)

        return hook


@contextmanager
def attach_capture(model: PreTrainedModel, plan: BatchPlan) -> Iterator[CaptureRecorder]:
    """Install hooks and the attention wrapper on the text decoder; remove everything on exit.

    The model computes exactly what it computes without capture (same backend, same mask): only
    recording is added.
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
            attention = self_attention(layer)
            if attention is None:
                continue
            attention._bias_suite_capture = (_delegate_for(attention, backend),
                                             recorder if index in plan.layers else None)
            stack.callback(delattr, attention, "_bias_suite_capture")
            if index in plan.layers:
                _hook_keys(attention, index, recorder, stack)
                hidden_hook = layer.register_forward_pre_hook(recorder.hidden_hook(index), with_kwargs=True)
                stack.callback(hidden_hook.remove)
        rotary = getattr(decoder, "rotary_emb", None)
        if rotary is None:
            raise CaptureError(f"{type(decoder).__name__} has no rotary position embedding: key-space capture needs a "
                               "RoPE decoder (pre- and post-RoPE keys are the method's two views)")
        stack.callback(rotary.register_forward_pre_hook(recorder.rotary_hook, with_kwargs=True).remove)
        embeddings = decoder.get_input_embeddings() if hasattr(decoder, "get_input_embeddings") else None
        if isinstance(embeddings, nn.Embedding):
            stack.callback(decoder.register_forward_pre_hook(recorder.decoder_hook(embeddings),
                                                             with_kwargs=True).remove)
        _wrap_placeholder_mask(model, recorder, int(text_config.hidden_size), stack)
        yield recorder


def _hook_keys(attention: nn.Module, layer: int, recorder: CaptureRecorder, stack: ExitStack) -> None:
    k_proj = getattr(attention, "k_proj", None)
    if not isinstance(k_proj, nn.Module):
        raise CaptureError(f"layer {layer}: {type(attention).__name__} has no k_proj (a fused query/key/value "
                           "projection): its pre-RoPE keys cannot be separated from queries and values")
    k_norm = getattr(attention, "k_norm", None)
    normalised = isinstance(k_norm, nn.Module)
    stack.callback(k_proj.register_forward_hook(recorder.k_proj_hook(layer, normalised)).remove)
    if normalised:
        stack.callback(k_norm.register_forward_hook(recorder.k_norm_hook(layer)).remove)


def _wrap_placeholder_mask(model: nn.Module, recorder: CaptureRecorder, hidden_size: int, stack: ExitStack) -> None:
    """Record the placeholder mask the model itself computes and count the visual features it scatters.

    Arguments are bound to the method's signature (some families pass ``image_features`` positionally);
    features are counted as rows of the text hidden size, whether they come as ``[n_tokens, hidden]`` or
    ``[n_images, tokens, hidden]``. A model without the method is covered by the decoder-entry hook."""
    owner = next((m for m in (getattr(model, "model", None), model) if hasattr(m, "get_placeholder_mask")), None)
    if owner is None:
        return
    original = owner.get_placeholder_mask
    signature = inspect.signature(original)
    expected = int(recorder.plan.image_mask.sum())  # counted once, before the forward
    name = type(model).__name__

    def checked_placeholder_mask(*args, **kwargs):
        bound = signature.bind_partial(*args, **kwargs).arguments
        features = bound.get("image_features")
        if features is None and "image_features" in signature.parameters:
            return original(*args, **kwargs)  # a video-only call
        if features is not None:
            recorder.n_image_features += int(features.numel() // hidden_size)
            if recorder.n_image_features != expected:
                raise ImageTokenMismatchError(
                    f"the prompts hold {expected} image tokens but {name} produced {recorder.n_image_features} visual "
                    "features: the prompt's image placeholders do not match the image (build prompts with the model's "
                    "own processor, one image per placeholder)")
        result = original(*args, **kwargs)
        mask = result[0] if isinstance(result, tuple) else result
        mask = mask.reshape(mask.shape[0], mask.shape[1], -1)[..., 0].bool()
        recorder.model_image_mask = mask if recorder.model_image_mask is None else recorder.model_image_mask | mask
        return result

    owner.get_placeholder_mask = checked_placeholder_mask
    stack.callback(delattr, owner, "get_placeholder_mask")


def check_merge(recorder: CaptureRecorder, sample_ids: Sequence[str], model_name: str) -> None:
    """After the forward: the model put visual features exactly at the image tokens."""
    plan = recorder.plan
    observed = recorder.model_image_mask if recorder.model_image_mask is not None else recorder.merged_rows
    if observed is None or not bool((observed & plan.valid).any()):
        raise CaptureError(f"the model merged no visual features into the token sequence for batch {list(sample_ids)} "
                           "(pixel_values dropped, or the image enters through cross-attention)")
    if not torch.equal(observed & plan.valid, plan.image_mask):
        placed, tokens = int((observed & plan.valid).sum()), int(plan.image_mask.sum())
        raise ImageTokenMismatchError(
            f"{', '.join(sample_ids)}: {model_name} put visual features at {placed} positions, but the prompts hold "
            f"{tokens} image tokens{' at other positions' if placed == tokens else ''}: build prompts with the model's "
            "own processor, one image per placeholder")
