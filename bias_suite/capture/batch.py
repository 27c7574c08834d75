"""Exact capture of keys and attention summaries from the text decoder of an MLLM: one batched prefill.

What is captured, per chosen decoder layer and sample:

* **pre-RoPE keys** of the kept token rows (the model's dtype), from the key projection or key norm;
* **attention summaries** of the chosen query rows (``[n_query_rows, n_heads]`` float32: visual share,
  share without sinks, logit gap), reduced on the model's device from the ``query`` and ``key`` the
  attention kernel receives and the mask the model built;
* the **attention sinks** of the layer's input (first token, massive activations);
* with ``keep_post_rope=True``: every post-RoPE key, the query rows' post-RoPE queries and the keys each
  row may see (the model's own mask), for library users who recompute attention themselves.

How the model is navigated (decoder, attention layers, geometry, positions) is :mod:`bias_suite.models.decoder`;
what is attached to it for the forward is :mod:`bias_suite.capture.recorder`. Image positions are
``input_ids == image token``, verified after the forward against where the model put its visual features.
Nothing synchronises with the host inside the forward: everything stays on the device until the forward
ends, then crosses once. What a sample keeps per layer does not grow with the sequence length unless
``keep_post_rope`` asks for it.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

import torch
from torch import Tensor
from transformers import PreTrainedModel

from bias_suite.capture.recorder import BatchPlan, CaptureRecorder, attach_capture, check_merge
from bias_suite.capture.selfcheck import check_against_model
from bias_suite.errors import CaptureError, ImageTokenMismatchError, MissingImageTokensError, NonFiniteKeysError
from bias_suite.metrics.attention_rows import RowShares
from bias_suite.models.decoder import (
    DecoderGeometry,
    decoder_geometry,
    family_name,
    image_token_id,
    naming_the_family,
    prefill_kwargs,
    resolve_layers,
    text_decoder,
)

__all__ = [
    "BatchCapture", "CaptureConfig", "DecoderGeometry", "LayerCapture", "SampleCapture", "attach_capture",
    "capture_batch", "decoder_geometry", "image_token_id", "plan_batch", "prefill_kwargs", "resolve_layers",
    "text_decoder",
]

QueryRows = Literal["after_image", "last", "all"]
MASSIVE_RATIO = 20.0


@dataclass(frozen=True)
class CaptureConfig:
    """What to capture.

    layers: decoder layer indices (negative counts from the end).
    query_rows: which query rows are summarised — ``"after_image"`` (every token after the last image
        token: the question, the last prompt position and any appended answer), ``"last"`` or ``"all"``.
    max_tokens_per_modality: optional cap on pre-RoPE key rows kept per sample and modality; the
        subsample is seeded by ``seed`` and the sample id, so it does not depend on batch composition.
    keep_post_rope: also keep every token's post-RoPE key, the query rows' post-RoPE queries and the keys
        each row may see (float32 / bool, sequence-length sized), and each layer's per-token max |h|, for
        recomputing attention yourself.
    massive_ratio: a token is an attention sink when its input max |h| exceeds this multiple of the
        median of its modality (the first real token always is one).
    self_check: also run the batch through the model's own forward and compare positions, post-RoPE keys
        and logits (:mod:`bias_suite.capture.selfcheck`; one extra prefill). :func:`bias_suite.capture.extract.extract`
        turns it on for the first batch of every run.
    """

    layers: tuple[int, ...]
    query_rows: QueryRows = "after_image"
    max_tokens_per_modality: int | None = None
    seed: int = 0
    keep_post_rope: bool = False
    massive_ratio: float = MASSIVE_RATIO
    self_check: bool = False

    def __post_init__(self) -> None:
        if self.query_rows not in ("after_image", "last", "all"):
            raise ValueError(f"query_rows must be 'after_image', 'last' or 'all', not {self.query_rows!r}")
        if self.max_tokens_per_modality is not None and self.max_tokens_per_modality < 1:
            raise ValueError(f"max_tokens_per_modality must be >= 1, not {self.max_tokens_per_modality}")
        if not self.layers:
            raise ValueError("CaptureConfig.layers is empty: name at least one decoder layer")


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
    # [n_query_rows, n_tokens] bool, keys each row may see: the model's mask (keep_post_rope)
    visible: Tensor | None = None

    @property
    def retained_bytes(self) -> int:
        """Host memory this layer capture holds."""
        tensors = [self.pre_rope_keys, self.sink_positions,
                   *(getattr(self.row_shares, f.name) for f in fields(RowShares)),
                   self.post_rope_keys, self.post_rope_queries, self.hidden_max_abs, self.visible]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass(frozen=True)
class SampleCapture:
    """Everything captured for one sample. Positions index the unpadded token sequence."""

    sample_id: str
    input_ids: Tensor  # [n_tokens] int64
    image_mask: Tensor  # [n_tokens] bool, True at image placeholder tokens
    # [n_axes, n_tokens] int64, as the rotary embedding received them: 1 axis, 3 (t, h, w) for mRoPE
    position_ids: Tensor
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


# --------------------------------------------------------------------------- the plan of one batch


def _padded_index(rows: Sequence[Tensor], device: torch.device) -> tuple[Tensor, tuple[int, ...]]:
    """Per-sample position lists → ``[B, max]`` (each row padded by repeating its last entry)."""
    width = max(1, *(int(r.numel()) for r in rows))
    padded = torch.stack([torch.cat([r, r[-1:].expand(width - r.numel())]) if r.numel()
                          else torch.zeros(width, dtype=torch.long) for r in rows])
    return padded.to(device), tuple(int(r.numel()) for r in rows)


def plan_batch(model: PreTrainedModel, inputs: Mapping[str, Tensor], sample_ids: Sequence[str],
               config: CaptureConfig, geometry: DecoderGeometry | None = None,
               ) -> tuple[BatchPlan, list[Tensor], list[Tensor], list[Tensor]]:
    """The :class:`BatchPlan` of one batch, plus (host, per sample) the padded position of every real
    token, the unpadded query rows and the unpadded key rows. ``geometry``: the model's, when the caller
    has it (``LoadedModel.geometry``); else it is worked out here."""
    input_ids = inputs["input_ids"]
    batch = input_ids.shape[0]
    if len(sample_ids) != batch:
        raise ValueError(f"{len(sample_ids)} sample ids for a batch of {batch}")
    geometry = geometry or decoder_geometry(model)
    layers = resolve_layers(model, config.layers, geometry=geometry)
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
        layers=layers, geometry=geometry, valid=valid, image_mask=image_mask,
        ordinal=valid.long().cumsum(-1) - 1, first_token=valid.long().argmax(-1),
        query_index=query_index, key_index=key_index, query_counts=query_counts, key_counts=key_counts,
        input_ids=input_ids, massive_ratio=config.massive_ratio,
        keep_post_rope=config.keep_post_rope, self_check=config.self_check,
    )
    return plan, token_index, query_rows, key_rows


# --------------------------------------------------------------------------- the capture call


def capture_batch(
    model: PreTrainedModel,
    inputs: Mapping[str, Tensor],
    sample_ids: Sequence[str],
    config: CaptureConfig,
    geometry: DecoderGeometry | None = None,
) -> BatchCapture:
    """Run one batched prefill and return the captured tensors per sample.

    inputs: what the model's processor returned (``input_ids`` ``[batch, seq]``, ``attention_mask``,
    ``pixel_values``, …), already on the model's device. Padding may be left or right. ``geometry``: the
    decoder's (``LoadedModel.geometry``), so a loop over batches does not work it out again each time.
    Errors name the model's family and the cause.
    """
    with naming_the_family(model):
        return _capture_batch(model, inputs, sample_ids, config, geometry)


def _capture_batch(model: PreTrainedModel, inputs: Mapping[str, Tensor], sample_ids: Sequence[str],
                   config: CaptureConfig, geometry: DecoderGeometry | None) -> BatchCapture:
    plan, token_index, query_rows, key_rows = plan_batch(model, inputs, sample_ids, config, geometry)
    forward_kwargs = prefill_kwargs(model, inputs, plan.geometry)
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

    name = family_name(model)
    with torch.no_grad(), attach_capture(model, plan) as recorder:
        try:
            outputs = model(**forward_kwargs)
        except ValueError as error:  # transformers' own placeholder check, raised before ours could count
            if "do not match" in str(error):
                raise ImageTokenMismatchError(
                    f"{', '.join(sample_ids)}: the prompts hold {int(plan.image_mask.sum())} image tokens "
                    "but the model "
                    f"produced a different number of visual features ({error}): build prompts with the model's own "
                    "processor, one image per placeholder") from error
            raise
    check_merge(recorder, sample_ids, name)
    missing = [layer for layer in plan.layers if layer not in recorder.row_shares]
    if missing:
        raise CaptureError(
            f"layers {missing} never reached the attention wrapper: the model bypasses "
            "transformers' AttentionInterface, so capture cannot see its post-RoPE keys"
        )
    logits = outputs.logits
    column = torch.searchsorted(kept, last_position) if logits.shape[1] == kept.numel() else last_position
    last_logits = logits[torch.arange(batch), column.to(logits.device)].float().cpu()
    del outputs, logits
    if config.self_check:
        check_against_model(model, inputs, forward_kwargs, recorder, last_logits, sample_ids)
    host = _to_host(recorder)
    samples = tuple(
        _sample_capture(host, b, sample_ids[b], inputs["input_ids"], plan, token_index[b], query_rows[b], key_rows[b])
        for b in range(batch)
    )
    return BatchCapture(samples=samples, geometry=plan.geometry, last_logits=last_logits)


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
                                          "post_rope_queries": {}, "hidden_max_abs": {}, "visible": {}}
    for layer in recorder.plan.layers:
        host["pre_rope_keys"][layer] = recorder.pre_rope_keys[layer].cpu()
        host["row_shares"][layer] = recorder.row_shares[layer].to("cpu")
        host["sinks"][layer] = recorder.sinks[layer].cpu()
        for name in ("post_rope_keys", "post_rope_queries", "hidden_max_abs"):
            value = getattr(recorder, name).get(layer)
            if value is not None:
                host[name][layer] = value.float().cpu()
        if layer in recorder.visible:
            host["visible"][layer] = recorder.visible[layer].cpu()
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
        visible = host["visible"].get(layer)
        captured = LayerCapture(
            layer=layer,
            pre_rope_keys=host["pre_rope_keys"][layer][b, :n_keys],
            row_shares=RowShares(*(getattr(shares, f.name)[b, :n_queries] for f in fields(RowShares))),
            sink_positions=host["sinks"][layer][b][token_index].nonzero().flatten(),
            sliding_window=host["sliding_windows"][layer],
            post_rope_keys=None if post_keys is None else post_keys[b][:, token_index].transpose(0, 1),
            post_rope_queries=None if post_queries is None else post_queries[b][:, :n_queries].transpose(0, 1),
            hidden_max_abs=None if max_abs is None else max_abs[b][token_index],
            visible=None if visible is None else visible[b, :n_queries][:, token_index],
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
