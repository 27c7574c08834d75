"""A straightforward scikit-learn / scipy / numpy implementation of the key-space statistics.

Same definitions as :mod:`bias_suite.metrics.keyspace` (same folds, bootstrap draws, permutations and
half-splits), written the obvious way: one scikit-learn fit per fold and head, scipy ``cdist`` in
float64, ``scipy.linalg.sqrtm`` and a Python loop per bootstrap replicate and permutation. It exists
to check the fast implementation (tests, ``python -m bias_suite bench``), not to be used.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import scipy.linalg
from scipy.spatial.distance import cdist
from scipy.special import log_expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from bias_suite.metrics import classifier, kernel, moments
from bias_suite.metrics.estimate import Estimate, bootstrap_weights, with_interval
from bias_suite.metrics.keyspace import KEYSPACE_METRICS, N_SPLITS, RANGES, KeySpaceConfig, _sample_codes


def reference_keyspace_metrics(image_keys, image_samples, text_keys, text_samples, config: KeySpaceConfig = KeySpaceConfig()):
    """Per-head and pooled ``{metric: Estimate}`` dicts (same layout as ``keyspace_metrics``)."""
    image_sample, text_sample, n_samples = _sample_codes(image_samples, text_samples)
    image = np.asarray(image_keys, dtype=np.float64).reshape(image_keys.shape[0], -1, image_keys.shape[-1])
    text = np.asarray(text_keys, dtype=np.float64).reshape(text_keys.shape[0], -1, text_keys.shape[-1])
    is_image = np.concatenate([np.ones(len(image), bool), np.zeros(len(text), bool)])
    token_sample = np.concatenate([image_sample.numpy(), text_sample.numpy()])
    token_block = 2 * token_sample + (~is_image)
    order = np.argsort(token_block, kind="stable")
    pooled = np.concatenate([image, text])[order]
    is_image, token_sample, token_block = is_image[order], token_sample[order], token_block[order]
    weights = np.concatenate([np.ones((1, n_samples)), bootstrap_weights(n_samples, config.n_bootstrap, config.seed).numpy()])

    per_head = [_one_head(pooled[:, h], is_image, token_sample, token_block, n_samples, weights, config)
                for h in range(pooled.shape[1])]
    results = []
    for head in [*range(len(per_head)), None]:
        metrics = {}
        for name in KEYSPACE_METRICS:
            column = np.mean([p[name] for p in per_head], axis=0) if head is None else per_head[head][name]
            if name == "mmd2_pvalue":
                metrics[name] = Estimate(float(column[0]))
            else:
                metrics[name] = with_interval(column[0], torch.from_numpy(np.asarray(column[1:])),
                                              bounds=RANGES.get(name, (-math.inf, math.inf)))
        if head is None:
            observed = np.mean([p["mmd2"][0] for p in per_head])
            null = np.mean([p["_null"] for p in per_head], axis=0)
            metrics["mmd2_pvalue"] = Estimate(float((1 + np.sum(null >= observed - 1e-12 * abs(observed))) / (1 + len(null))))
        results.append(metrics)
    return results


def _one_head(keys, is_image, token_sample, token_block, n_samples, weights, config):
    out = {}
    # --- classifier: one scikit-learn fit per fold
    n_folds = min(config.n_folds, n_samples)
    token_fold = classifier.sample_folds(n_samples, n_folds, config.seed).numpy()[token_sample]
    features = keys - keys.mean(0)
    features = features / np.sqrt((features**2).sum(1).mean())
    logits = np.empty(len(keys))
    for fold in range(n_folds):
        train = token_fold != fold
        model = LogisticRegression(C=1.0 / (classifier.L2 * train.sum()), class_weight="balanced", tol=1e-12, max_iter=10_000)
        model.fit(features[train], is_image[train])
        logits[~train] = model.decision_function(features[~train])
    bits = -np.where(is_image, log_expit(logits), log_expit(-logits)) / np.log(2)
    jsd, auc = [], []
    for w in weights:
        token_weight = w[token_sample]
        ce = 0.5 * np.average(bits[is_image], weights=token_weight[is_image]) + 0.5 * np.average(bits[~is_image], weights=token_weight[~is_image])
        jsd.append(max(0.0, 1 - ce))
        auc.append(roc_auc_score(is_image, logits, sample_weight=token_weight))
    out["jsd"], out["auroc"] = np.array(jsd), np.array(auc)

    # --- kernel statistics from the float64 token kernel
    centred = keys - keys.mean(0)
    sigma2 = kernel.median_bandwidth(torch.from_numpy(centred), config.seed)
    gram = np.exp(-cdist(centred, centred, "sqeuclidean") / (2 * sigma2))
    n_blocks = 2 * n_samples
    sizes = np.bincount(token_block, minlength=n_blocks).astype(float)
    starts = np.flatnonzero(np.r_[True, np.diff(token_block) != 0])  # tokens are sorted by block
    present_blocks = token_block[starts]
    sums = np.zeros((n_blocks, n_blocks))
    sums[np.ix_(present_blocks, present_blocks)] = np.add.reduceat(np.add.reduceat(gram, starts, axis=0), starts, axis=1)
    image_blocks = (np.arange(n_blocks) % 2 == 0) & (sizes > 0)
    text_blocks = (np.arange(n_blocks) % 2 == 1) & (sizes > 0)

    @np.errstate(divide="ignore", invalid="ignore")  # a bootstrap draw may leave a half-split empty: NaN
    def unbiased(a, b):
        na, nb = a @ sizes, b @ sizes
        return (a @ sums @ a - na) / (na * (na - 1)) + (b @ sums @ b - nb) / (nb * (nb - 1)) - 2 * (a @ sums @ b) / (na * nb)

    @np.errstate(divide="ignore", invalid="ignore")
    def size_normalised(a, b):
        na, nb = a @ sizes, b @ sizes
        v = a @ sums @ a / na**2 + b @ sums @ b / nb**2 - 2 * a @ sums @ b / (na * nb)
        return v / (1 / na + 1 / nb)

    out["mmd2"] = np.array([unbiased(np.repeat(w, 2) * image_blocks, np.repeat(w, 2) * text_blocks) for w in weights])
    present = np.flatnonzero(sizes > 0)
    perm_a, _ = kernel.permutation_sets(int(image_blocks.sum()), len(present), config.n_permutations, config.seed)
    null = []
    for labels in perm_a.numpy():
        a = np.zeros(n_blocks)
        a[present] = labels
        b = np.zeros(n_blocks)
        b[present] = 1 - labels
        null.append(unbiased(a, b))
    out["_null"] = np.array(null)
    out["mmd2_pvalue"] = np.full(len(weights), (1 + np.sum(out["_null"] >= out["mmd2"][0] - 1e-12 * abs(out["mmd2"][0]))) / (1 + len(null)))

    generator = torch.Generator().manual_seed(config.seed + 1)
    splits = []
    for _ in range(N_SPLITS):
        in_a = np.zeros(n_samples)
        in_a[torch.randperm(n_samples, generator=generator)[: n_samples // 2].numpy()] = 1.0
        splits.append(in_a)
    intra_image, intra_text, ratio = [], [], []
    for w in weights:
        ii = it = inter = 0.0
        for in_a in splits:
            a, b = np.repeat(w * in_a, 2), np.repeat(w * (1 - in_a), 2)
            ii += size_normalised(a * image_blocks, b * image_blocks) / N_SPLITS
            it += size_normalised(a * text_blocks, b * text_blocks) / N_SPLITS
            inter += 0.5 * (size_normalised(a * image_blocks, b * text_blocks) + size_normalised(b * image_blocks, a * text_blocks)) / N_SPLITS
        intra_image.append(ii)
        intra_text.append(it)
        ratio.append(inter / max(ii, it))
    out["intra_image"], out["intra_text"], out["ratio"] = map(np.array, (intra_image, intra_text, ratio))

    # --- moments, one replicate at a time
    x_image, x_text = keys[is_image], keys[~is_image]
    s_image, s_text = token_sample[is_image], token_sample[~is_image]
    pca_hist = _projection_reference(x_image, x_text)
    cos, norms, fd, share, jsd_proj = [], [], [], [], []
    for w in weights:
        wi, wt = w[s_image], w[s_text]
        mu_i, mu_t = np.average(x_image, axis=0, weights=wi), np.average(x_text, axis=0, weights=wt)
        cov_i = np.cov(x_image.T, aweights=wi, bias=True)
        cov_t = np.cov(x_text.T, aweights=wt, bias=True)
        covmean = scipy.linalg.sqrtm(cov_i @ cov_t).real
        mean_term = float(((mu_i - mu_t) ** 2).sum())
        distance = max(mean_term + np.trace(cov_i) + np.trace(cov_t) - 2 * np.trace(covmean), 0.0)
        fd.append(distance)
        share.append(mean_term / distance)
        cos.append(mu_i @ mu_t / (np.linalg.norm(mu_i) * np.linalg.norm(mu_t)))
        norms.append(np.average(np.linalg.norm(x_image, axis=1), weights=wi) / np.average(np.linalg.norm(x_text, axis=1), weights=wt))
        jsd_proj.append(pca_hist(wi, wt))
    out.update(centroid_cosine=np.array(cos), norm_ratio=np.array(norms), frechet=np.array(fd),
               frechet_mean_share=np.array(share), jsd_proj=np.array(jsd_proj))
    return out


def _projection_reference(x_image, x_text):
    mu_i, mu_t = x_image.mean(0), x_text.mean(0)
    centre = (mu_i + mu_t) / 2
    covariance = 0.5 * np.cov(x_image.T, bias=True) + 0.5 * np.cov(x_text.T, bias=True) + 0.25 * np.outer(mu_i - mu_t, mu_i - mu_t)
    plane = np.linalg.eigh(covariance)[1][:, -2:]
    xy_image, xy_text = (x_image - centre) @ plane, (x_text - centre) @ plane
    pooled = np.concatenate([xy_image, xy_text])
    low, high = pooled.min(0), pooled.max(0)
    bins = moments.PROJECTION_BINS
    edges = [np.linspace(low[k], high[k], bins + 1) for k in range(2)]

    def js(wi, wt):
        p = np.histogram2d(*xy_image.T, bins=edges, weights=wi)[0].ravel()
        q = np.histogram2d(*xy_text.T, bins=edges, weights=wt)[0].ravel()
        p, q = p / p.sum(), q / q.sum()
        return float(scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2)

    return js
