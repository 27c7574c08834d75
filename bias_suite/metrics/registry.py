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

from bias_suite.metrics import intervals
from bias_suite.metrics.classifier import AUROC_ESTIMATOR, JSD_ESTIMATOR
from bias_suite.metrics.kernel import MMD_ESTIMATOR
from bias_suite.metrics.moments import FRECHET_ESTIMATOR, JSD_PROJ_ESTIMATOR
from bias_suite.options import ESTIMATOR_VERSION, MIN_GATED_SAMPLES  # noqa: F401  (statistical facts the gate reads)

HIGHER_IS_WORSE = "higher_is_worse"
LOWER_IS_WORSE = "lower_is_worse"
DIRECTIONS = (HIGHER_IS_WORSE, LOWER_IS_WORSE)
KEYSPACE, ATTENTION, BEHAVIOUR, COUPLING = "keyspace", "attention", "behaviour", "coupling"
QUERY_SETS = ("last", "question", "answer")


@dataclass(frozen=True)
class MetricSpec:
    """The facts of one metric. ``direction`` is None for descriptive metrics (no "worse")."""

    name: str
    family: str  # keyspace, attention, behaviour or coupling
    summary: str  # one line: what it is
    estimator: str  # how it is computed (recorded with every result)
    direction: str | None
    low: float  # natural range
    high: float
    gateable: bool
    size_invariant: bool  # expected value independent of --samples and the token cap
    tolerance: float | None = None  # default tolerance of a paired change, in the worse direction, in its units
    reported_because: str = ""  # why a metric that is not gateable is only reported, when not the default reasons
    interval: str = ""  # how its 95 % interval over samples is made (recorded with every estimate as well)

    @property
    def range(self) -> tuple[float, float]:
        return (self.low, self.high)

    def worse_arrow(self) -> str:
        return {HIGHER_IS_WORSE: "↑ worse", LOWER_IS_WORSE: "↓ worse", None: ""}[self.direction]


def _spec(name, family, summary, estimator, direction, low, high, gateable, size_invariant=True,
          tolerance=None, reported_because="", interval=None) -> MetricSpec:
    if gateable and tolerance is None:
        raise ValueError(f"{name}: a gateable metric needs a default tolerance for paired changes")
    interval = interval or INTERVALS.get(name) or _FAMILY_INTERVALS.get(family, intervals.PERCENTILE)
    return MetricSpec(name, family, summary, estimator, direction, low, high, gateable, size_invariant, tolerance,
                      reported_because, interval)


_JACKKNIFE = "delete-one-sample jackknife-t, t with S − 1 degrees of freedom"
_MEAN = ("bootstrap-t of the mean over samples (studentised, ≥ 1000 replicates; Student's t with fewer); "
         "samples without a value left out")
INTERVALS = {
    "jsd": f"{intervals.REFIT_JACKKNIFE_T}: the nested cross-validation refitted without each sample (S refits, "
           "same folds), t with S − 1 degrees of freedom",
    "auroc": f"{intervals.REFIT_JACKKNIFE_T} on logit(auroc): the nested cross-validation refitted without each "
             "sample, t with S − 1 degrees of freedom",
    "mmd2": f"{_JACKKNIFE}, the bandwidth re-estimated without each sample (linearised in σ²)",
    "intra_image": _JACKKNIFE,
    "intra_text": _JACKKNIFE,
    "inter": _JACKKNIFE,
    "ratio": f"{_JACKKNIFE} on log(ratio); undefined (an error under a rule) when the pooled intra term's "
             "jackknife-t interval reaches 0",
    "centroid_cosine": _JACKKNIFE,
    "norm_ratio": f"{_JACKKNIFE} on log(norm_ratio)",
    "mmd2_pvalue": "none (a p-value)",
    "jsd_proj": f"{intervals.PERCENTILE} over samples (median-shifted)",
    "frechet": f"{intervals.PERCENTILE} over samples (median-shifted), cross term linearised",
    "frechet_mean_share": f"{intervals.PERCENTILE} over samples (median-shifted)",
    "visual_heads_fraction": "bracket of per-head t-intervals at level 1 − 0.05/H (Bonferroni over the H query "
                             "heads): heads whose interval lies above 0.2, heads whose interval reaches above it",
}
_FAMILY_INTERVALS = {
    "attention": _MEAN,
    "coupling": f"{intervals.PERCENTILE} of a cluster bootstrap over item ids",
}
_RATE_INTERVAL = f"{intervals.CLOPPER_PEARSON} (exact binomial) over the items counted"
_ITEM_INTERVAL = "bootstrap-t of the mean over items (Student's t below 1000 replicates)"
_SCORE_INTERVAL = "delete-one-item jackknife-t of the score"


