"""One measurement run without pytest: models × benchmarks × layers → metric estimates.

``ModelUnderTest(spec, settings)`` loads a model once; ``.on(benchmark)`` extracts every chosen
layer of every sample once (one batched prefill per batch) and caches the key-space and attention
statistics per layer, so a notebook, the CLI and the pytest gate all get the same numbers.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from functools import cached_property

import torch

from bias_suite.benchmarks import Benchmark
from bias_suite.capture import CaptureConfig, DecoderGeometry, SampleCapture, decoder_geometry
from bias_suite.extraction import extract
from bias_suite.inputs import answer_token_count
from bias_suite.layers import LayerSelector
from bias_suite.loading import LoadedModel, load_model
from bias_suite.metrics import (
    AttentionResult,
    KeySpaceConfig,
    KeySpaceResult,
    keyspace_metrics_by_layer,
    query_positions,
    summarise,
)


@dataclass(frozen=True)
class SuiteSettings:
    """How a run measures. Plain values, so they travel to pytest-xdist workers unchanged."""

    layers: str = "all"
    n_samples: int | None = 16  # per benchmark (seeded subset); None: all
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    max_tokens_per_modality: int | None = 64  # pre-RoPE key rows kept per sample and modality
    n_bootstrap: int = 200
    n_permutations: int = 200
    batch_size: int = 4

    @property
    def layer_selector(self) -> LayerSelector:
        return LayerSelector.parse(self.layers)

    @property
    def keyspace_config(self) -> KeySpaceConfig:
        return KeySpaceConfig(n_bootstrap=self.n_bootstrap, n_permutations=self.n_permutations, seed=self.seed)


def environment(loaded: LoadedModel | None = None) -> dict[str, str]:
    """Versions and placement that can change the numbers (recorded in reports and threshold files)."""
    import transformers

    info = loaded.info if loaded is not None else None
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "transformers": str(transformers.__version__),
        "device": info.device if info else "",
        "dtype": info.dtype if info else "",
        "attn_implementation": info.attn_implementation if info else "",
    }


class ModelUnderTest:
    """A loaded model with its chosen layers; measurements cached per benchmark. Read-only for users."""

    def __init__(self, spec: str, settings: SuiteSettings, device: str | None = None):
        self.spec = spec
        self.settings = settings
        self.loaded = load_model(spec, device=device or settings.device, dtype=settings.dtype,
                                 trust_remote_code=settings.trust_remote_code)
        self.geometry: DecoderGeometry = decoder_geometry(self.loaded.model)
        self.statistics_device = next(self.loaded.model.parameters()).device
        self.layers = settings.layer_selector.resolve(self.geometry.n_layers, spec)
        self._measurements: dict[str, Measurement] = {}

    def on(self, benchmark: Benchmark, progress=None) -> "Measurement":
        if benchmark.name not in self._measurements:
            self._measurements[benchmark.name] = Measurement(self, benchmark, progress)
        return self._measurements[benchmark.name]


@dataclass
class Measurement:
    """Captures of one model on one benchmark, and the statistics derived from them (lazily, cached)."""

    model: ModelUnderTest
    benchmark: Benchmark
    progress: object = None
    captures: tuple[SampleCapture, ...] = field(init=False, repr=False)
    answer_tokens: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        settings = self.model.settings
        samples = self.benchmark.samples
        processor = self.model.loaded.processor
        self.answer_tokens = tuple(answer_token_count(processor, s) for s in samples) if self.benchmark.has_answers \
            else (0,) * len(samples)
        config = CaptureConfig(layers=self.model.layers, query_rows="after_image",
                               max_tokens_per_modality=settings.max_tokens_per_modality, seed=settings.seed)
        self.captures = extract(self.model.loaded, samples, config, batch_size=settings.batch_size,
                                append_answers=self.benchmark.has_answers, progress=self.progress)
        self._keyspace: dict[int, tuple[KeySpaceResult, ...]] = {}
        self._attention: dict[int, dict[str, AttentionResult]] = {}

    def _prompt_key_rows(self, capture: SampleCapture, n_answer: int):
        """Indices into the kept pre-RoPE key rows that belong to the prompt (answer tokens left out)."""
        return (capture.key_positions < capture.n_tokens - n_answer).nonzero().flatten()

    def keyspace(self, layer: int) -> tuple[KeySpaceResult, ...]:
        """Key-space statistics of pre-RoPE keys at ``layer``: one result per KV head, then pooled.

        The first call computes every chosen layer at once, on the model's device (one batch of
        independent head problems), so statistics never stall between one layer and the next."""
        if not self._keyspace:
            self._keyspace = self._all_keyspace()
        return self._keyspace[layer]

    def _all_keyspace(self) -> dict[int, tuple[KeySpaceResult, ...]]:
        device = self.model.statistics_device
        image_ids: list[str] = []
        text_ids: list[str] = []
        selections = []
        for capture, n_answer in zip(self.captures, self.answer_tokens):
            rows = self._prompt_key_rows(capture, n_answer)
            is_image = capture.image_mask[capture.key_positions[rows]]
            selections.append((rows[is_image], rows[~is_image]))
            image_ids.extend([capture.sample_id] * int(is_image.sum()))
            text_ids.extend([capture.sample_id] * int((~is_image).sum()))
        keys = {}
        for layer in self.model.layers:
            parts = [(capture.layers[layer].pre_rope_keys[image_rows], capture.layers[layer].pre_rope_keys[text_rows])
                     for capture, (image_rows, text_rows) in zip(self.captures, selections)]
            keys[layer] = (torch.cat([image for image, _ in parts]).to(device),
                           torch.cat([text for _, text in parts]).to(device))
        return keyspace_metrics_by_layer(keys, image_ids, text_ids, self.model.settings.keyspace_config)

    def attention(self, layer: int) -> dict[str, AttentionResult]:
        """Attention-share statistics at ``layer`` for each query set the benchmark supports."""
        if layer not in self._attention:
            per_set: dict[str, list] = {}
            for capture, n_answer in zip(self.captures, self.answer_tokens):
                for name, positions in query_positions(capture.image_mask, n_answer).items():
                    per_set.setdefault(name, []).append(capture.row_shares_at(layer, positions))
            settings = self.model.settings
            self._attention[layer] = {name: summarise(shares, layer, name, settings.n_bootstrap, settings.seed)
                                      for name, shares in per_set.items()}
        return self._attention[layer]

    def projection(self, layer: int, max_points: int = 150) -> dict[str, list[list[float]]]:
        """Pre-RoPE keys of ``layer`` (all KV heads concatenated) on their top-2 principal components,
        at most ``max_points`` per modality (seeded subsample): ``{"image": [[x, y], …], "text": …}``."""
        image, text = [], []
        for capture, n_answer in zip(self.captures, self.answer_tokens):
            rows = self._prompt_key_rows(capture, n_answer)
            keys = capture.layers[layer].pre_rope_keys[rows].flatten(1)
            mask = capture.image_mask[capture.key_positions[rows]]
            image.append(keys[mask])
            text.append(keys[~mask])
        image_keys, text_keys = torch.cat(image).double(), torch.cat(text).double()
        pooled = torch.cat([image_keys, text_keys])
        centre = pooled.mean(0)
        _, _, vh = torch.linalg.svd(pooled - centre, full_matrices=False)
        plane = vh[:2].T
        generator = torch.Generator().manual_seed(self.model.settings.seed)

        def points(keys: torch.Tensor) -> list[list[float]]:
            chosen = torch.randperm(keys.shape[0], generator=generator)[:max_points].sort().values
            return [[round(x, 5) for x in row] for row in ((keys[chosen] - centre) @ plane).tolist()]

        return {"image": points(image_keys), "text": points(text_keys)}

    @cached_property
    def behaviour(self) -> dict[str, object]:
        """Behaviour metrics of the benchmark: ``text_preference_rate`` when it has conflict pairs."""
        from bias_suite import behaviour

        results = {}
        if self.benchmark.has_conflicts:
            results["text_preference_rate"] = behaviour.text_preference_estimate(
                self.model.loaded, self.benchmark.samples, self.model.settings.n_bootstrap, self.model.settings.seed)
        return results

