"""Where a model's weights sit and where its inputs must go, for models spread over devices by accelerate.

A model loaded with a device map (``--device-map auto``) may hold parts of itself on several GPUs, on the
CPU or on disk. transformers' ``model.device`` is its first parameter's device, which is ``meta`` as soon as
that parameter is offloaded (LLaVA's first parameter is the vision tower's class embedding), so inputs sent
there fail with "Cannot copy out of meta tensor". Inputs go where the input embedding executes:
:func:`input_device`. ``hf_device_map`` is absent when the whole model fits one device.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections import Counter
from collections.abc import Mapping

import torch
from torch import nn

OFFLOADED = ("cpu", "disk")


def input_device(model: nn.Module) -> torch.device:
    """The device a model's inputs must be on: accelerate's execution device of the input embedding when the
    model was dispatched, else the embedding weight's device (the first parameter's for a model without
    one)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embedding is None:
        return next(model.parameters()).device
    device = getattr(getattr(embedding, "_hf_hook", None), "execution_device", None)
    if device is not None:
        return torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    return embedding.weight.device


def describe_placement(model: nn.Module) -> str:
    """``cpu``, ``cuda:0``, or with a device map ``cuda:0 (device map: cuda:0 12, cuda:1 14, cpu 2)``: the
    input device, and how many of the map's modules each device holds."""
    device = str(input_device(model))
    mapping = getattr(model, "hf_device_map", None) or {}
    counts = Counter(str(torch.device(f"cuda:{d}") if isinstance(d, int) else d) for d in mapping.values())
    if len(counts) < 2:
        return device
    return f"{device} (device map: {', '.join(f'{name} {n}' for name, n in counts.items())})"


def offload_folder() -> str:
    """A new temporary folder for weights offloaded to disk (see :func:`remove_with`)."""
    return tempfile.mkdtemp(prefix="bias-suite-offload-")


def remove_with(owner: object, folder: str) -> None:
    """Remove ``folder`` once ``owner`` (the model whose offloaded weights it holds) is collected."""
    weakref.finalize(owner, shutil.rmtree, folder, True)


def dispatch(model: nn.Module, device_map: str, max_memory: Mapping[int | str, str] | None) -> nn.Module:
    """Spread a model built in memory (a ``shape:`` spec) over the devices as ``from_pretrained`` would with
    ``device_map`` (``auto`` / ``balanced`` / ``balanced_low_0`` balance the GPUs, ``sequential`` fills them
    in order), offloading what does not fit to the CPU and then to a temporary folder."""
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    no_split = list(getattr(model, "_no_split_modules", None) or [])
    budget = dict(max_memory) if max_memory else None  # accelerate rewrites the dict it is given
    if device_map != "sequential":
        budget = get_balanced_memory(model, max_memory=budget, no_split_module_classes=no_split,
                                     low_zero=device_map == "balanced_low_0")
    placement = infer_auto_device_map(model, max_memory=budget, no_split_module_classes=no_split)
    main = next((device for device in placement.values() if str(device) not in OFFLOADED), "cpu")
    folder = offload_folder()
    remove_with(model, folder)
    return dispatch_model(model, device_map=placement, main_device=main, offload_dir=folder)