_INF = math.inf
_ENERGY_TERMS = (
    "energy-distance kernel −|x − y| (no bandwidth): K_AB = mean over pairs of distinct samples of the mean "
    "kernel between their blocks, W_A = the within-block term (template keys, bit-identical in ≥ 2 samples, "
    "kept as fixed atoms: Σ_{i≠j} k + m_v · U_vv over m² per block)"
)
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
    _spec("intra_image", KEYSPACE, "mean energy distance between the image keys of two different samples",
          _ENERGY_TERMS + "; intra_image = 2 (W_I − K_II)", None, -_INF, _INF, gateable=False),
    _spec("intra_text", KEYSPACE, "mean energy distance between the text keys of two different samples",
          _ENERGY_TERMS + "; intra_text = 2 (W_T − K_TT)", None, -_INF, _INF, gateable=False),
    _spec("inter", KEYSPACE, "mean energy distance between the image keys of one sample and the text keys of another",
          _ENERGY_TERMS + "; inter = W_I + W_T − 2 K_IT", None, -_INF, _INF, gateable=False),
    _spec("ratio", KEYSPACE, "inter ÷ ½(intra_image + intra_text) (energy distance): 1 when the modalities are "
          "exchangeable, growing with the distance between them",
          "inter ÷ ½(intra_image + intra_text) of the energy-distance terms (no cap; pooled over KV heads: the "
          "ratio of the heads' mean terms); undefined when the pooled intra term is not significantly positive",
          HIGHER_IS_WORSE, 0.0, _INF, gateable=True, tolerance=0.1),
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
    _spec("visual_log_odds", ATTENTION, "visual share adjusted for the image-token count: log of the mean attention "
          "one image key gets ÷ one text key (nats; 0 = in proportion to token count)",
          "per row log(non-sink image mass ÷ non-sink text mass) − log(non-sink image keys ÷ non-sink text keys); "
          "mean over rows, heads and samples; unchanged by the number of image tokens when image keys are "
          "exchangeable", LOWER_IS_WORSE, -_INF, _INF, gateable=True, tolerance=0.1),
    _spec("sink_mass", ATTENTION, "attention mass on sink keys (the first token and massive activations of "
          "either modality)", "per row Σ attention on sinks (input max|h| > 20 × its modality's median), mean over "
          "rows, heads and samples", None, 0.0, 1.0, gateable=True, tolerance=0.05),
    _spec("visual_sink_mass", ATTENTION, "attention mass on image sink keys (massive activations among image tokens)",
          "per row Σ attention on image sinks, mean over rows, heads and samples", None, 0.0, 1.0, gateable=True,
          tolerance=0.05),
)
_RATE = "rate_estimate over the items (ties go to the first candidate, which never favours the answer)"
_QUALIFIED = ("rate_estimate over the qualified items only; undefined (NaN, 'n of N items qualified') when fewer "
              "than 10 qualify")
_ITEM_BOOTSTRAP = "over items, replicates kept"
_STAGE = "a VLind stage (diagnostic): gate language_prior_rate or prior_adherence_rate"
_PERCEPTION = "perception without any text pressure, a control: it says whether the model sees, not its text bias"
_SUBSET = "a quarter of the pairs: a handful at the default --samples, read it beside paired_accuracy"


def _behaviour(name, summary, estimator, direction, gateable=True, low=0.0, high=1.0, reported_because="",
               tolerance=0.1, interval=None):
    """A behaviour metric: a rate or a score in [0, 1] unless said, a paired change of 0.1 tolerated; its
    interval Clopper–Pearson when it is a rate (``rate_estimate``), else as given."""
    if interval is None:
        interval = _RATE_INTERVAL if "rate_estimate" in estimator else _SCORE_INTERVAL
        if "rate_estimate" in estimator and _ITEM_BOOTSTRAP in estimator:
            interval += "; VLind files: " + _ITEM_INTERVAL
    return _spec(name, BEHAVIOUR, summary, estimator, direction, low, high, gateable,
                 tolerance=tolerance if gateable else None, reported_because=reported_because, interval=interval)


