"""Load any image-text-to-text checkpoint: a built-in alias, a local directory or a hub id.

Everything goes through ``AutoProcessor`` / ``AutoModelForImageTextToText``, so a tiny built-in
checkpoint takes the same path as ``llava-hf/llava-1.5-7b-hf``. ``trust_remote_code`` is off unless
the caller turns it on; weights load from safetensors when the checkpoint has them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from bias_suite.demo import DEMO_CHECKPOINTS
from bias_suite.errors import ModelNotFoundError, NotImageTextToTextError
from bias_suite.tiny import TINY_FAMILIES, ensure_checkpoint

SpecSource = Literal["alias", "local", "hub"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelInfo:
    """What a report needs to say exactly which model ran, where and how."""

    spec: str  # as the user gave it
    source: SpecSource
    path: str  # local directory or hub id actually loaded
    model_type: str  # config.model_type, e.g. "llava"
    architecture: str  # model class name
    revision: str | None  # hub commit hash when known
    config_hash: str  # sha256 of the canonical config JSON (first 16 hex digits)
    dtype: str
    device: str
    attn_implementation: str  # the text decoder's attention backend
    n_layers: int  # decoder layers of the text model


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with its processor. Treat as read-only: tests share one per session."""

    model: PreTrainedModel
    processor: ProcessorMixin
    info: ModelInfo


@dataclass(frozen=True)
class ResolvedSpec:
    source: SpecSource
    path: str


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """``auto`` picks CUDA + bfloat16 when a GPU is present, else CPU + float32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved_device = torch.device(device)
    if resolved_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
    if dtype == "auto":
        return resolved_device, torch.bfloat16 if resolved_device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(DTYPES)}")
    return resolved_device, DTYPES[dtype]


def resolve_spec(spec: str, cache_dir: Path | None = None) -> ResolvedSpec:
    """Alias → built checkpoint directory; existing directory → itself; ``org/name`` → hub id."""
    if spec in TINY_FAMILIES:
        return ResolvedSpec("alias", str(ensure_checkpoint(spec, cache_dir)))
    if spec in DEMO_CHECKPOINTS:
        directory = DEMO_CHECKPOINTS[spec]
        if not (directory / "config.json").is_file():
            raise ModelNotFoundError(f"{spec}: the shipped checkpoint is missing from {directory}; "
                                     "rebuild it with: python -m bias_suite.demo.train")
        return ResolvedSpec("alias", str(directory))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{spec}: directory has no config.json, so it is not a saved checkpoint")
        return ResolvedSpec("local", str(path.resolve()))
    if path.exists():
        raise ModelNotFoundError(f"{spec}: is a file; pass the checkpoint directory that holds config.json")
    if _HUB_ID.match(spec) and not spec.startswith((".", "~")):
        return ResolvedSpec("hub", spec)
    raise ModelNotFoundError(
        f"{spec}: no such directory, not a built-in alias ({', '.join([*DEMO_CHECKPOINTS, *TINY_FAMILIES])}), "
        "and not a hub id of the form org/name"
    )


def load_model(
    spec: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    attn_implementation: str = "sdpa",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Load ``spec`` for capture. ``device_map="auto"`` (needs accelerate) spreads a model over GPUs."""
    resolved = resolve_spec(spec, cache_dir)
    torch_device, torch_dtype = resolve_device(device, dtype)
    config = _load_config(spec, resolved, trust_remote_code, revision)
    if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and not trust_remote_code:
        raise NotImageTextToTextError(
            f"{spec}: model_type {config.model_type!r} is not an image-text-to-text architecture "
            "(AutoModelForImageTextToText cannot load it); bias-suite needs a model that takes images"
        )
    load_kwargs = dict(
        dtype=torch_dtype,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
        revision=revision,
        use_safetensors=None,
    )
    if device_map is not None:
        if importlib.util.find_spec("accelerate") is None:
            raise ImportError(f"device_map={device_map!r} needs accelerate: pip install accelerate")
        load_kwargs["device_map"] = device_map
    try:
        model = AutoModelForImageTextToText.from_pretrained(resolved.path, **load_kwargs)
        processor = AutoProcessor.from_pretrained(resolved.path, trust_remote_code=trust_remote_code, revision=revision)
    except ValueError as error:
        raise NotImageTextToTextError(f"{spec}: {error}") from error
    if device_map is None:
        model = model.to(torch_device)
    model.eval()
    if getattr(processor, "image_processor", None) is None:
        raise NotImageTextToTextError(f"{spec}: processor {type(processor).__name__} has no image processor")
    return LoadedModel(model=model, processor=processor, info=_model_info(spec, resolved, model))


def _load_config(spec: str, resolved: ResolvedSpec, trust_remote_code: bool, revision: str | None):
    try:
        return AutoConfig.from_pretrained(resolved.path, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as error:
        if resolved.source == "hub":
            raise ModelNotFoundError(
                f"{spec}: could not load from the hub ({error.__class__.__name__}: {str(error).splitlines()[0]}). "
                "Without network access, download it elsewhere and pass the local directory"
            ) from error
        raise ModelNotFoundError(f"{spec}: {error}") from error
    except ValueError as error:
        raise NotImageTextToTextError(f"{spec}: unrecognised config ({error})") from error


def _model_info(spec: str, resolved: ResolvedSpec, model: PreTrainedModel) -> ModelInfo:
    from bias_suite.capture import decoder_geometry  # capture imports transformers internals; keep it local

    config = model.config
    canonical = json.dumps(config.to_dict(), sort_keys=True, default=str)
    geometry = decoder_geometry(model)
    first_parameter = next(model.parameters())
    return ModelInfo(
        spec=spec,
        source=resolved.source,
        path=resolved.path,
        model_type=config.model_type,
        architecture=type(model).__name__,
        revision=getattr(config, "_commit_hash", None),
        config_hash=hashlib.sha256(canonical.encode()).hexdigest()[:16],
        dtype=str(first_parameter.dtype).removeprefix("torch."),
        device=str(first_parameter.device),
        attn_implementation=geometry.attn_implementation,
        n_layers=geometry.n_layers,
    )


def describe_spec(spec: str, trust_remote_code: bool = False, revision: str | None = None) -> tuple[str, int]:
    """``(model_type, decoder layer count)`` from the config alone — no weights are loaded, so test
    collection can parametrize over layers cheaply. Raises like :func:`load_model` on a bad spec."""
    resolved = resolve_spec(spec)
    config = _load_config(spec, resolved, trust_remote_code, revision)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return config.model_type, int(text_config.num_hidden_layers)
