"""Statistics from per-block sufficient sums: centroids, norms, the Fréchet distance and the projected JS.

Each (sample, modality) block is summarised once by its token count, ``Σx``, ``Σxxᵀ``, ``Σ|x|`` and its
2-D histogram on the projection plane; a bootstrap replicate (sample weights ``w``) is then a weighted
sum over blocks, never a pass over tokens, and no replicate needs an eigendecomposition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bias_suite.metrics.layout import IMAGE, TEXT, TokenLayout

PROJECTION_BINS = 16  # per axis of the top-2 PCA plane
EIGENVALUE_FLOOR = 1e-10  # relative to the largest: eigenvalues below it count as 0 in inverse roots
JSD_PROJ_ESTIMATOR = (
    f"plug-in JS (bits) between {PROJECTION_BINS}x{PROJECTION_BINS} histograms on the top-2 principal "
    "components of the class-balanced pooled keys, minus its bootstrap bias estimate (mean replicate − "
    "estimate); clipped at 0"
)
FRECHET_ESTIMATOR = (
    "Fréchet distance |Δμ|² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) between Gaussian fits; interval: bootstrap over "
    "samples with the cross term tr(Σ₁Σ₂)^½ linearised at the estimate (delta method, no per-replicate "
    "eigendecomposition). Size-dependent: covariance estimates bias it upwards at few tokens"
)


@dataclass(frozen=True)
class BlockMoments:
    """Per-block sums of the keys of P problems (heads). G = 2 · n_samples blocks, float64.

    Keys are centred on ``centre`` before ``total`` and ``outer`` are formed (numerical headroom);
    ``norm_total`` sums the norms of the *uncentred* keys.
    """

    centre: Tensor  # [P, d]
    count: Tensor  # [G]
    total: Tensor  # [P, G, d]        Σ (x − centre)
    outer: Tensor  # [P, G, d, d]     Σ (x − centre)(x − centre)ᵀ
    norm_total: Tensor  # [P, G]      Σ |x|

    @classmethod
    def of(cls, keys: Tensor, layout: TokenLayout) -> BlockMoments:
        """keys: ``[P, n, d]`` in block order (any float dtype, any device)."""
        keys = keys.double()
        centre = keys.mean(1)
        centred = keys - centre[:, None, :]
        n_problems, _, dim = keys.shape
        blocks = layout.token_block.to(keys.device)
        total = torch.zeros(n_problems, layout.n_blocks, dim, dtype=torch.float64, device=keys.device)
        total.index_add_(1, blocks, centred)
        norm_total = torch.zeros(n_problems, layout.n_blocks, dtype=torch.float64, device=keys.device)
        norm_total.index_add_(1, blocks, keys.norm(dim=-1))
        outer = torch.empty(n_problems, layout.n_blocks, dim, dim, dtype=torch.float64, device=keys.device)
        single = centred.float()  # products in float32 (centred keys: nothing to cancel), sums in float64
        for block, (start, size) in enumerate(zip(layout.block_starts, layout.block_sizes.long().tolist())):
            rows = single[:, start:start + size]
            outer[:, block] = rows.transpose(1, 2) @ rows  # zeros for an empty block
        return cls(centre, layout.block_sizes.to(keys.device), total, outer, norm_total)

    def per_modality(self, name: str, modality: int) -> Tensor:
        """``[P, S, …]`` (or ``[S]`` for ``count``) view of one modality's blocks."""
        value = getattr(self, name)
        if name == "count":
            return value.view(-1, 2)[:, modality]
        return value.view(value.shape[0], -1, 2, *value.shape[2:])[:, :, modality]

    def mean(self, weights: Tensor, modality: int) -> Tensor:
        """Centred class mean for sample weights ``[R, S]``: ``[R, P, d]``."""
        count = weights @ self.per_modality("count", modality)
        return torch.einsum("rs,psd->rpd", weights, self.per_modality("total", modality)) / count[:, None, None]

    def covariance(self, modality: int) -> Tensor:
        """Population covariance of one modality's keys, all samples at weight 1: ``[P, d, d]``."""
        count = self.per_modality("count", modality).sum()
        mean = self.per_modality("total", modality).sum(1) / count
        return self.per_modality("outer", modality).sum(1) / count - mean[:, :, None] * mean[:, None, :]


