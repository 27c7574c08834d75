"""Load any image-text-to-text checkpoint: a built-in alias, a local directory or a hub id.

Everything goes through ``AutoProcessor`` / ``AutoModelForImageTextToText``, so a tiny built-in
checkpoint takes the same path as ``llava-hf/llava-1.5-7b-hf``. ``trust_remote_code`` is off unless
the caller turns it on; weights load from safetensors when the checkpoint has them.

Loading is strict: weights the checkpoint lacks, does not need, or holds in another shape (which
transformers re-initialises at random and only logs) raise :class:`IncompleteCheckpointError` unless the
caller passes ``allow_incomplete_weights=True``; a damaged weight file raises
:class:`CorruptCheckpointError` naming it. A hub id never makes a load hang: the hub is asked once, with a
timeout, before anything else; when it does not answer, only the local Hugging Face cache is used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import huggingface_hub
import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from bias_suite.demo import DEMO_CHECKPOINTS
from bias_suite.errors import (
    CorruptCheckpointError,
    IncompleteCheckpointError,
    ModelNotFoundError,
    NotImageTextToTextError,
    UnsafeCheckpointError,
)
from bias_suite.models.decoder import DecoderGeometry, decoder_geometry
from bias_suite.models.hub import (
    HUB_TIMEOUT_SECONDS,
    HubRoute,
    first_line,
    hub_kwargs,
    hub_route,
    hub_timeouts,
    not_on_the_hub,
)
from bias_suite.models.placement import describe_placement, dispatch, input_device, offload_folder, remove_with
from bias_suite.models.shapes import SHAPE_PREFIX, SHAPES, build_shape, is_shape_spec, shape_config
from bias_suite.models.tiny import TINY_FAMILIES, ensure_checkpoint
from bias_suite.options import max_memory as parse_budget
from bias_suite.options import parse_device, parse_device_map

SpecSource = Literal["alias", "local", "hub", "shape"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "*.pt", "*.pth")
NAMED_WEIGHTS = 5  # an error lists this many tensor names of each kind, then a count

# config.to_dict() keys that say how a checkpoint was loaded, not what it is (plus every "_private" key).
RUNTIME_CONFIG_KEYS = frozenset({
    "dtype", "torch_dtype", "transformers_version", "attn_implementation", "output_attentions",
    "output_hidden_states", "return_dict", "use_return_dict", "use_cache", "torchscript",
})


@dataclass(frozen=True)
class ModelInfo:
    """What a report needs to say exactly which model ran, where and how."""

    spec: str  # as the user gave it
    source: SpecSource
    path: str  # local directory or hub id actually loaded
    model_type: str  # config.model_type, e.g. "llava"
    architecture: str  # model class name
    revision: str | None  # hub commit hash when known
    config_hash: str  # sha256 of the architecture part of the config (first 16 hex digits), see config_hash()
    dtype: str
    device: str
    attn_implementation: str  # the text decoder's attention backend
    n_layers: int  # decoder layers of the text model
    # Non-empty only with allow_incomplete_weights=True. Names are the model's parameter names.
    missing_weights: tuple[str, ...] = ()  # absent from the checkpoint: re-initialised at random
    unexpected_weights: tuple[str, ...] = ()  # in the checkpoint but not in the model: ignored
    mismatched_weights: tuple[str, ...] = ()  # of another shape in the checkpoint: re-initialised at random


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with its processor and its decoder's geometry (computed once, at load). Treat as
    read-only: tests share one per session."""

    model: PreTrainedModel
    processor: ProcessorMixin
    info: ModelInfo
    geometry: DecoderGeometry

    @property
    def input_device(self) -> torch.device:
        """Where inputs go: the input embedding's (execution) device, also under a device map with offloaded
        parts, where ``model.device`` may be ``meta``."""
        return input_device(self.model)


@dataclass(frozen=True)
class ResolvedSpec:
    """Where a spec's checkpoint is (``source``, ``path``), and — once :func:`route_spec` asked the hub —
    how its files are reached (``route``), so describing and loading it never resolve or route it again."""

    source: SpecSource
    path: str
    spec: str | None = None  # as the user gave it
    route: HubRoute | None = None  # None for shapes, or before routing

    @property
    def name(self) -> str:
        return self.spec if self.spec is not None else self.path


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """``auto`` picks CUDA + bfloat16 when a GPU is present, else CPU + float32."""
    device = parse_device(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved_device = torch.device(device)
    if resolved_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
    n_gpus = torch.cuda.device_count() if resolved_device.type == "cuda" else 0
    if resolved_device.index is not None and resolved_device.index >= n_gpus:
        raise ValueError(f"device {device!r} requested but torch sees {n_gpus} CUDA device(s): "
                         f"use cuda:0 to cuda:{n_gpus - 1}")
    if dtype == "auto":
        return resolved_device, torch.bfloat16 if resolved_device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(DTYPES)}")
    return resolved_device, DTYPES[dtype]


