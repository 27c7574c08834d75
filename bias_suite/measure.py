"""Measuring without pytest: models × benchmarks × layers → metric estimates.

``ModelUnderTest(spec, settings)`` loads a model once; ``.on(benchmark)`` extracts every chosen layer of
every sample once (one batched prefill per batch) and computes the key-space statistics of all layers
in one batch on the model's device, and the attention summaries per layer, so a notebook and the
pytest gate get the same numbers::

    model = ModelUnderTest("tiny-llava", RunSettings(layers="every:2"))
    measurement = model.on(load_benchmark("shapes", n_samples=16))
    measurement.keyspace(2)[-1].metrics["mmd2"]    # pooled over KV heads: Estimate(value, ci_low, ci_high)

On a benchmark with behaviour (``conflict`` and the behaviour suites), ``.behaviour`` scores every answer
and ``.sample_records`` / ``.coupling(layer)`` tie each sample's internals to its behaviour.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from functools import cached_property

import torch

from bias_suite.benchmarks import Benchmark
from bias_suite.capture.batch import CaptureConfig, SampleCapture
from bias_suite.capture.extract import extract
from bias_suite.layers import LayerSelector
from bias_suite.metrics import (
    AttentionResult,
    Estimate,
    KeySpaceConfig,
    KeySpaceResult,
    keyspace_metrics_by_layer,
    query_positions,
    summarise_attention,
)
from bias_suite.metrics.samples import (
    LayerMeasures,
    SampleRecord,
    by_image_tokens,
    coupling_estimates,
    key_distances,
)
from bias_suite.metrics.suites import ScoredItem, item_outcomes, suite_estimates
from bias_suite.models.decoder import DecoderGeometry
from bias_suite.models.loading import LoadedModel, ResolvedSpec, load_model
from bias_suite.models.prompts import answer_token_count
from bias_suite.options import RunSettings


def keyspace_config(settings: RunSettings) -> KeySpaceConfig:
    return KeySpaceConfig(n_bootstrap=settings.n_bootstrap, n_permutations=settings.n_permutations, seed=settings.seed)


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

    def __init__(self, spec: str | ResolvedSpec, settings: RunSettings | None = None, device: str | None = None,
                 statistics_threads: int | None = None):
        """spec: as :func:`~bias_suite.models.load_model` takes it (a :class:`~bias_suite.models.ResolvedSpec`
        from :func:`~bias_suite.models.route_spec` is not resolved again); statistics_threads: CPU threads of
        the key-space statistics (default: torch's thread count now); results do not depend on it."""
        settings = settings if settings is not None else RunSettings()
        self.spec = spec.name if isinstance(spec, ResolvedSpec) else spec
        self.settings = settings
        self.statistics_threads = statistics_threads or torch.get_num_threads()
        self.loaded = load_model(spec, device=device or settings.device, dtype=settings.dtype,
                                 device_map=settings.device_map, max_memory=settings.max_memory,
                                 trust_remote_code=settings.trust_remote_code,
                                 allow_incomplete_weights=settings.allow_incomplete_weights)
        self.geometry: DecoderGeometry = self.loaded.geometry
        # where the inputs go (under a device map with offloaded parts the first parameter may be on ``meta``)
        self.statistics_device = self.loaded.input_device
        self.layers = LayerSelector.parse(settings.layers).resolve(self.geometry.n_layers, self.spec,
                                                                   self.geometry.attention_layers)
        self._measurements: dict[str, Measurement] = {}

    def on(self, benchmark: Benchmark, progress=None) -> Measurement:
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
        return keyspace_metrics_by_layer(keys, image_ids, text_ids, keyspace_config(self.model.settings),
                                         threads=self.model.statistics_threads)

    def attention(self, layer: int) -> dict[str, AttentionResult]:
        """Attention-share statistics at ``layer`` for each query set the benchmark supports."""
        if layer not in self._attention:
            per_set: dict[str, list] = {}
            for capture, n_answer in zip(self.captures, self.answer_tokens):
                for name, positions in query_positions(capture.image_mask, n_answer).items():
                    per_set.setdefault(name, []).append(capture.row_shares_at(layer, positions))
            settings = self.model.settings
            self._attention[layer] = {name: summarise_attention(shares, layer, name, settings.n_bootstrap,
                                                                settings.seed)
                                      for name, shares in per_set.items()}
        return self._attention[layer]

    def projection(self, layer: int, max_points: int = 150) -> dict[str, object]:
        """Pre-RoPE keys of ``layer`` (all KV heads concatenated), at most ``max_points`` per modality
        (seeded subsample), on their top-2 principal components and embedded by t-SNE (as the paper
        shows them): ``{"pca": {"image": [[x, y], …], "text": …}, "tsne": {…}}``."""
        from sklearn.manifold import TSNE

        image, text = [], []
        for capture, n_answer in zip(self.captures, self.answer_tokens):
            rows = self._prompt_key_rows(capture, n_answer)
            keys = capture.layers[layer].pre_rope_keys[rows].flatten(1).double()
            mask = capture.image_mask[capture.key_positions[rows]]
            image.append(keys[mask])
            text.append(keys[~mask])
        generator = torch.Generator().manual_seed(self.model.settings.seed)
        chosen = [keys[torch.randperm(keys.shape[0], generator=generator)[:max_points].sort().values]
                  for keys in (torch.cat(image), torch.cat(text))]
        pooled = torch.cat(chosen)
        centred = pooled - pooled.mean(0)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        pca = centred @ vh[:2].T
        components = centred @ vh[: min(50, vh.shape[0])].T  # t-SNE on the top principal components
        perplexity = float(min(30, max(2, pooled.shape[0] // 4)))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=self.model.settings.seed,
                    n_jobs=1).fit_transform(components.numpy())
        n_image = chosen[0].shape[0]

        def split(points) -> dict[str, list[list[float]]]:
            rows = [[round(float(x), 5) for x in row] for row in points.tolist()]
            return {"image": rows[:n_image], "text": rows[n_image:]}

        return {"pca": split(pca), "tsne": split(torch.as_tensor(tsne))}

    @cached_property
    def scored_items(self) -> tuple[ScoredItem, ...]:
        """Every candidate answer of every item scored (teacher-forced log-likelihood, nats); empty for a
        benchmark without behaviour."""
        from bias_suite.capture import scoring
        from bias_suite.vocabulary import BehaviourKind

        kind, samples = self.benchmark.behaviour, self.benchmark.samples
        if kind is None:
            return ()
        if kind is BehaviourKind.CONFLICT and not any(s.queries for s in samples):
            return tuple(scoring.conflict_items(self.model.loaded, samples))
        return tuple(scoring.score_items(self.model.loaded, samples))

    @cached_property
    def behaviour(self) -> dict[str, Estimate]:
        """Every behaviour metric of the benchmark's suite (``text_preference_rate`` on conflict pairs; see
        :mod:`bias_suite.metrics.suites`); empty without behaviour."""
        if not self.scored_items:
            return {}
        settings = self.model.settings
        return suite_estimates(self.benchmark.behaviour, self.scored_items, settings.n_bootstrap, settings.seed)

    @cached_property
    def sample_records(self) -> tuple[SampleRecord, ...]:
        """Per sample: its behaviour outcomes (when the benchmark has behaviour) and, at every chosen layer, its
        attention over the question rows and its key distance (:class:`~bias_suite.metrics.samples.SampleRecord`)."""
        layers = {layer: self._layer_measures(layer) for layer in self.model.layers}
        kind = self.benchmark.behaviour
        outcomes = [tuple(item_outcomes(kind, item).items()) for item in self.scored_items] or [()] * len(self.captures)
        return tuple(
            SampleRecord(self.model.spec, self.benchmark.name, capture.sample_id, int(capture.image_mask.sum()),
                         outcome, tuple(layers[layer][index] for layer in self.model.layers))
            for index, (capture, outcome) in enumerate(zip(self.captures, outcomes)))

    def _layer_measures(self, layer: int) -> list[LayerMeasures]:
        image_keys, text_keys, attention = [], [], []
        for capture, n_answer in zip(self.captures, self.answer_tokens):
            rows = self._prompt_key_rows(capture, n_answer)
            is_image = capture.image_mask[capture.key_positions[rows]]
            keys = capture.layers[layer].pre_rope_keys[rows]
            image_keys.append(keys[is_image])
            text_keys.append(keys[~is_image])
            shares = capture.row_shares_at(layer, query_positions(capture.image_mask, n_answer)["question"])
            attention.append({name: float(getattr(shares, name).double().nanmean())
                              for name in ("visual_share", "visual_share_nosink", "logit_gap", "visual_log_odds",
                                           "sink_mass")})
        distances = key_distances(image_keys, torch.cat(text_keys)).tolist()
        return [LayerMeasures(layer, key_distance=distance, **means) for means, distance in zip(attention, distances)]

    def coupling(self, layer: int, outcome: str = "margin") -> dict[str, Estimate]:
        """Spearman ρ over samples between each internal measure at ``layer`` and the behaviour ``outcome``
        (default: the probe answer's margin, nats), with a bootstrap over items
        (:func:`bias_suite.metrics.samples.coupling_estimates`); empty without behaviour."""
        if not self.scored_items:
            return {}
        settings = self.model.settings
        return coupling_estimates(self.sample_records, layer, outcome, settings.n_bootstrap, settings.seed)

    def by_image_tokens(self, layer: int, measure: str = "visual_share") -> dict[int, Estimate]:
        """``measure`` (a :class:`~bias_suite.metrics.samples.LayerMeasures` field) at ``layer`` per stratum of
        image-token count, each with a bootstrap over its samples."""
        settings = self.model.settings
        return by_image_tokens(self.sample_records, layer, measure, settings.n_bootstrap, settings.seed)