def _eigen(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Eigen-decomposition of symmetric PSD matrices ``[P, d, d]``: ``(eigenvalues, eigenvectors, kept)``,
    ``kept`` marking eigenvalues above the floor (the others count as 0, so negative powers are
    pseudo-inverses)."""
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.transpose(1, 2)) / 2)
    kept = eigenvalues > EIGENVALUE_FLOOR * eigenvalues[:, -1:].clamp_min(1e-300)
    return eigenvalues.clamp_min(0), eigenvectors, kept


def _power(eigen: tuple[Tensor, Tensor, Tensor], power: float) -> Tensor:
    eigenvalues, eigenvectors, kept = eigen
    powered = torch.where(kept, eigenvalues.clamp_min(1e-300) ** power, torch.zeros_like(eigenvalues))
    return (eigenvectors * powered[:, None, :]) @ eigenvectors.transpose(1, 2)


def _quadratic(mean: Tensor, matrix: Tensor) -> Tensor:
    """``meanᵀ · matrix · mean`` for means ``[R, P, d]`` and matrices ``[P, d, d]``: ``[R, P]``."""
    by_problem = mean.transpose(0, 1)  # [P, R, d]
    return (torch.bmm(by_problem, matrix) * by_problem).sum(-1).T


def centroid_cosine(moments: BlockMoments, weights: Tensor) -> Tensor:
    """Cosine of the mean image key and the mean text key (uncentred), ``[R, P]``.

    From per-sample mean keys ``m_{s,A}``: the dot products ``μ_A · μ_B`` are estimated by the mean of
    ``m_{s,A} · m_{s',B}`` over pairs of *distinct* samples, so the noise of a mean does not multiply
    itself (a plug-in ``|μ̂|²`` is inflated by ``tr Σ / n``, which drags the cosine down at few samples
    in 128 dimensions). NaN when an estimated squared norm is not positive."""
    count = moments.count.view(-1, 2)  # [S, 2]
    per_sample = moments.total.view(moments.total.shape[0], -1, 2, moments.total.shape[-1]) / count[None, :, :, None]
    per_sample = per_sample + moments.centre[:, None, None, :]  # [P, S, 2, d] uncentred sample means
    present = (count > 0).to(weights.dtype)  # [S, 2]

    def pair_dot(a: int, b: int) -> Tensor:
        dots = per_sample[:, :, a] @ per_sample[:, :, b].transpose(1, 2)  # [P, S, S]
        dots = torch.nan_to_num(dots) * (present[:, a, None] * present[None, :, b])
        pair = weights[:, :, None] * weights[:, None, :]  # [R, S, S]
        pair = pair * (1 - torch.eye(weights.shape[1], dtype=weights.dtype, device=weights.device))
        pair_weights = pair * (present[:, a, None] * present[None, :, b])
        return torch.einsum("rst,pst->rp", pair_weights, dots) / pair_weights.sum((1, 2))[:, None]

    squared_image, squared_text = pair_dot(IMAGE, IMAGE), pair_dot(TEXT, TEXT)
    denominator = (squared_image * squared_text).clamp_min(0).sqrt()
    return torch.where(denominator > 0, pair_dot(IMAGE, TEXT) / denominator, torch.full_like(denominator, float("nan")))


def moment_statistics(moments: BlockMoments, weights: Tensor) -> dict[str, Tensor]:
    """``centroid_cosine``, ``norm_ratio``, ``frechet``, ``frechet_mean_share`` for sample weights
    ``[R, S]`` (row 0 must be all ones: the Fréchet cross term is linearised around it). ``[R, P]`` each."""
    weights = weights.to(moments.total.device)
    image_mean, text_mean = moments.mean(weights, IMAGE), moments.mean(weights, TEXT)  # centred, [R, P, d]
    norms = [(weights @ moments.per_modality("norm_total", m).T) / (weights @ moments.per_modality("count", m))[:, None]
             for m in (IMAGE, TEXT)]

    # Fréchet at the estimate, with the gradient of the cross term c = tr((Σ_I Σ_T)^½):
    # with R = Σ_I^½ and M = R Σ_T R, ∂c/∂Σ_T = ½ R M^-½ R and ∂c/∂Σ_I = ½ R⁻¹ M^½ R⁻¹.
    cov_image, cov_text = moments.covariance(IMAGE), moments.covariance(TEXT)
    image_eigen = _eigen(cov_image)
    root, inverse_root = _power(image_eigen, 0.5), _power(image_eigen, -0.5)
    product_eigen = _eigen(root @ cov_text @ root)
    cross = product_eigen[0].sqrt().sum(-1)  # [P]
    grad_text = 0.5 * root @ _power(product_eigen, -0.5) @ root
    grad_image = 0.5 * inverse_root @ _power(product_eigen, 0.5) @ inverse_root

    def trace_with(gradient: Tensor | None, modality: int, mean: Tensor) -> Tensor:
        """tr(gradient · Σ_r) for every replicate r (``None``: the identity): ``[R, P]``."""
        outer = moments.per_modality("outer", modality)  # [P, S, d, d]
        if gradient is None:
            per_block = torch.diagonal(outer, dim1=-2, dim2=-1).sum(-1)
            quadratic = mean.square().sum(-1)
        else:
            per_block = (outer * gradient[:, None]).sum((-2, -1))  # gradient is symmetric
            quadratic = _quadratic(mean, gradient)
        count = weights @ moments.per_modality("count", modality)
        return (weights @ per_block.T) / count[:, None] - quadratic

    trace_image, trace_text = trace_with(None, IMAGE, image_mean), trace_with(None, TEXT, text_mean)
    linear = trace_with(grad_image, IMAGE, image_mean) + trace_with(grad_text, TEXT, text_mean)
    cross_replicates = cross[None, :] + (linear - linear[:1])
    mean_term = (image_mean - text_mean).square().sum(-1)
    distance = (mean_term + trace_image + trace_text - 2 * cross_replicates).clamp_min(0)
    return {
        "centroid_cosine": centroid_cosine(moments, weights),
        "norm_ratio": norms[0] / norms[1],
        "frechet": distance,
        "frechet_mean_share": mean_term / distance,
    }


def projection_histograms(keys: Tensor, layout: TokenLayout, moments: BlockMoments) -> Tensor:
    """Per-block 2-D histogram counts on the top-2 principal components: ``[P, G, B²]`` float64.

    The plane is fitted to the class-balanced pooled keys (each modality weighted ½, the mean difference
    included); bins span the range of all projected keys, ``PROJECTION_BINS`` per axis.
    keys: ``[P, n, d]`` in block order.
    """
    ones = torch.ones(1, layout.n_samples, dtype=torch.float64, device=keys.device)
    image_mean, text_mean = moments.mean(ones, IMAGE)[0], moments.mean(ones, TEXT)[0]  # centred, [P, d]
    difference = image_mean - text_mean
    pooled = 0.5 * moments.covariance(IMAGE) + 0.5 * moments.covariance(TEXT) \
        + 0.25 * difference[:, :, None] * difference[:, None, :]
    plane = torch.linalg.eigh(pooled)[1][:, :, -2:]  # [P, d, 2]
    centre = moments.centre + (image_mean + text_mean) / 2
    projected = (keys.double() - centre[:, None, :]) @ plane  # [P, n, 2]
    low, high = projected.amin(1, keepdim=True), projected.amax(1, keepdim=True)
    width = (high - low).clamp_min(1e-30) / PROJECTION_BINS
    cell = ((projected - low) / width).floor().clamp(0, PROJECTION_BINS - 1).long()
    n_problems = keys.shape[0]
    bins = PROJECTION_BINS**2
    flat = (cell[..., 0] * PROJECTION_BINS + cell[..., 1]
            + layout.token_block.to(keys.device)[None, :] * bins
            + torch.arange(n_problems, device=keys.device)[:, None] * layout.n_blocks * bins)
    counts = torch.bincount(flat.flatten(), minlength=n_problems * layout.n_blocks * bins)
    return counts.view(n_problems, layout.n_blocks, bins).double()


def js_bits(p_counts: Tensor, q_counts: Tensor) -> Tensor:
    """Plug-in Jensen-Shannon divergence in bits between histograms ``[..., B]`` (normalised here)."""
    p = p_counts / p_counts.sum(-1, keepdim=True)
    q = q_counts / q_counts.sum(-1, keepdim=True)
    m = (p + q) / 2

    def kl(x: Tensor) -> Tensor:
        ratio = torch.log2(x.clamp_min(1e-300)) - torch.log2(m.clamp_min(1e-300))
        return torch.where(x > 0, x * ratio, torch.zeros_like(x)).sum(-1)

    return (0.5 * kl(p) + 0.5 * kl(q)).clamp(0.0, 1.0)


def projected_jsd(histograms: Tensor, layout: TokenLayout, weights: Tensor) -> Tensor:
    """``jsd_proj`` for sample weights ``[R, S]`` (row 0: the data, rows 1…: bootstrap replicates).

    The plug-in JS of finite histograms is biased upwards (0.2–0.3 bits for two identical Gaussians at a
    few hundred tokens). The bootstrap estimates that bias as mean(replicates) − estimate; every value is
    shifted down by it, then clipped at 0. Returns ``[R, P]``."""
    device = histograms.device
    per_sample = histograms.view(histograms.shape[0], layout.n_samples, 2, -1)  # [P, S, 2, B²]
    weights = weights.to(device)
    image = torch.einsum("rs,psb->rpb", weights, per_sample[:, :, IMAGE])
    text = torch.einsum("rs,psb->rpb", weights, per_sample[:, :, TEXT])
    plug_in = js_bits(image, text)  # [R, P]
    bias = plug_in[1:].mean(0) - plug_in[0]
    return (plug_in - bias[None, :]).clamp_min(0.0)