def resolve_spec(spec: str, cache_dir: Path | None = None) -> ResolvedSpec:
    """Alias → built checkpoint directory; ``shape:NAME`` → a full-size random architecture (built, not
    read); existing directory → itself; ``org/name`` → hub id."""
    if is_shape_spec(spec):
        if spec.removeprefix(SHAPE_PREFIX) not in SHAPES:
            raise ModelNotFoundError(f"{spec}: unknown shape; built-in shapes: "
                                     f"{', '.join(SHAPE_PREFIX + name for name in SHAPES)}")
        return ResolvedSpec("shape", spec)
    if spec in TINY_FAMILIES:
        return ResolvedSpec("alias", str(ensure_checkpoint(spec, cache_dir)))
    if spec in DEMO_CHECKPOINTS:
        directory = DEMO_CHECKPOINTS[spec]
        if not (directory / "config.json").is_file():
            raise ModelNotFoundError(f"{spec}: the shipped checkpoint is missing from {directory}; "
                                     "rebuild it with: python -m bias_suite train-demo")
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
        f"{spec}: no such directory, not a built-in alias ({', '.join([*DEMO_CHECKPOINTS, *TINY_FAMILIES])}) "
        f"or shape ({', '.join(SHAPE_PREFIX + name for name in SHAPES)}), and not a hub id of the form org/name"
    )


def route_spec(spec: str | ResolvedSpec, cache_dir: Path | None = None, revision: str | None = None,
               hub_timeout_seconds: float = HUB_TIMEOUT_SECONDS) -> ResolvedSpec:
    """:func:`resolve_spec`, and for a checkpoint its hub route (a hub id asks the hub once, with a timeout):
    everything :func:`describe_spec` and :func:`load_model` need, so a spec resolved here is never resolved
    or routed again. A spec already routed is returned as it is."""
    if isinstance(spec, ResolvedSpec) and (spec.route is not None or spec.source == "shape"):
        return spec
    name = spec.name if isinstance(spec, ResolvedSpec) else spec
    resolved = spec if isinstance(spec, ResolvedSpec) else resolve_spec(spec, cache_dir)
    route = None if resolved.source == "shape" else hub_route(name, resolved.source == "hub", revision,
                                                               hub_timeout_seconds)
    return ResolvedSpec(resolved.source, resolved.path, name, route)


