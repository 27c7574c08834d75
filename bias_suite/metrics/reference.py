"""A straightforward scikit-learn / scipy / numpy implementation of the key-space statistics.

Same definitions as :mod:`bias_suite.metrics.keyspace` (same folds, bootstrap draws, label swaps and
bandwidth subsample), written the obvious way: one head at a time, scikit-learn's
``LinearDiscriminantAnalysis`` and ``LogisticRegression`` for every fit — the refit jackknife of ``jsd`` and
``auroc`` literally refits the nested cross-validation on the data without each sample —, scipy ``cdist`` for
the kernels in float64, the bandwidth of each jackknife row recomputed from the data without the sample,
template keys found by comparing keys byte for byte, ``scipy.linalg.sqrtm`` for the Fréchet terms,
``numpy.histogram2d`` for the projection, a Python loop over every replicate and permutation, and the
intervals (jackknife-t, percentile) from scipy's t quantiles. It exists to check the fast implementation
(tests, ``python -m bias_suite bench``), not to be used.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import scipy.linalg
import scipy.stats
import torch
from scipy.spatial.distance import cdist, jensenshannon
from scipy.special import log_expit
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from bias_suite.metrics import classifier, kernel, moments
from bias_suite.metrics.estimate import Estimate, bootstrap_weights, sample_flips, with_interval
from bias_suite.metrics.keyspace import KeySpaceConfig
from bias_suite.metrics.layout import TokenLayout
from bias_suite.metrics.registry import KEYSPACE_METRICS, METRICS

JACKKNIFED = {"jsd": None, "auroc": "logit", "mmd2": None, "intra_image": None, "intra_text": None, "inter": None,
              "centroid_cosine": None, "norm_ratio": "log"}


def reference_keyspace_metrics(image_keys, image_samples, text_keys, text_samples,
                               config: KeySpaceConfig | None = None) -> list[dict[str, Estimate]]:
    """Per-head and pooled ``{metric: Estimate}`` dicts (same order as ``keyspace_metrics``). BLAS runs on one
    thread: its small solves on a busy machine are hundreds of times slower with several."""
    with threadpool_limits(limits=1):
        return _reference(image_keys, image_samples, text_keys, text_samples, config)


def _reference(image_keys, image_samples, text_keys, text_samples, config: KeySpaceConfig | None):
    config = config if config is not None else KeySpaceConfig()
    layout = TokenLayout.of(image_samples, text_samples)
    image = np.asarray(image_keys, dtype=np.float64).reshape(image_keys.shape[0], -1, image_keys.shape[-1])
    text = np.asarray(text_keys, dtype=np.float64).reshape(text_keys.shape[0], -1, text_keys.shape[-1])
    pooled = np.concatenate([image, text])[layout.order.numpy()]  # [n, H, d], block order
    n_samples = layout.n_samples
    jackknife = 1.0 - np.eye(n_samples)  # row s: sample s left out
    weights = np.concatenate([np.ones((1, n_samples)),
                              bootstrap_weights(n_samples, config.n_bootstrap, config.seed).numpy(), jackknife])
    flips = sample_flips(n_samples, config.n_permutations, config.seed).numpy()
    per_head = [_one_head(pooled[:, h], layout, weights, flips, config) for h in range(pooled.shape[1])]
    results = []
    for head in [*range(len(per_head)), None]:
        def column(name, head=head):
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a metric undefined in every head stays NaN
                return np.nanmean([p[name] for p in per_head], axis=0) if head is None else per_head[head][name]

        metrics = {}
        for name in KEYSPACE_METRICS:
            if name in ("mmd2_pvalue", "ratio"):
                continue
            values = column(name)
            if name in JACKKNIFED:
                metrics[name] = _jackknife_estimate(values[0], values[-n_samples:], METRICS[name].range,
                                                    JACKKNIFED[name])
            else:
                metrics[name] = with_interval(values[0], torch.from_numpy(np.asarray(values[1:-n_samples])),
                                              bounds=METRICS[name].range)
        inter, intra = column("inter"), 0.5 * (column("intra_image") + column("intra_text"))
        low = _jackknife_estimate(intra[0], intra[-n_samples:], (-np.inf, np.inf), None).ci_low
        if low > 0:
            ratio = np.where(intra > 0, np.maximum(inter, 0) / np.where(intra > 0, intra, 1.0), np.inf)
            metrics["ratio"] = _jackknife_estimate(ratio[0], ratio[-n_samples:], METRICS["ratio"].range, "log")
        else:
            metrics["ratio"] = Estimate(float("nan"), float("nan"), float("nan"), undefined_because="intra ≤ 0")
        observed = np.mean([p["mmd2"][0] for p in per_head]) if head is None else per_head[head]["mmd2"][0]
        null = np.mean([p["_null"] for p in per_head], axis=0) if head is None else per_head[head]["_null"]
        slack = kernel.TIE_TOLERANCE * abs(observed) + 1e-12
        metrics["mmd2_pvalue"] = Estimate(float((1 + np.sum(null >= observed - slack)) / (1 + len(null))))
        results.append({name: metrics[name] for name in KEYSPACE_METRICS})
    return results


def _jackknife_estimate(value, jackknife, bounds, scale) -> Estimate:
    """θ̂ ± t_{S−1, 0.975} · sqrt((S−1)/S · Σ(θ_(s) − mean)²), on the log or logit scale when given and every
    value lies inside its domain, clipped to ``bounds`` and widened to contain θ̂."""
    value, jackknife = float(value), np.asarray(jackknife, dtype=np.float64)
    everything = np.append(jackknife, value)
    if not np.all(np.isfinite(everything)):
        return Estimate(value, float("nan"), float("nan"))
    forward, backward = {None: (lambda x: x, lambda x: x),
                         "log": (np.log, np.exp),
                         "logit": (lambda p: np.log(p / (1 - p)), lambda z: 1 / (1 + np.exp(-z)))}[scale]
    domain = {"log": everything > 0, "logit": (everything > 0) & (everything < 1)}.get(scale)
    if domain is not None and not np.all(domain):  # outside the scale's domain: the linear scale
        forward, backward = (lambda x: x, lambda x: x)
    n = len(jackknife)
    transformed = forward(jackknife)
    se = np.sqrt((n - 1) / n * np.sum((transformed - transformed.mean()) ** 2))
    half = scipy.stats.t.ppf(0.975, n - 1) * se
    centre = forward(value)
    low, high = float(backward(centre - half)), float(backward(centre + half))
    return Estimate(value, min(max(low, bounds[0]), value), max(min(high, bounds[1]), value))


def _one_head(keys, layout: TokenLayout, weights, flips, config: KeySpaceConfig) -> dict[str, np.ndarray]:
    out = {}
    is_image = layout.is_image.numpy()
    token_sample = layout.token_sample.numpy()
    n_samples = layout.n_samples
    out.update(_classifier(keys, is_image, token_sample, n_samples, weights, config))
    out.update(_kernel(keys, layout, weights, flips, config))
    out.update(_moments(keys, is_image, token_sample, weights, n_samples))
    return out


# --------------------------------------------------------------------------- classifier


def _classifier(keys, is_image, token_sample, n_samples, weights, config):
    """jsd and auroc for the data and bootstrap rows (the logits of one nested cross-validation, weighted),
    then for each jackknife row the nested cross-validation refitted on the data without that sample."""
    n_folds = min(config.n_folds, n_samples)
    token_fold = classifier.sample_folds(n_samples, n_folds, config.seed).numpy()[token_sample]
    everything = np.ones(len(keys), dtype=bool)
    logits = _nested_cv(keys, is_image, token_fold, n_folds, everything, config)
    jsd, auc = [], []
    for row in weights[:-n_samples]:
        jsd.append(_jsd_bound(logits, is_image, row[token_sample]))
        auc.append(_weighted_auroc(logits, is_image, row[token_sample]))
    for left_out in range(n_samples):
        kept = token_sample != left_out
        refit = _nested_cv(keys, is_image, token_fold, n_folds, kept, config)
        jsd.append(_jsd_bound(refit[kept], is_image[kept], np.ones(kept.sum())))
        auc.append(_weighted_auroc(refit[kept], is_image[kept], np.ones(kept.sum())))
    return {"jsd": np.array(jsd), "auroc": np.array(auc)}


def _jsd_bound(logits, is_image, token_weight):
    bits = -np.where(is_image, log_expit(logits), log_expit(-logits)) / np.log(2)
    ce = 0.5 * np.average(bits[is_image], weights=token_weight[is_image]) \
        + 0.5 * np.average(bits[~is_image], weights=token_weight[~is_image])
    return max(0.0, 1 - ce)


def _nested_cv(keys, is_image, token_fold, n_folds, usable, config):
    """Held-out logits of every token from the nested grouped cross-validation on the ``usable`` tokens."""

    def lda_scores(excluded, gamma, score_mask):
        train = ~np.isin(token_fold, excluded) & usable
        model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=gamma, priors=[0.5, 0.5])
        model.fit(keys[train], is_image[train])
        return model.decision_function(keys[score_mask])

    logits = np.zeros(len(keys))
    for outer in range(n_folds):
        inside = token_fold == outer
        outside = ~inside & usable
        if not inside.any():
            continue
        balanced = np.where(is_image, 0.5 / (outside & is_image).sum(), 0.5 / (outside & ~is_image).sum()) * outside
        best = None
        for gamma in config.shrinkage:
            inner = np.zeros(len(keys))
            for other in range(n_folds):
                mask = (token_fold == other) & usable
                if other != outer and mask.any():
                    inner[mask] = lda_scores([outer, other], gamma, mask)
            w = balanced[outside]
            z = inner[outside]
            y = is_image[outside]
            m_image = np.average(z[y], weights=w[y])
            m_text = np.average(z[~y], weights=w[~y])
            v_image = np.average((z[y] - m_image) ** 2, weights=w[y])
            v_text = np.average((z[~y] - m_text) ** 2, weights=w[~y])
            separation = (m_image - m_text) ** 2 / (0.5 * (v_image + v_text))
            if best is None or separation > best[0]:
                best = (separation, gamma, z, w, y)
        _, gamma, z, w, y = best
        centre = np.sum(w * z)
        spread = np.sqrt(np.sum(w * (z - centre) ** 2))
        calibration = LogisticRegression(C=1.0 / classifier.CALIBRATION_L2, tol=1e-14, max_iter=100_000)
        calibration.fit(((z - centre) / spread)[:, None], y, sample_weight=w)
        outer_scores = lda_scores([outer], gamma, inside)
        logits[inside] = calibration.decision_function(((outer_scores - centre) / spread)[:, None])
    return np.clip(logits, -classifier.LOGIT_CAP, classifier.LOGIT_CAP)


def _weighted_auroc(scores, is_image, token_weight):
    """Σ over (image, text) token pairs of weight products × [image beats text] (+½ ties) / Σ weights."""
    image, text = scores[is_image], scores[~is_image]
    wi, wt = token_weight[is_image], token_weight[~is_image]
    beats = (image[:, None] > text[None, :]) + 0.5 * (image[:, None] == text[None, :])
    return float(wi @ beats @ wt / (wi.sum() * wt.sum()))


# --------------------------------------------------------------------------- kernel


def _bandwidth(keys, layout: TokenLayout, config: KeySpaceConfig) -> float:
    """σ² of the median heuristic over the bandwidth subsample (keys in block order, float64)."""
    centred = keys - keys.mean(0)
    subsample = kernel.bandwidth_subsample(torch.from_numpy(keys).float()[None], layout, config.seed)[0].numpy()
    chosen = centred[subsample]
    chosen_sample = layout.token_sample.numpy()[subsample]
    chosen_image = layout.is_image.numpy()[subsample]
    distances = cdist(chosen, chosen, "sqeuclidean")
    kinds = {0: [], 1: [], 2: []}
    for i, j in itertools.combinations(range(len(chosen)), 2):
        if chosen_sample[i] != chosen_sample[j]:
            kinds[int(chosen_image[i]) + int(chosen_image[j])].append(distances[i, j])

    def lower_median(values):
        return np.sort(values)[(len(values) - 1) // 2] if values else 0.0

    sigma2 = 0.25 * lower_median(kinds[2]) + 0.5 * lower_median(kinds[1]) + 0.25 * lower_median(kinds[0])
    return sigma2 if sigma2 > 0 else 1.0


def _without(keys, layout: TokenLayout, sample: int):
    """The keys (block order) and layout of the data without ``sample``."""
    kept = layout.token_sample.numpy() != sample
    image = layout.is_image.numpy()[kept]
    ids = layout.token_sample.numpy()[kept]
    sub = TokenLayout.of(ids[image], ids[~image])
    rows = keys[kept]
    return np.concatenate([rows[image], rows[~image]])[sub.order.numpy()], sub


def _atoms(keys, layout: TokenLayout) -> np.ndarray:
    """Tokens whose key (byte for byte, float32) occurs in at least two samples of its modality."""
    seen: dict[tuple, set] = {}
    as_bytes = [row.astype(np.float32).tobytes() for row in keys]
    image, sample = layout.is_image.numpy(), layout.token_sample.numpy()
    for key, modality, owner in zip(as_bytes, image, sample):
        seen.setdefault((key, bool(modality)), set()).add(int(owner))
    return np.array([len(seen[(key, bool(m))]) >= 2 for key, m in zip(as_bytes, image)])


def _kernel(keys, layout: TokenLayout, weights, flips, config):
    n_samples = layout.n_samples
    centred = keys - keys.mean(0)
    sigma2 = _bandwidth(keys, layout, config)
    sigma2_without = [_bandwidth(*_without(keys, layout, s), config) for s in range(n_samples)]
    squared = cdist(centred, centred, "sqeuclidean")
    gaussian = np.exp(-squared / (2 * sigma2))
    slope = gaussian * squared / (2 * sigma2**2)  # ∂k/∂σ²
    energy = -cdist(centred, centred, "euclidean")
    atoms = _atoms(keys, layout)
    token_block = layout.token_block.numpy()
    blocks = {(s, m): np.flatnonzero(token_block == 2 * s + m) for s in range(n_samples) for m in (0, 1)}

    def cross_means(gram):
        return {(s, a, t, b): gram[np.ix_(blocks[s, a], blocks[t, b])].mean()
                for s, t in itertools.permutations(range(n_samples), 2) for a in (0, 1) for b in (0, 1)}

    def within(block):
        """Σ_{i≠j} k + Σ_atoms k(x, x) + m_v · U_vv over m², U_vv the mean over pairs of varying tokens."""
        sub = energy[np.ix_(block, block)]
        m = len(block)
        varying = ~atoms[block]
        m_v = int(varying.sum())
        off_diagonal = sub.sum() - np.trace(sub)
        pairs_v = sub[np.ix_(varying, varying)]
        u_vv = (pairs_v.sum() - np.trace(pairs_v)) / (m_v * (m_v - 1)) if m_v >= 2 else off_diagonal / (m * (m - 1))
        return (off_diagonal + np.trace(sub[np.ix_(~varying, ~varying)]) + m_v * u_vv) / m**2

    kernels = {"gaussian": cross_means(gaussian), "slope": cross_means(slope), "energy": cross_means(energy)}
    within_energy = {(s, m): within(blocks[s, m]) for s in range(n_samples) for m in (0, 1)}

    def pair_mean(cross, weights_a, modality_a, weights_b, modality_b):
        total = norm = 0.0
        for s, t in itertools.permutations(range(n_samples), 2):
            product = weights_a[s] * weights_b[t]
            total += product * cross[s, modality_a[s], t, modality_b[t]]
            norm += product
        return total / norm

    def between(cross, w):
        return (pair_mean(cross, w, image_side, w, image_side) + pair_mean(cross, w, text_side, w, text_side)
                - 2 * pair_mean(cross, w, image_side, w, text_side))

    mmd2, intra_image, intra_text, inter = [], [], [], []
    image_side, text_side = [0] * n_samples, [1] * n_samples
    for row, w in enumerate(weights):
        value = between(kernels["gaussian"], w)
        left_out = row - (len(weights) - n_samples)
        if left_out >= 0:  # a jackknife row: at the bandwidth without the sample, linearised in σ²
            value += between(kernels["slope"], w) * (sigma2_without[left_out] - sigma2)
        mmd2.append(value)
        e = kernels["energy"]
        k_ii = pair_mean(e, w, image_side, w, image_side)
        k_tt = pair_mean(e, w, text_side, w, text_side)
        k_it = pair_mean(e, w, image_side, w, text_side)
        w_i = sum(w[s] * within_energy[s, 0] for s in range(n_samples)) / w.sum()
        w_t = sum(w[s] * within_energy[s, 1] for s in range(n_samples)) / w.sum()
        intra_image.append(2 * (w_i - k_ii))
        intra_text.append(2 * (w_t - k_tt))
        inter.append(w_i + w_t - 2 * k_it)
    ones = np.ones(n_samples)
    null = []
    for flip in flips:
        side_a = [int(f) for f in flip]
        side_b = [1 - f for f in side_a]
        g = kernels["gaussian"]
        null.append(pair_mean(g, ones, side_a, ones, side_a) + pair_mean(g, ones, side_b, ones, side_b)
                    - 2 * pair_mean(g, ones, side_a, ones, side_b))
    return {"mmd2": np.array(mmd2), "intra_image": np.array(intra_image), "intra_text": np.array(intra_text),
            "inter": np.array(inter), "_null": np.array(null)}


# --------------------------------------------------------------------------- moments


def _moments(keys, is_image, token_sample, weights, n_samples):
    x_image, x_text = keys[is_image], keys[~is_image]
    s_image, s_text = token_sample[is_image], token_sample[~is_image]
    cov_i, cov_t = np.cov(x_image.T, bias=True), np.cov(x_text.T, bias=True)
    root = scipy.linalg.sqrtm(cov_i).real
    product = root @ cov_t @ root
    cross = np.trace(scipy.linalg.sqrtm(product).real)
    inverse_root = np.linalg.pinv(root, rcond=1e-8)
    grad_text = 0.5 * root @ np.linalg.pinv(scipy.linalg.sqrtm(product).real, rcond=1e-8) @ root
    grad_image = 0.5 * inverse_root @ scipy.linalg.sqrtm(product).real @ inverse_root
    linear_at_estimate = np.trace(grad_image @ cov_i) + np.trace(grad_text @ cov_t)
    histogram = _projection_reference(x_image, x_text)
    cos, norms, distance, share, jsd_proj = [], [], [], [], []
    for w in weights:
        wi, wt = w[s_image], w[s_text]
        mu_i, mu_t = np.average(x_image, axis=0, weights=wi), np.average(x_text, axis=0, weights=wt)
        ci = np.cov(x_image.T, aweights=wi, bias=True)
        ct = np.cov(x_text.T, aweights=wt, bias=True)
        cross_r = cross + np.trace(grad_image @ ci) + np.trace(grad_text @ ct) - linear_at_estimate
        mean_term = float(((mu_i - mu_t) ** 2).sum())
        d = max(mean_term + np.trace(ci) + np.trace(ct) - 2 * cross_r, 0.0)
        distance.append(d)
        share.append(mean_term / d if d > 0 else np.nan)
        cos.append(_centroid_cosine(x_image, s_image, x_text, s_text, w))
        norms.append(np.average(np.linalg.norm(x_image, axis=1), weights=wi)
                     / np.average(np.linalg.norm(x_text, axis=1), weights=wt))
        jsd_proj.append(histogram(wi, wt))
    jsd_proj = np.array(jsd_proj)
    jsd_proj[-n_samples:] = np.nan  # the projected JS has a bootstrap interval only
    bias = jsd_proj[1:-n_samples].mean() - jsd_proj[0]
    return {"centroid_cosine": np.array(cos), "norm_ratio": np.array(norms), "frechet": np.array(distance),
            "frechet_mean_share": np.array(share), "jsd_proj": np.clip(jsd_proj - bias, 0.0, None)}


def _centroid_cosine(x_image, s_image, x_text, s_text, w):
    samples = sorted(set(s_image) | set(s_text))
    image_means = {s: x_image[s_image == s].mean(0) for s in samples if np.any(s_image == s)}
    text_means = {s: x_text[s_text == s].mean(0) for s in samples if np.any(s_text == s)}

    def dot(a, b):
        total = norm = 0.0
        for s, t in itertools.permutations(samples, 2):
            if s in a and t in b:
                total += w[s] * w[t] * float(a[s] @ b[t])
                norm += w[s] * w[t]
        return total / norm

    denominator = np.sqrt(max(dot(image_means, image_means) * dot(text_means, text_means), 0.0))
    return dot(image_means, text_means) / denominator if denominator > 0 else np.nan


def _projection_reference(x_image, x_text):
    mu_i, mu_t = x_image.mean(0), x_text.mean(0)
    centre = (mu_i + mu_t) / 2
    covariance = 0.5 * np.cov(x_image.T, bias=True) + 0.5 * np.cov(x_text.T, bias=True) \
        + 0.25 * np.outer(mu_i - mu_t, mu_i - mu_t)
    plane = np.linalg.eigh(covariance)[1][:, -2:]
    xy_image, xy_text = (x_image - centre) @ plane, (x_text - centre) @ plane
    pooled = np.concatenate([xy_image, xy_text])
    low, high = pooled.min(0), pooled.max(0)
    bins = moments.PROJECTION_BINS
    edges = [np.linspace(low[k], high[k], bins + 1) for k in range(2)]

    def js(wi, wt):
        p = np.histogram2d(*xy_image.T, bins=edges, weights=wi)[0].ravel()
        q = np.histogram2d(*xy_text.T, bins=edges, weights=wt)[0].ravel()
        return float(jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2)

    return js
