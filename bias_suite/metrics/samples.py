"""Per-sample records: what each sample did inside the model (per layer) beside what it did outside.

A :class:`SampleRecord` holds, for one model × benchmark × sample, the sample's behaviour outcomes (its
probe answer's margin in nats, 0/1 outcomes of its item) and, per chosen layer, its internal measures:
attention of the question rows (``visual_share``, ``visual_share_nosink``, ``logit_gap``,
``visual_log_odds``, ``sink_mass``) and its key-space position (``key_distance``). They are the material
of the coupling (:mod:`bias_suite.metrics.coupling`) and of attention stratified by image-token count.
Records are frozen and cross process boundaries as plain JSON (non-finite numbers as ``null``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bias_suite.metrics.coupling import rank_coupling
from bias_suite.metrics.estimate import Estimate
from bias_suite.metrics.registry import COUPLING_MEASURES
from bias_suite.metrics.suites import item_mean

LAYER_MEASURES = ("visual_share", "visual_share_nosink", "logit_gap", "visual_log_odds", "sink_mass", "key_distance")


@dataclass(frozen=True)
class LayerMeasures:
    """One sample's internal measures at one decoder layer.

    Attention (question query set: every prompt token after the image; mean over its rows and query heads):
    ``visual_share`` and ``visual_share_nosink`` (attention mass, 0–1), ``logit_gap`` (mean scaled q·k to text
    keys − to image keys, logit units), ``visual_log_odds`` (nats; see :class:`~bias_suite.metrics.RowShares`),
    ``sink_mass`` (attention mass on sink keys, 0–1).
    Key space (pre-RoPE keys of the prompt, as captured, token cap applied): ``key_distance`` = distance from
    the mean of the sample's image keys to the mean of the benchmark's text keys, divided by the root mean
    square distance of those text keys to their mean — in units of the text keys' spread, 0 when the
    sample's image keys are centred on the text keys — averaged over KV heads.
    """

    layer: int
    visual_share: float
    visual_share_nosink: float
    logit_gap: float
    visual_log_odds: float
    sink_mass: float
    key_distance: float

    def to_json(self) -> dict:
        return {"layer": self.layer, **{name: _finite(getattr(self, name)) for name in LAYER_MEASURES}}

    @classmethod
    def from_json(cls, data: Mapping) -> LayerMeasures:
        return cls(int(data["layer"]), *(_number(data[name]) for name in LAYER_MEASURES))


@dataclass(frozen=True)
class SampleRecord:
    """One sample of one model × benchmark: its id, image-token count, behaviour outcomes and per-layer measures.

    outcomes: ``(name, value)`` pairs — ``margin`` (nats the probe's image-true answer beats the best other
    candidate), ``trap_margin`` (nats the probe's trap beats its answer; NaN without a trap), ``correct``
    (0/1), and the suite's item outcomes (:func:`bias_suite.metrics.suites.item_outcomes`).
    """

    model: str
    benchmark: str
    sample_id: str
    n_image_tokens: int
    outcomes: tuple[tuple[str, float], ...]
    layers: tuple[LayerMeasures, ...]

    def outcome(self, name: str) -> float:
        return dict(self.outcomes).get(name, math.nan)

    def at(self, layer: int) -> LayerMeasures:
        for measures in self.layers:
            if measures.layer == layer:
                return measures
        raise KeyError(f"{self.sample_id}: layer {layer} was not measured; layers {[m.layer for m in self.layers]}")

    def to_json(self) -> dict:
        return {"model": self.model, "benchmark": self.benchmark, "sample_id": self.sample_id,
                "n_image_tokens": self.n_image_tokens,
                "outcomes": {name: _finite(value) for name, value in self.outcomes},
                "layers": [measures.to_json() for measures in self.layers]}

    @classmethod
    def from_json(cls, data: Mapping) -> SampleRecord:
        return cls(data["model"], data["benchmark"], data["sample_id"], int(data["n_image_tokens"]),
                   tuple((name, _number(value)) for name, value in data["outcomes"].items()),
                   tuple(LayerMeasures.from_json(measures) for measures in data["layers"]))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _number(value) -> float:
    return math.nan if value is None else float(value)


def key_distances(image_keys: Sequence[Tensor], text_keys: Tensor) -> Tensor:
    """``[n_samples]`` float64: each sample's ``key_distance`` (see :class:`LayerMeasures`).

    image_keys: per sample ``[n_image_rows, n_kv_heads, head_dim]``; text_keys: the benchmark's text keys
    pooled, ``[n_text_rows, n_kv_heads, head_dim]``. A sample without image rows gets NaN.
    """
    text = text_keys.double()
    centre = text.mean(0)  # [kv, d]
    spread = (text - centre).square().sum(-1).mean(0).sqrt()  # [kv]
    distances = []
    for keys in image_keys:
        if keys.shape[0] == 0:
            distances.append(math.nan)
            continue
        distances.append(float(((keys.double().mean(0) - centre).norm(dim=-1) / spread).mean()))
    return torch.tensor(distances, dtype=torch.float64)


def coupling_estimates(records: Sequence[SampleRecord], layer: int, outcome: str = "margin",
                       n_bootstrap: int = 200, seed: int = 0,
                       clusters: Sequence[str] | None = None) -> dict[str, Estimate]:
    """``{measure}_coupling`` for each of :data:`~bias_suite.metrics.registry.COUPLING_MEASURES`: Spearman ρ over
    the records between the measure at ``layer`` and ``outcome``, with a bootstrap over ``clusters`` (default:
    each record's sample id, one item per sample)."""
    ids = [record.sample_id for record in records] if clusters is None else list(clusters)
    values = [record.outcome(outcome) for record in records]
    return {f"{measure}_coupling": rank_coupling([getattr(record.at(layer), measure) for record in records], values,
                                                 ids, n_bootstrap, seed)
            for measure in COUPLING_MEASURES}


def by_image_tokens(records: Sequence[SampleRecord], layer: int, measure: str = "visual_share",
                    n_bootstrap: int = 200, seed: int = 0) -> dict[int, Estimate]:
    """``measure`` at ``layer`` per stratum of image-token count: ``{n_image_tokens: mean with a bootstrap over
    the stratum's samples}``. One stratum for processors that give every image the same number of tokens."""
    strata: dict[int, list[float]] = {}
    for record in records:
        strata.setdefault(record.n_image_tokens, []).append(getattr(record.at(layer), measure))
    return {count: item_mean(values, n_bootstrap, seed) for count, values in sorted(strata.items())}