def load_model(
    spec: str | ResolvedSpec,
    *,
    device: str = "auto",
    dtype: str = "auto",
    attn_implementation: str = "sdpa",
    device_map: str | None = None,
    max_memory: Mapping[int | str, str] | str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    cache_dir: Path | None = None,
    allow_incomplete_weights: bool = False,
    hub_timeout_seconds: float = HUB_TIMEOUT_SECONDS,
) -> LoadedModel:
    """Load ``spec`` for capture. ``device_map="auto"`` (needs accelerate) spreads a model over the GPUs, then
    the CPU, then disk; ``max_memory`` (``{0: "20GiB", "cpu": "60GiB"}`` or ``"0=20GiB,cpu=60GiB"``) bounds each
    device. Inputs then go to the input embedding's device (:func:`~bias_suite.models.placement.input_device`,
    ``LoadedModel.input_device``), never ``model.device``; the model is not moved afterwards.

    allow_incomplete_weights: load a checkpoint whose weights do not cover the model (transformers fills the
        gaps at random) instead of raising :class:`IncompleteCheckpointError`; ``ModelInfo`` lists the gaps.
    hub_timeout_seconds: for a hub id, how long to wait for the hub to connect and to answer each request.
    """
    resolved = route_spec(spec, cache_dir, revision, hub_timeout_seconds)
    spec = resolved.name
    torch_device, torch_dtype = resolve_device(device, dtype)
    if device_map is not None:
        device_map = parse_device_map(device_map)
        if importlib.util.find_spec("accelerate") is None:
            raise ImportError(f"device_map={device_map!r} needs accelerate: pip install accelerate")
    budget = parse_budget(max_memory) if isinstance(max_memory, str) else dict(max_memory or {}) or None
    if budget is not None and device_map is None:
        raise ValueError("max_memory only means something with a device_map (device_map='auto')")
    if resolved.source == "shape":
        model, processor = build_shape(spec, "cpu" if device_map else torch_device, torch_dtype, attn_implementation)
        if device_map is not None:
            model = dispatch(model, device_map, budget)
        return _loaded(spec, resolved, model, processor, WeightGaps())
    route = resolved.route
    with hub_timeouts(hub_timeout_seconds):
        config = _load_config(spec, resolved, route, trust_remote_code)
        if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and not trust_remote_code:
            raise NotImageTextToTextError(
                f"{spec}: model_type {config.model_type!r} is not an image-text-to-text architecture "
                "(AutoModelForImageTextToText cannot load it); bias-suite needs a model that takes images"
            )
        load_kwargs: dict[str, Any] = dict(
            dtype=torch_dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            use_safetensors=None,
            output_loading_info=True,
            # Mis-shaped weights are reported (and refused below) rather than raised as a bare RuntimeError.
            ignore_mismatched_sizes=True,
            **hub_kwargs(route),
        )
        if device_map is not None:
            load_kwargs["device_map"] = device_map
            if budget is not None:  # what does not fit goes to disk (a .bin checkpoint needs a folder for it)
                load_kwargs.update(max_memory=dict(budget), offload_folder=offload_folder())
        model, loading_info = _load_weights(spec, resolved, route, load_kwargs)
        if "offload_folder" in load_kwargs:
            remove_with(model, load_kwargs["offload_folder"])
        gaps = weight_gaps(model, loading_info)
        if gaps.any and not allow_incomplete_weights:
            raise IncompleteCheckpointError(gaps.message(spec, resolved.path))
        try:
            processor = AutoProcessor.from_pretrained(resolved.path, trust_remote_code=trust_remote_code,
                                                      **hub_kwargs(route))
        except ValueError as error:
            raise NotImageTextToTextError(f"{spec}: {error}") from error
    if device_map is None:
        model = model.to(torch_device)
    model.eval()
    if getattr(processor, "image_processor", None) is None:
        raise NotImageTextToTextError(f"{spec}: processor {type(processor).__name__} has no image processor")
    return _loaded(spec, resolved, model, processor, gaps)


@dataclass(frozen=True)
class SpecDescription:
    """What a model spec's config says, without weights."""

    model_type: str
    n_layers: int  # decoder layers
    attention_layers: tuple[int, ...]  # decoder layers with self-attention (hybrid decoders have others)


def describe_spec(
    spec: str | ResolvedSpec, trust_remote_code: bool = False, revision: str | None = None,
    hub_timeout_seconds: float = HUB_TIMEOUT_SECONDS,
) -> SpecDescription:
    """The model's family and decoder layers from its config alone — the model is built on the ``meta``
    device (no memory, a fraction of a second for a 13B model), so test collection can parametrize over
    layers cheaply. Raises like :func:`load_model` on a bad spec."""
    resolved = route_spec(spec, revision=revision, hub_timeout_seconds=hub_timeout_seconds)
    spec = resolved.name
    if resolved.source == "shape":
        config = shape_config(spec)[0]
    else:
        with hub_timeouts(hub_timeout_seconds):
            config = _load_config(spec, resolved, resolved.route, trust_remote_code)
    try:
        with torch.device("meta"):
            skeleton = AutoModelForImageTextToText.from_config(config, trust_remote_code=trust_remote_code)
    except ValueError as error:
        raise NotImageTextToTextError(f"{spec}: {error}") from error
    geometry = decoder_geometry(skeleton)
    return SpecDescription(config.model_type, geometry.n_layers, geometry.attention_layers)


# --- config and weights ----------------------------------------------------------------------------------------


def _load_config(spec: str, resolved: ResolvedSpec, route: HubRoute, trust_remote_code: bool):
    try:
        config = AutoConfig.from_pretrained(resolved.path, trust_remote_code=trust_remote_code, **hub_kwargs(route))
    except OSError as error:
        if resolved.source == "hub":
            raise not_on_the_hub(spec, route, error) from error
        raise ModelNotFoundError(f"{spec}: {error}") from error
    except ValueError as error:
        raise NotImageTextToTextError(f"{spec}: unrecognised config ({error})") from error
    if route.cache_only and route.unreachable is not None:
        warnings.warn(f"{spec}: {route.unreachable}; loading the copy in the local Hugging Face cache", stacklevel=3)
    return config


