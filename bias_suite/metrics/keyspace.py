"""Key-space separation between image and text keys, per KV head and pooled over heads.

Input: the keys of each modality with the sample (image) each token came from, for one layer or many
layers that share the same tokens. Output: one :class:`KeySpaceResult` per KV head plus one pooled result
(``head=None``: the mean over KV heads of each statistic, its replicates averaged the same way; the pooled
``ratio`` is the ratio of the pooled inter and intra terms). Intervals are over samples: a delete-one-sample
jackknife-t for the gateable statistics (the classifier's nested cross-validation refitted without each
sample for ``jsd`` and ``auroc``; ``mmd2``'s bandwidth re-estimated without it), a bootstrap for the
reported ones; the registry names each (:attr:`~bias_suite.metrics.registry.MetricSpec.interval`). The
permutation test swaps the image and text labels within samples; classifier folds are whole samples.

Results depend only on the multiset of (sample id, key) pairs and the seed, **bit for bit**: before any
arithmetic the tokens of every block are put in a canonical order (by a content hash of the key,
:func:`~bias_suite.metrics.kernel.in_canonical_order`), so float32 sums run in the same order whatever order
the tokens came in (on one device and thread chunking).

Where it runs: on the device the keys are on (CPU or CUDA), in torch. Heads (and layers) are
independent problems: on CPU they run in fixed chunks of :data:`CPU_CHUNK` heads on a pool of threads,
each thread doing single-threaded tensor work — so results are bit-identical whatever the thread count
and however many layers are computed together. On CUDA, layers are batched into large chunks; results
agree with the CPU to the tolerance stated in the tests (float32 kernel, float64 statistics).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bias_suite.errors import NonFiniteKeysError
from bias_suite.metrics import classifier, intervals, kernel, moments
from bias_suite.metrics.estimate import Estimate, bootstrap_weights, jackknife_estimate, sample_flips, with_interval
from bias_suite.metrics.layout import TokenLayout
from bias_suite.metrics.registry import ESTIMATORS, KEYSPACE_METRICS, METRICS
from bias_suite.options import DEFAULT_BOOTSTRAP

CPU_CHUNK = 4  # heads per task on CPU: fixed, so chunking never changes a result
CUDA_CHUNK = 256  # heads (over layers) per task on CUDA


@dataclass(frozen=True)
class KeySpaceConfig:
    """Estimation settings. ``n_folds`` is capped by the number of samples."""

    n_bootstrap: int = DEFAULT_BOOTSTRAP
    n_permutations: int = 200
    n_folds: int = 5
    seed: int = 0
    shrinkage: tuple[float, ...] = classifier.SHRINKAGE_GRID

    def __post_init__(self) -> None:
        if self.n_bootstrap < 1 or self.n_permutations < 1:
            raise ValueError("n_bootstrap and n_permutations must be >= 1")
        if self.n_folds < 3:
            raise ValueError(f"n_folds must be >= 3 (nested cross-validation), not {self.n_folds}")
        if not self.shrinkage or not all(0 < g <= 1 for g in self.shrinkage):
            raise ValueError(f"shrinkage values must lie in (0, 1], got {self.shrinkage}")


@dataclass(frozen=True)
class KeySpaceResult:
    """Separation of image vs text keys for one layer and one KV head (``head=None``: pooled)."""

    layer: int | None
    head: int | None
    n_samples: int
    n_image_tokens: int
    n_text_tokens: int
    metrics: Mapping[str, Estimate] = field(repr=False)
    estimators: Mapping[str, str] = field(default_factory=lambda: dict(ESTIMATORS), repr=False)


def _as_heads(keys: Tensor, name: str) -> Tensor:
    """``[n, d]`` or ``[n, H, d]`` → ``[H, n, d]``, refusing NaN/inf. Stays on its device and dtype."""
    if keys.ndim == 2:
        keys = keys[:, None, :]
    if keys.ndim != 3:
        raise ValueError(f"{name}: expected [n_tokens, head_dim] or [n_tokens, n_heads, head_dim], "
                         f"got {tuple(keys.shape)}")
    if keys.shape[0] == 0:
        raise ValueError(f"{name}: no tokens")
    if not bool(torch.isfinite(keys).all()):
        raise NonFiniteKeysError(f"{name}: contains NaN or inf values; the model's activations overflowed")
    return keys.detach().permute(1, 0, 2)


def keyspace_metrics(
    image_keys: Tensor,
    image_samples: Sequence | Tensor,
    text_keys: Tensor,
    text_samples: Sequence | Tensor,
    config: KeySpaceConfig = KeySpaceConfig(),
    layer: int | None = None,
    threads: int | None = None,
) -> tuple[KeySpaceResult, ...]:
    """Every key-space statistic of one layer, per head and pooled.

    image_keys / text_keys: ``[n_tokens, head_dim]`` or ``[n_tokens, n_kv_heads, head_dim]``, any float
    dtype, on the device to compute on; image_samples / text_samples: the sample id of each token
    (``[n_tokens]`` strings or integers). Returns one result per head, then the pooled one.
    """
    return keyspace_metrics_by_layer({layer: (image_keys, text_keys)}, image_samples, text_samples, config,
                                     threads)[layer]


def keyspace_metrics_by_layer(
    keys: Mapping[int | None, tuple[Tensor, Tensor]],
    image_samples: Sequence | Tensor,
    text_samples: Sequence | Tensor,
    config: KeySpaceConfig = KeySpaceConfig(),
    threads: int | None = None,
) -> dict[int | None, tuple[KeySpaceResult, ...]]:
    """:func:`keyspace_metrics` for several layers whose tokens are the same (same samples and rows):
    ``{layer: (image_keys, text_keys)}`` → ``{layer: results}``. All layers are computed in one batch of
    independent problems; ``threads`` (CPU only; default: torch's thread count) never changes a result."""
    layout = TokenLayout.of(image_samples, text_samples)
    if layout.n_samples < 3:
        raise ValueError(f"key-space statistics need keys from at least 3 samples, got {layout.n_samples}")
    problems = []  # (layer, [H, n, d] in block order)
    for layer, (image_keys, text_keys) in keys.items():
        image, text = _as_heads(image_keys, "image keys"), _as_heads(text_keys, "text keys")
        if image.shape[0] != text.shape[0] or image.shape[2] != text.shape[2]:
            raise ValueError(f"image keys {tuple(image_keys.shape)} and text keys {tuple(text_keys.shape)} differ "
                             "in heads or head_dim")
        if image.shape[1] != int(layout.is_image.sum()) or text.shape[1] != int((~layout.is_image).sum()):
            raise ValueError("need exactly one sample id per token for each modality")
        problems.append((layer, layout.arrange(image, text.to(image.device))))
    designs = _Designs.of(layout, config)
    per_layer = _run(problems, layout, designs, config, threads)
    counts = dict(n_samples=layout.n_samples, n_image_tokens=int(layout.is_image.sum()),
                  n_text_tokens=int((~layout.is_image).sum()))
    return {layer: _results(layer, statistics, counts) for layer, statistics in per_layer.items()}


@dataclass(frozen=True)
class _Designs:
    """The designs shared by every problem: sample weights ``[1 + B + S, S]`` — row 0 the data, then B
    bootstrap draws, then the S delete-one-sample jackknife rows — and the within-sample label flips."""

    weights: Tensor  # [1 + B + S, S] float64
    flips: Tensor  # [n_permutations, S] int64
    n_folds: int
    n_bootstrap: int

    @classmethod
    def of(cls, layout: TokenLayout, config: KeySpaceConfig) -> _Designs:
        weights = torch.cat([torch.ones(1, layout.n_samples, dtype=torch.float64),
                             bootstrap_weights(layout.n_samples, config.n_bootstrap, config.seed),
                             intervals.jackknife_weights(layout.n_samples)])
        return cls(weights, sample_flips(layout.n_samples, config.n_permutations, config.seed),
                   min(config.n_folds, layout.n_samples), config.n_bootstrap)

    @property
    def resampled(self) -> Tensor:
        """The data and the bootstrap rows ``[1 + B, S]``."""
        return self.weights[: 1 + self.n_bootstrap]

    @property
    def jackknife(self) -> Tensor:
        """The jackknife rows ``[S, S]``."""
        return self.weights[1 + self.n_bootstrap:]


def problem_statistics(keys: Tensor, layout: TokenLayout, designs: _Designs,
                       config: KeySpaceConfig) -> dict[str, Tensor]:
    """All statistics of P independent problems (heads): ``{name: [1 + B + S, P]}`` (rows as
    :class:`_Designs`; ``jsd_proj`` has NaN jackknife rows, ``jsd`` and ``auroc`` NaN bootstrap rows) plus
    ``_mmd2_null`` (``[n_permutations, P]``) and ``mmd2_pvalue`` (``[1, P]``). keys: ``[P, n, d]`` in block order,
    on the device to compute on."""
    keys = kernel.in_canonical_order(keys.float(), layout)
    centred = keys - keys.mean(1, keepdim=True)
    sigma2 = kernel.bandwidths(keys, centred, layout, config.seed)  # [1 + S, P]: the data, then each left out
    means = kernel.block_means(centred, layout, sigma2[0], kernel.shared_key_mask(keys, layout))
    mmd2 = kernel.pair_statistics(means.gaussian, layout, designs.weights, within=False)["between"]
    # mmd2 without sample s at the bandwidth re-estimated without it, linearised in σ²
    slope = kernel.pair_statistics(means.bandwidth_slope, layout, designs.jackknife, within=False)["between"]
    mmd2[1 + designs.n_bootstrap:] += slope * (sigma2[1:] - sigma2[:1])
    statistics = {"mmd2": mmd2}
    statistics["_mmd2_null"] = kernel.flipped_mmd2(means.gaussian, layout, designs.flips)
    statistics["mmd2_pvalue"] = kernel.permutation_pvalue(mmd2[0], statistics["_mmd2_null"])[None]
    energy = kernel.pair_statistics(means.energy, layout, designs.weights)
    statistics.update({name: energy[name] for name in ("intra_image", "intra_text", "inter")})

    block_moments = moments.BlockMoments.of(keys, layout)
    statistics.update(moments.moment_statistics(block_moments, designs.weights))
    histograms = moments.projection_histograms(keys, layout, block_moments)
    undefined = torch.full((layout.n_samples, keys.shape[0]), float("nan"), dtype=torch.float64, device=keys.device)
    statistics["jsd_proj"] = torch.cat([moments.projected_jsd(histograms, layout, designs.resampled), undefined])

    # jsd and auroc: the data, then the refit jackknife; no bootstrap rows (their interval refits the classifier,
    # and replicates that hold its logits fixed would pair with nothing)
    fit = classifier.nested_fit(keys, layout, block_moments, designs.n_folds, config.seed, config.shrinkage)
    logits = fit.logits[0]
    bits = classifier.heldout_bits(logits, layout.is_image)
    jsd_jackknife, auroc_jackknife = classifier.refit_jackknife(keys, layout, block_moments, designs.n_folds,
                                                                config.seed, config.shrinkage, full=fit)
    data = designs.weights[:1]
    no_bootstrap = torch.full((designs.n_bootstrap, keys.shape[0]), float("nan"), dtype=torch.float64,
                              device=keys.device)
    statistics["jsd"] = torch.cat([classifier.jsd_bound(bits, layout, data), no_bootstrap, jsd_jackknife])
    statistics["auroc"] = torch.cat([classifier.auroc(logits, layout, data), no_bootstrap, auroc_jackknife])
    return statistics


def ratio_of(inter: Tensor, intra: Tensor) -> Tensor:
    """``ratio`` = inter ÷ pooled intra, +inf where the pooled intra is not positive (no measurable
    between-sample variation: the ratio is unbounded above)."""
    ratio = inter.clamp_min(0) / intra
    return torch.where(intra > 0, ratio, torch.full_like(ratio, float("inf")))


def _run(problems: list[tuple[int | None, Tensor]], layout: TokenLayout, designs: _Designs, config: KeySpaceConfig,
         threads: int | None) -> dict[int | None, dict[str, Tensor]]:
    """Statistics of every layer, ``{layer: {name: [R, H]}}`` on the CPU."""
    device = problems[0][1].device
    if device.type == "cpu":
        tasks = [(layer, keys[start:start + CPU_CHUNK]) for layer, keys in problems
                 for start in range(0, keys.shape[0], CPU_CHUNK)]
        workers = max(1, min(len(tasks), threads or torch.get_num_threads(), os.cpu_count() or 1))
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                outputs = list(pool.map(lambda task: problem_statistics(task[1], layout, designs, config), tasks))
        finally:
            torch.set_num_threads(previous)
        chunks = [(layer, output) for (layer, _), output in zip(tasks, outputs)]
    else:
        stacked = torch.cat([keys for _, keys in problems])
        owners = [layer for layer, keys in problems for _ in range(keys.shape[0])]
        chunks = []
        for start in range(0, stacked.shape[0], CUDA_CHUNK):
            output = problem_statistics(stacked[start:start + CUDA_CHUNK], layout, designs, config)
            chunks.extend(_split_by_layer(output, owners[start:start + CUDA_CHUNK]))
    per_layer: dict[int | None, dict[str, list[Tensor]]] = {}
    for layer, output in chunks:
        for name, value in output.items():
            per_layer.setdefault(layer, {}).setdefault(name, []).append(value.cpu())
    return {layer: {name: torch.cat(parts, dim=1) for name, parts in named.items()}
            for layer, named in per_layer.items()}


def _split_by_layer(output: dict[str, Tensor], owners: list) -> list[tuple[object, dict[str, Tensor]]]:
    pieces, start = [], 0
    while start < len(owners):
        stop = start
        while stop < len(owners) and owners[stop] == owners[start]:
            stop += 1
        pieces.append((owners[start], {name: value[:, start:stop] for name, value in output.items()}))
        start = stop
    return pieces


# How each key-space metric's interval is made: (method, scale); the rest get the percentile bootstrap.
JACKKNIFED = {
    "jsd": (intervals.REFIT_JACKKNIFE_T, None),
    "auroc": (intervals.REFIT_JACKKNIFE_T_LOGIT, "logit"),
    "mmd2": (intervals.BANDWIDTH_JACKKNIFE_T, None),
    "intra_image": (intervals.JACKKNIFE_T, None),
    "intra_text": (intervals.JACKKNIFE_T, None),
    "inter": (intervals.JACKKNIFE_T, None),
    "ratio": (intervals.JACKKNIFE_T_LOG, "log"),
    "centroid_cosine": (intervals.JACKKNIFE_T, None),
    "norm_ratio": (intervals.JACKKNIFE_T_LOG, "log"),
}
NO_REFIT = ("no interval: refitting the nested cross-validation without a sample leaves a training set without "
            "one modality (at least 4 samples are needed; a gated row needs 8)")
NO_VARIATION = (
    "no between-sample variation detectable: the pooled intra term ½(intra_image + intra_text) = {value:.3g} "
    "[{low:.3g}, {high:.3g}] is not significantly positive, so inter ÷ intra is unbounded (the keys of "
    "different samples are as alike as keys of one sample)"
)


def _results(layer: int | None, statistics: dict[str, Tensor], counts: dict) -> tuple[KeySpaceResult, ...]:
    n_heads = statistics["mmd2"].shape[1]
    n_samples = counts["n_samples"]
    results = []
    for head in [*range(n_heads), None]:
        pooled = head is None

        def column(name: str, head: int | None = head) -> Tensor:
            values = statistics[name]
            return values.nanmean(-1) if head is None else values[:, head]  # pooled: heads where defined

        metrics = {}
        for name in KEYSPACE_METRICS:
            if name in ("mmd2_pvalue", "ratio"):
                continue
            values = column(name)
            data, bootstrap, jackknife = values[0], values[1:-n_samples], values[-n_samples:]
            if name in JACKKNIFED:
                method, scale = JACKKNIFED[name]
                kept = bootstrap if bool(torch.isfinite(bootstrap).any()) else None
                why = NO_REFIT if name in ("jsd", "auroc") and not bool(torch.isfinite(jackknife).all()) else None
                metrics[name] = jackknife_estimate(data, jackknife, METRICS[name].range, scale, method, kept,
                                                   keep=pooled, undefined_because=why)
            else:
                metrics[name] = with_interval(data, bootstrap, bounds=METRICS[name].range, keep_replicates=pooled,
                                              n_samples=n_samples)
        metrics["ratio"] = _ratio(column("inter"), 0.5 * (column("intra_image") + column("intra_text")),
                                  n_samples, pooled)
        if pooled:
            observed = statistics["mmd2"][0].mean()[None]
            null = statistics["_mmd2_null"].mean(-1, keepdim=True)
            metrics["mmd2_pvalue"] = Estimate(float(kernel.permutation_pvalue(observed, null)[0]))
        else:
            metrics["mmd2_pvalue"] = Estimate(float(statistics["mmd2_pvalue"][0, head]))
        results.append(KeySpaceResult(layer, head, metrics={name: metrics[name] for name in KEYSPACE_METRICS},
                                      **counts))
    return tuple(results)


def _ratio(inter: Tensor, intra: Tensor, n_samples: int, keep: bool) -> Estimate:
    """``ratio`` from the rows of its terms: undefined (with the reason) when the pooled intra term is not
    significantly positive (its jackknife-t interval reaches 0), else a jackknife-t interval on the log scale."""
    denominator = jackknife_estimate(intra[0], intra[-n_samples:])
    if not denominator.ci_low > 0:  # also NaN
        return Estimate(float("nan"), float("nan"), float("nan"), undefined_because=NO_VARIATION.format(
            value=denominator.value, low=denominator.ci_low, high=denominator.ci_high),
            interval=intervals.JACKKNIFE_T_LOG, n_samples=n_samples)
    ratio = ratio_of(inter, intra)
    method, scale = JACKKNIFED["ratio"]
    return jackknife_estimate(ratio[0], ratio[-n_samples:], METRICS["ratio"].range, scale, method,
                              ratio[1:-n_samples], keep=keep)