_BEHAVIOUR = (
    _behaviour("text_preference_rate", "fraction of conflict samples where the caption's answer wins",
               "teacher-forced answer log-likelihood, caption-implied vs image-true answer; ties follow the image",
               HIGHER_IS_WORSE),
    # language-prior (built-in, model-relative) and VLind-Bench files
    _behaviour("prior_adherence_rate", "language-prior: how often the model keeps its own blank-canvas answer when "
               "the image shows another colour (qualified: perception passes and the image's colour is not that "
               "answer)", _QUALIFIED, HIGHER_IS_WORSE),
    _behaviour("language_prior_rate", "VLind's language-prior score: 1 − the LP pass share over items passing "
               "knowledge, perception and commonsense bias (CK ∧ VP ∧ CB)", _QUALIFIED + "; VLind files: the mean "
               "over items of the failing share of their good images, " + _ITEM_BOOTSTRAP, HIGHER_IS_WORSE),
    _behaviour("language_prior_rate_kp", "language_prior_rate qualified by knowledge and perception only (CK ∧ VP)",
               _QUALIFIED, HIGHER_IS_WORSE),
    _behaviour("ck_pass_rate", "VLind stage CK: the commonsense is known from text alone", _RATE, LOWER_IS_WORSE,
               gateable=False, reported_because=_STAGE),
    _behaviour("vp_pass_rate", "VLind stage VP: the counterfactual image is perceived", _RATE, LOWER_IS_WORSE,
               gateable=False, reported_because=_STAGE),
    _behaviour("cb_pass_rate", "VLind stage CB: a context that states the counterfactual is followed (over CK "
               "passes)", _QUALIFIED, LOWER_IS_WORSE, gateable=False, reported_because=_STAGE),
    _behaviour("image_sensitivity_rate", "language-prior: how often the answer changes between the counterfactual "
               "and the factual image (0: image-blind)", _RATE, LOWER_IS_WORSE),
    # conflict-levels (built-in) and V-FAT files
    _behaviour("l0_accuracy", "conflict-levels L0: typical image, neutral question", _RATE, LOWER_IS_WORSE,
               gateable=False, reported_because=_PERCEPTION),
    _behaviour("l1_accuracy", "V-FAT L1 (atypical image, neutral question): accuracy", _RATE, LOWER_IS_WORSE),
    _behaviour("l2_accuracy", "V-FAT L2 (misleading instruction): accuracy", _RATE, LOWER_IS_WORSE),
    _behaviour("l3_accuracy", "V-FAT L3 (atypical image and misleading instruction): accuracy", _RATE, LOWER_IS_WORSE),
    _behaviour("l1_trap_rate", "V-FAT L1: share of answers equal to the prior's (textual dominance)", _RATE,
               HIGHER_IS_WORSE),
    _behaviour("l2_trap_rate", "V-FAT L2: share of answers equal to the instruction's", _RATE, HIGHER_IS_WORSE),
    _behaviour("l3_trap_rate", "V-FAT L3: share of answers equal to the prior's and instruction's", _RATE,
               HIGHER_IS_WORSE),
    _behaviour("visual_robustness_score", "V-FAT's VRS (reconstructed): per level the harmonic mean of accuracy and "
               "1 − trap rate, averaged over L1–L3; lucky guesses that follow the text earn nothing",
               "2·acc·(1 − trap) ÷ (acc + 1 − trap) per level, mean over the levels present; " + _ITEM_BOOTSTRAP,
               LOWER_IS_WORSE),
    _behaviour("layout_consistent_accuracy", "conflict-levels: share of layouts answered right at all four levels "
               "(an image-blind model scores 0)", _RATE, LOWER_IS_WORSE),
    # caption-variants (built-in) and caption-variant files
    _behaviour("none_accuracy", "caption-variants: accuracy on the question alone", _RATE, LOWER_IS_WORSE,
               gateable=False, reported_because=_PERCEPTION),
    _behaviour("matching_accuracy", "caption-variants: accuracy after a true, relevant caption", _RATE,
               LOWER_IS_WORSE),
    _behaviour("corrupted_accuracy", "caption-variants: accuracy after a false, relevant caption", _RATE,
               LOWER_IS_WORSE),
    _behaviour("irrelevant_accuracy", "caption-variants: accuracy after a true caption about something else",
               _RATE, LOWER_IS_WORSE),
    _behaviour("caption_following_rate", "caption-variants: how often the corrupted caption's answer out-scores the "
               "image's (comparable with text_preference_rate)",
               "two-way teacher-forced log-likelihood, ties follow the image; " + _RATE, HIGHER_IS_WORSE),
    _behaviour("seeing_caption_following_rate", "caption_following_rate over items the model answers right without "
               "a caption (qualified: it sees the answer)", _QUALIFIED, HIGHER_IS_WORSE),
    _behaviour("matching_text_preference_rate", "Words or Vision's text preference, matching captions: where the "
               "text-only and image-only answers differ, how often the captioned answer is the text-only one",
               _QUALIFIED.replace("qualified items", "items whose text-only and image-only answers differ"),
               HIGHER_IS_WORSE),
    _behaviour("corrupted_text_preference_rate", "Words or Vision's text preference, corrupted captions",
               _QUALIFIED.replace("qualified items", "items whose text-only and image-only answers differ"),
               HIGHER_IS_WORSE),
    _behaviour("irrelevant_text_preference_rate", "Words or Vision's text preference, irrelevant captions",
               _QUALIFIED.replace("qualified items", "items whose text-only and image-only answers differ"),
               HIGHER_IS_WORSE),
    # paired-images (built-in) and MMVP folders
    _behaviour("paired_accuracy", "MMVP's score: share of pairs whose two images are both answered right "
               "(image-blind: 0, coin flips: 0.25)", _RATE, LOWER_IS_WORSE),
    _behaviour("same_answer_rate", "share of pairs given the same answer for both images (image-blind: 1)", _RATE,
               HIGHER_IS_WORSE),
    _behaviour("member_accuracy", "accuracy per image of the pairs", "mean over pairs of the pair's share right; "
               + _ITEM_BOOTSTRAP, LOWER_IS_WORSE,
               interval="Clopper–Pearson over the pairs' answers at the effective sample size (Korn–Graubard: the "
               "two answers of a pair may be correlated)"),
    _behaviour("pairing_gap", "member_accuracy − paired_accuracy: how much per-image accuracy overstates what is "
               "seen", "½ × the share of pairs with exactly one image right, " + _ITEM_BOOTSTRAP, HIGHER_IS_WORSE,
               low=-1.0, high=1.0, interval="½ × Clopper–Pearson of the pairs with exactly one image right"),
    *(_behaviour(f"{attribute}_paired_accuracy",
                 f"paired_accuracy of the pairs that differ in {attribute.replace('_', ' ')}", _RATE, LOWER_IS_WORSE,
                 gateable=False, reported_because=_SUBSET)
      for attribute in ("colour", "position", "count", "kind_count")),
)
COUPLING_MEASURES = ("visual_share", "visual_share_nosink", "logit_gap", "key_distance")
# gateable only where the interval's coverage was measured at ≥ 0.90 (tests/metrics/test_coupling.py)
COUPLING_COVERAGE_OK = True
_COUPLING = tuple(
    _spec(f"{measure}_coupling", COUPLING, f"Spearman rank correlation over samples between each sample's {measure} "
          "(question rows) and its probe answer's margin (nats the image-true answer wins by)",
          "Spearman ρ of average ranks; percentile interval of a cluster bootstrap over item ids "
          "(bias_suite.metrics.coupling), replicates kept", None, -1.0, 1.0, gateable=COUPLING_COVERAGE_OK,
          tolerance=0.2 if COUPLING_COVERAGE_OK else None,
          reported_because="" if COUPLING_COVERAGE_OK else "its bootstrap interval covered the true value less than "
          "90% of the time on synthetic data")
    for measure in COUPLING_MEASURES)

