"""Capture checks itself against the model's own forward, once per model (the first batch).

A capture forward runs with positions bias-suite passes in and with recording attached; a family whose
position scheme, rotary layout or merge capture misreads would give plausible but wrong numbers. So the
first batch is also run the way a user runs the model — ``model(**inputs, use_cache=True)``, nothing
injected, nothing attached — and, on the batch rows that start at the first position (the model's own
positions are padding-unaware for left-padded rows, so only those rows are comparable):

* the **positions** the rotary embedding received must be identical (integers, exact);
* the **post-RoPE keys** of the captured rows must equal what the model put in its KV cache;
* the **logits** at the last position must equal the captured ones;

within a tolerance set by the dtype (the two forwards may take different mask paths, so they agree to
rounding, not bit for bit). Anything else raises :class:`CaptureSelfCheckError` naming the family and the
mismatch. Cost: one extra prefill per model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from bias_suite.capture.recorder import CaptureRecorder
from bias_suite.errors import CaptureSelfCheckError, NonFiniteKeysError
from bias_suite.models.decoder import family_name, text_decoder

# Largest |difference| allowed, as a fraction of the reference's largest |value|. float32 forwards agree
# to ~1e-6; 16-bit ones to a few units of their 8-bit mantissa after a few dozen layers. Misread positions
# or layouts move keys and logits by tens of percent.
RELATIVE_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-6, torch.bfloat16: 5e-2, torch.float16: 2e-2}


def _kv_cache(outputs) -> object | None:
    for holder in (outputs, getattr(outputs, "language_model_outputs", None)):  # InstructBLIP nests it
        for name in ("cache", "past_key_values"):  # transformers ≥ 5.20 calls it cache
            cache = holder.get(name) if holder is not None and hasattr(holder, "get") else None
            if cache is not None:
                return cache
    return None


def _as_axes(positions: Tensor, batch: int) -> Tensor:
    """``[n_axes, B, S]`` from ``[B, S]`` or ``[n_axes, B, S]`` (a shared ``[.., 1, S]`` broadcast to B)."""
    positions = positions if positions.ndim == 3 else positions.unsqueeze(0)
    return positions.expand(-1, batch, -1) if positions.shape[1] == 1 else positions


def non_finite_weights(model: nn.Module) -> list[str]:
    """Names of the model's parameters and buffers that hold NaN or inf."""
    return [name for name, tensor in [*model.named_parameters(), *model.named_buffers()]
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def _refuse_non_finite(model: nn.Module, name: str, what: str, tensors: Sequence[Tensor], dtype: torch.dtype) -> None:
    """A NaN or inf in what is compared is the model's doing, not capture's: say whose."""
    if all(bool(torch.isfinite(tensor.float()).all()) for tensor in tensors):
        return
    bad = non_finite_weights(model)
    if bad:
        listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteKeysError(f"{name}: {what} are NaN or inf because {len(bad)} weight tensor(s) of the checkpoint "
                                 f"are: {listed}; the checkpoint is damaged (or was saved after training diverged)")
    raise NonFiniteKeysError(f"{name}: {what} are NaN or inf although every weight is finite: the activations overflow "
                             f"in {str(dtype).removeprefix('torch.')} (fp16 overflows where bf16 does not: try "
                             "--dtype bfloat16 or float32)")


def _compare(name: str, captured: Tensor, reference: Tensor, dtype: torch.dtype, what: str,
             model: nn.Module | None = None) -> None:
    if model is not None:
        _refuse_non_finite(model, name, what, (captured, reference), dtype)
    scale = float(reference.float().abs().max().clamp(min=1.0))
    difference = float((captured.float() - reference.float()).abs().max()) if reference.numel() else 0.0
    tolerance = RELATIVE_TOLERANCE.get(dtype, 5e-2) * scale
    if not difference <= tolerance:  # also catches NaN
        raise CaptureSelfCheckError(
            f"{name}: {what} differ from the model's own forward by {difference:.3g} (tolerance {tolerance:.3g}): "
            "capture does not see what this family computes; please report it with the model's config"
        )


def check_against_model(
    model: nn.Module,
    inputs: Mapping[str, Tensor],
    forward_kwargs: Mapping[str, object],
    recorder: CaptureRecorder,
    last_logits: Tensor,
    sample_ids: Sequence[str],
) -> None:
    """Compare one capture forward with the model's own forward on the same inputs; raise on a mismatch.

    forward_kwargs: what the capture forward ran with; only ``logits_to_keep`` is reused.
    last_logits: ``[B, vocab]`` the capture's logits at each sample's last real position.
    """
    plan = recorder.plan
    name = family_name(model)
    comparable = plan.valid[:, 0].nonzero().flatten()  # rows whose first token is at position 0
    if comparable.numel() == 0:
        raise CaptureSelfCheckError(
            f"{name}: no sample of the batch {list(sample_ids)} starts at the first position, so the self-check "
            "cannot compare with the model's own forward; pad on one side only")
    decoder = text_decoder(model)
    seen: dict[str, Tensor] = {}

    def record_positions(_module, args, kwargs) -> None:
        positions = kwargs.get("position_ids", args[1] if len(args) > 1 else None)
        if "positions" not in seen and positions is not None:
            seen["positions"] = positions.detach()

    base = getattr(model, "model", model)
    saved_deltas = getattr(base, "rope_deltas", None)  # the Qwen-VL family caches these in its forward
    natural = {key: value for key, value in inputs.items() if key != "position_ids"}
    if "logits_to_keep" in forward_kwargs:
        natural["logits_to_keep"] = forward_kwargs["logits_to_keep"]
    handle = decoder.rotary_emb.register_forward_pre_hook(record_positions, with_kwargs=True)
    try:
        with torch.no_grad():
            outputs = model(**natural, use_cache=True)
    finally:
        handle.remove()
        if hasattr(base, "rope_deltas"):
            base.rope_deltas = saved_deltas

    batch, seq = plan.valid.shape
    rows = comparable.tolist()
    if "positions" not in seen or recorder.position_ids is None:
        raise CaptureSelfCheckError(f"{name}: the rotary embedding received no position_ids, so the self-check "
                                    "cannot compare positions with the model's own")
    ours, theirs = _as_axes(recorder.position_ids, batch), _as_axes(seen["positions"], batch)
    for b in rows:
        valid = plan.valid[b]
        mine, model_own = ours[:, b][:, valid], theirs[:, b][:, valid]
        if mine.shape != model_own.shape or not torch.equal(mine, model_own):
            raise CaptureSelfCheckError(
                f"{name}: sample {sample_ids[b]!r} was captured with rotary positions {mine[:, :12].tolist()}… "
                f"but the model itself uses {model_own[:, :12].tolist()}…: post-RoPE keys and attention would be "
                "silently wrong; please report it with the model's config")

    cache = _kv_cache(outputs)
    layers = getattr(cache, "layers", None)
    dtype = next(model.parameters()).dtype
    for layer in plan.layers:
        cached = getattr(layers[layer], "keys", None) if layers is not None and layer < len(layers) else None
        if not isinstance(cached, Tensor) or cached.ndim != 4:
            raise CaptureSelfCheckError(f"{name}: the model's KV cache holds no keys for layer {layer}, so the "
                                        "self-check cannot compare post-RoPE keys")
        first = seq - cached.shape[2]  # sliding-window layers keep only the last keys
        for b in rows:
            index = plan.key_index[b, : plan.key_counts[b]].to(cached.device)  # a layer on another GPU
            kept = index >= first
            reference = cached[b][:, index[kept] - first]  # [kv, n, D]
            _compare(name, recorder.checked_keys[layer][b][:, kept.nonzero().flatten()], reference, dtype,
                     f"post-RoPE keys of layer {layer} (sample {sample_ids[b]!r})", model)

    logits = outputs.logits
    keep = forward_kwargs.get("logits_to_keep")
    for b in rows:
        last = int(plan.valid[b].nonzero().max())
        if isinstance(keep, Tensor):  # the logits of positions ``keep`` only
            column = int(torch.searchsorted(keep.cpu(), torch.tensor(last)))
        else:  # all positions, or the last ``keep``
            column = last - (seq - logits.shape[1])
        _compare(name, last_logits[b], logits[b, column].float().cpu(), dtype,
                 f"logits at the last position (sample {sample_ids[b]!r})", model)