def _load_weights(
    spec: str, resolved: ResolvedSpec, route: HubRoute, load_kwargs: dict[str, Any]
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """The model and transformers' loading info; damaged or absent weight files raise naming the file."""
    try:
        return AutoModelForImageTextToText.from_pretrained(resolved.path, **load_kwargs)
    except SafetensorError as error:
        raise _corrupt_weights_error(spec, resolved, route, error) from error
    except pickle.UnpicklingError:  # torch.load(weights_only=True) refused what the pickle asks for
        raise UnsafeCheckpointError(
            f"{spec}: its weights are a pickle (pytorch_model.bin / .pt) that asks to run code when read, and were "
            "refused (torch.load with weights_only=True); convert the checkpoint to safetensors where you trust it "
            "(model.save_pretrained(dir, safe_serialization=True)) and load that") from None
    except ValueError as error:
        raise NotImageTextToTextError(f"{spec}: {error}") from error
    except OSError as error:
        if resolved.source == "hub":
            raise not_on_the_hub(spec, route, error) from error
        directory = Path(resolved.path)
        if not any(any(directory.glob(pattern)) for pattern in WEIGHT_FILES):
            raise CorruptCheckpointError(
                f"{spec}: {directory} holds config.json but no weight file (model.safetensors, a "
                "model.safetensors.index.json with its shards, or pytorch_model.bin); copy the weights into it "
                "or save the checkpoint again"
            ) from error
        raise ModelNotFoundError(f"{spec}: cannot read the weights in {directory} ({first_line(error)})") from error


def _corrupt_weights_error(
    spec: str, resolved: ResolvedSpec, route: HubRoute, error: Exception
) -> CorruptCheckpointError:
    """Name the safetensors file(s) that do not open, and how to replace them."""
    directory = _checkpoint_directory(resolved, route)
    damaged = []
    for file in sorted(directory.glob("*.safetensors")) if directory is not None else []:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as reason:
            damaged.append(f"{file} ({first_line(reason)})")
    if resolved.source == "hub":
        fix = "delete it from the Hugging Face cache (hf cache rm, or remove the file) and load again to re-download"
    else:
        fix = "copy or save the checkpoint again"
    if damaged:
        files = "; ".join(damaged)
        return CorruptCheckpointError(f"{spec}: weight file {files} is truncated or corrupt; {fix}")
    return CorruptCheckpointError(
        f"{spec}: a weight file in {directory or resolved.path} is truncated or corrupt ({first_line(error)}); {fix}"
    )


def _checkpoint_directory(resolved: ResolvedSpec, route: HubRoute) -> Path | None:
    """The local directory the checkpoint's files are in: itself, or its snapshot in the Hugging Face cache."""
    if resolved.source != "hub":
        return Path(resolved.path)
    cached = huggingface_hub.try_to_load_from_cache(resolved.path, "config.json", revision=route.revision)
    return Path(cached).parent if isinstance(cached, str) else None


@dataclass(frozen=True)
class WeightGaps:
    """Where a checkpoint's weights and the model's parameters disagree (model parameter names).

    mismatched: ``(name, shape in the checkpoint, shape in the model)``.
    """

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()
    load_errors: tuple[str, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched or self.load_errors)

    def message(self, spec: str, path: str) -> str:
        """Says what is missing, unexpected and mis-shaped (the first few of each, and how many), and the fixes."""
        mismatched = [f"{name}: checkpoint {list(saved)}, model {list(wanted)}"
                      for name, saved, wanted in self.mismatched]
        parts = [_listing(self.missing, "missing weight"), _listing(self.unexpected, "unexpected weight"),
                 _listing(mismatched, "mis-shaped weight"), _listing(self.load_errors, "loading error")]
        return (
            f"{spec}: the checkpoint at {path} does not match the model's weights: "
            f"{'; '.join(part for part in parts if part)}. transformers would fill these with random values, so "
            "the bias measured would describe noise. Use a complete checkpoint of this architecture (save or "
            "download it again), or pass allow_incomplete_weights=True to load it anyway (ModelInfo then lists "
            "the gaps)"
        )


def _listing(names, noun: str) -> str:
    names = list(names)
    if not names:
        return ""
    shown = ", ".join(names[:NAMED_WEIGHTS])
    more = f" and {len(names) - NAMED_WEIGHTS} more" if len(names) > NAMED_WEIGHTS else ""
    return f"{len(names)} {noun}{'s' if len(names) != 1 else ''} ({shown}{more})"


def weight_gaps(model: PreTrainedModel, loading_info: dict[str, Any]) -> WeightGaps:
    """transformers' ``output_loading_info`` as :class:`WeightGaps`, without tied weights.

    A weight tied to another (``lm_head`` sharing the input embedding) is legitimately absent from the file;
    transformers does not report it, and if it ever does, it is dropped here: it is named in the model's
    tied-weights table, or it shares storage with a parameter that did load.
    """
    reported_missing = set(loading_info.get("missing_keys", ()))
    missing = reported_missing - _tied_to_loaded(model, reported_missing)
    mismatched = tuple(sorted(
        (name, tuple(saved), tuple(wanted)) for name, saved, wanted in loading_info.get("mismatched_keys", ())
    ))
    return WeightGaps(
        missing=tuple(sorted(missing)),
        unexpected=tuple(sorted(loading_info.get("unexpected_keys", ()))),
        mismatched=mismatched,
        load_errors=tuple(str(message) for message in loading_info.get("error_msgs", ())),
    )


def _tied_to_loaded(model: PreTrainedModel, missing: set[str]) -> set[str]:
    """The names in ``missing`` that are tied to a weight that is not missing."""
    tied_table = getattr(model, "all_tied_weights_keys", None) or {}
    tied = {name for name in missing if name in tied_table and tied_table[name] not in missing}
    names_by_storage: dict[tuple[str, int], set[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if parameter.device.type != "meta":
            names_by_storage.setdefault((str(parameter.device), parameter.data_ptr()), set()).add(name)
    for names in names_by_storage.values():
        if names - missing:
            tied |= names & missing
    return tied


# --- what ran --------------------------------------------------------------------------------------------------


def architecture_config(config_dict: Any) -> Any:
    """``config.to_dict()`` without what depends on how it was loaded: ``"_private"`` keys (``_name_or_path``,
    ``_attn_implementation*``, ``_commit_hash``) and :data:`RUNTIME_CONFIG_KEYS` (``dtype``,
    ``transformers_version``, output flags), in sub-configs too."""
    if isinstance(config_dict, dict):
        return {
            key: architecture_config(value) for key, value in config_dict.items()
            if not (isinstance(key, str) and (key.startswith("_") or key in RUNTIME_CONFIG_KEYS))
        }
    if isinstance(config_dict, (list, tuple)):
        return [architecture_config(value) for value in config_dict]
    return config_dict


def config_hash(config) -> str:
    """sha256 (first 16 hex digits) of the architecture part of ``config`` (:func:`architecture_config`): the
    same checkpoint hashes the same whatever device, dtype, attention backend or directory it was loaded with."""
    canonical = json.dumps(architecture_config(config.to_dict()), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _loaded(spec: str, resolved: ResolvedSpec, model: PreTrainedModel, processor: ProcessorMixin,
            gaps: WeightGaps) -> LoadedModel:
    """The loaded model with its info and its decoder's geometry, computed here once."""
    geometry = decoder_geometry(model)
    return LoadedModel(model=model, processor=processor, info=_model_info(spec, resolved, model, geometry, gaps),
                       geometry=geometry)


def _model_info(spec: str, resolved: ResolvedSpec, model: PreTrainedModel, geometry: DecoderGeometry,
                gaps: WeightGaps) -> ModelInfo:
    config = model.config
    first_parameter = next(model.parameters())
    return ModelInfo(
        spec=spec,
        source=resolved.source,
        path=resolved.path,
        model_type=config.model_type,
        architecture=type(model).__name__,
        revision=getattr(config, "_commit_hash", None),
        config_hash=config_hash(config),
        dtype=str(first_parameter.dtype).removeprefix("torch."),
        device=describe_placement(model),
        attn_implementation=geometry.attn_implementation,
        n_layers=geometry.n_layers,
        missing_weights=gaps.missing,
        unexpected_weights=gaps.unexpected,
        mismatched_weights=tuple(name for name, _, _ in gaps.mismatched),
    )