METRICS: Mapping[str, MetricSpec] = {spec.name: spec for spec in (*_KEYSPACE, *_ATTENTION, *_BEHAVIOUR, *_COUPLING)}
KEYSPACE_METRICS = tuple(spec.name for spec in _KEYSPACE)
ATTENTION_METRICS = tuple(spec.name for spec in _ATTENTION)
BEHAVIOUR_METRICS = tuple(spec.name for spec in _BEHAVIOUR)
COUPLING_METRICS = tuple(spec.name for spec in _COUPLING)
ESTIMATORS: Mapping[str, str] = {spec.name: spec.estimator for spec in _KEYSPACE}


def metric_names() -> tuple[str, ...]:
    """Every name a result row or a rule may carry (attention metrics with their query set)."""
    return (*KEYSPACE_METRICS, *(f"{name}.{query}" for name in ATTENTION_METRICS for query in QUERY_SETS),
            *BEHAVIOUR_METRICS, *COUPLING_METRICS)


def spec_of(metric: str) -> MetricSpec:
    """The spec behind a row's metric name (``visual_share.question`` → ``visual_share``)."""
    base, _, query_set = metric.partition(".")
    spec = METRICS.get(base)
    if spec is None or (spec.family == ATTENTION) != bool(query_set) or (query_set and query_set not in QUERY_SETS):
        raise KeyError(f"unknown metric {metric!r}; known: {', '.join(metric_names())}")
    return spec
