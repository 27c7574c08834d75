"""One entry per metric: what it measures, which way is worse, its range, its estimator, and whether a
threshold rule may gate on it.

The gate, the threshold files, the report card and the README all read these entries (like
lm-evaluation-harness's metric registry), so a metric's facts live in exactly one place.

*Gateable* metrics estimate a population quantity with a range a real change can cross. Of those,
*size-invariant* ones have an expected value that depends neither on ``--samples`` nor on the token
cap, so a bound made at one size gates a run at another; the others (held-out classifier bounds improve
with training data) may only gate runs made with the settings the bound was made with. Metrics that
are inherently size-dependent (plug-in histograms, Fréchet covariances, p-values) are reported, never
gated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bias_suite.metrics.classifier import AUROC_ESTIMATOR, JSD_ESTIMATOR
from bias_suite.metrics.kernel import MMD_ESTIMATOR
from bias_suite.metrics.moments import FRECHET_ESTIMATOR, JSD_PROJ_ESTIMATOR
from bias_suite.options import MIN_GATED_SAMPLES  # noqa: F401  (a statistical fact the gate reads from here)

HIGHER_IS_WORSE = "higher_is_worse"
LOWER_IS_WORSE = "lower_is_worse"
DIRECTIONS = (HIGHER_IS_WORSE, LOWER_IS_WORSE)
KEYSPACE, ATTENTION, BEHAVIOUR = "keyspace", "attention", "behaviour"
QUERY_SETS = ("last", "question", "answer")


@dataclass(frozen=True)
class MetricSpec:
    """The facts of one metric. ``direction`` is None for descriptive metrics (no "worse")."""

    name: str
    family: str  # keyspace, attention or behaviour
    summary: str  # one line: what it is
    estimator: str  # how it is computed (recorded with every result)
    direction: str | None
    low: float  # natural range
    high: float
    gateable: bool
    size_invariant: bool  # expected value independent of --samples and the token cap
    tolerance: float | None = None  # default tolerance of a paired change, in the worse direction, in its units

    @property
    def range(self) -> tuple[float, float]:
        return (self.low, self.high)

    def worse_arrow(self) -> str:
        return {HIGHER_IS_WORSE: "↑ worse", LOWER_IS_WORSE: "↓ worse", None: ""}[self.direction]


def _spec(name, family, summary, estimator, direction, low, high, gateable, size_invariant=True,
          tolerance=None) -> MetricSpec:
    if gateable and tolerance is None:
        raise ValueError(f"{name}: a gateable metric needs a default tolerance for paired changes")
    return MetricSpec(name, family, summary, estimator, direction, low, high, gateable, size_invariant, tolerance)


_INF = math.inf
_KEYSPACE = (
    _spec("jsd", KEYSPACE, "Jensen-Shannon divergence (bits) of image vs text pre-RoPE keys, a held-out lower bound",
          JSD_ESTIMATOR, HIGHER_IS_WORSE, 0.0, 1.0, gateable=True, size_invariant=False, tolerance=0.05),
    _spec("jsd_proj", KEYSPACE, "JS (bits) of the keys' histograms on their top-2 principal components, bias-corrected",
          JSD_PROJ_ESTIMATOR, HIGHER_IS_WORSE, 0.0, 1.0, gateable=False, size_invariant=False),
    _spec("auroc", KEYSPACE, "held-out separability of image vs text keys (0.5 = indistinguishable)",
          AUROC_ESTIMATOR, HIGHER_IS_WORSE, 0.0, 1.0, gateable=True, size_invariant=False, tolerance=0.05),
    _spec("mmd2", KEYSPACE, "squared MMD between the image-key and text-key distributions",
          MMD_ESTIMATOR, HIGHER_IS_WORSE, -2.0, 2.0, gateable=True, tolerance=0.05),
    _spec("mmd2_pvalue", KEYSPACE, "permutation p-value of mmd2 (image/text labels swapped within samples)",
          "(1 + #{null ≥ observed}) / (1 + n_permutations), labels swapped within samples", None, 0.0, 1.0,
          gateable=False, size_invariant=False),
    _spec("intra_image", KEYSPACE, "mean MMD² between the image keys of two different samples",
          "2 (W_I − K_II): within-block minus across-sample kernel means, same kernel as mmd2", None, -_INF, _INF,
          gateable=False),
    _spec("intra_text", KEYSPACE, "mean MMD² between the text keys of two different samples",
          "2 (W_T − K_TT), same kernel as mmd2", None, -_INF, _INF, gateable=False),
    _spec("inter", KEYSPACE, "mean MMD² between the image keys of one sample and the text keys of another",
          "W_I + W_T − 2 K_IT, same kernel as mmd2", None, -_INF, _INF, gateable=False),
    _spec("ratio", KEYSPACE, "inter ÷ max(intra_image, intra_text): 1 when the modalities are exchangeable",
          "ratio of U-statistic means over pairs of distinct samples (a population quantity), the denominator "
          "at least inter / 1000, so at most 1000; NaN when the modalities neither vary nor differ",
          HIGHER_IS_WORSE, 0.0, 1000.0, gateable=True, tolerance=0.5),
    _spec("centroid_cosine", KEYSPACE, "cosine of the mean image key and the mean text key",
          "cosine of the class means from per-sample mean keys, every dot product averaged over pairs of "
          "distinct samples (no noise-squared inflation of the norms)", LOWER_IS_WORSE, -1.0, 1.0, gateable=True,
          tolerance=0.05),
    _spec("norm_ratio", KEYSPACE, "mean |k| of image keys ÷ mean |k| of text keys",
          "ratio of token-weighted mean norms", LOWER_IS_WORSE, 0.0, _INF, gateable=True, tolerance=0.05),
    _spec("frechet", KEYSPACE, "Fréchet distance between Gaussian fits of image and text keys",
          FRECHET_ESTIMATOR, HIGHER_IS_WORSE, 0.0, _INF, gateable=False, size_invariant=False),
    _spec("frechet_mean_share", KEYSPACE, "share of the Fréchet distance due to the means",
          FRECHET_ESTIMATOR, None, 0.0, 1.0, gateable=False, size_invariant=False),
)
_ATTENTION = (
    _spec("visual_share", ATTENTION, "attention mass on image keys, mean over query rows and heads",
          "softmax of post-RoPE q·k (float32, model's mask), mean over rows, query heads and samples",
          LOWER_IS_WORSE, 0.0, 1.0, gateable=True, tolerance=0.05),
    _spec("visual_share_norm", ATTENTION, "visual_share ÷ (visible image keys / visible keys); 1 = proportional",
          "per row: share ÷ image fraction of the visible keys; mean over rows, heads, samples",
          LOWER_IS_WORSE, 0.0, _INF, gateable=True, tolerance=0.1),
    _spec("visual_share_nosink", ATTENTION, "visual_share with attention sinks removed and rows renormalised",
          "sinks: the first token and tokens whose input max|h| exceeds 20 × the median of their modality",
          LOWER_IS_WORSE, 0.0, 1.0, gateable=True, tolerance=0.05),
    _spec("logit_gap", ATTENTION, "mean scaled q·k to visible text keys − to visible image keys",
          "mean over rows, heads and samples of the difference of mean logits", HIGHER_IS_WORSE, -_INF, _INF,
          gateable=True, tolerance=0.1),
    _spec("visual_heads_fraction", ATTENTION, "fraction of query heads whose mean visual share exceeds 0.2",
          "per head mean share over rows and samples, thresholded", LOWER_IS_WORSE, 0.0, 1.0, gateable=True,
          tolerance=0.1),
)
_BEHAVIOUR = (
    _spec("text_preference_rate", BEHAVIOUR, "fraction of conflict samples where the caption's answer wins",
          "teacher-forced answer log-likelihood, caption-implied vs image-true answer; ties follow the image",
          HIGHER_IS_WORSE, 0.0, 1.0, gateable=True, tolerance=0.1),
)

METRICS: Mapping[str, MetricSpec] = {spec.name: spec for spec in (*_KEYSPACE, *_ATTENTION, *_BEHAVIOUR)}
KEYSPACE_METRICS = tuple(spec.name for spec in _KEYSPACE)
ATTENTION_METRICS = tuple(spec.name for spec in _ATTENTION)
BEHAVIOUR_METRICS = tuple(spec.name for spec in _BEHAVIOUR)
ESTIMATORS: Mapping[str, str] = {spec.name: spec.estimator for spec in _KEYSPACE}


def metric_names() -> tuple[str, ...]:
    """Every name a result row or a rule may carry (attention metrics with their query set)."""
    return (*KEYSPACE_METRICS, *(f"{name}.{query}" for name in ATTENTION_METRICS for query in QUERY_SETS),
            *BEHAVIOUR_METRICS)


def spec_of(metric: str) -> MetricSpec:
    """The spec behind a row's metric name (``visual_share.question`` → ``visual_share``)."""
    base, _, query_set = metric.partition(".")
    spec = METRICS.get(base)
    if spec is None or (spec.family == ATTENTION) != bool(query_set) or (query_set and query_set not in QUERY_SETS):
        raise KeyError(f"unknown metric {metric!r}; known: {', '.join(metric_names())}")
    return spec
