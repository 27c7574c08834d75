"""Descriptive key-space statistics from per-sample moments: centroid cosine, norm ratio, Fréchet
distance, and the paper-style projected JS divergence.

Each statistic is computed from per-sample sums (count, Σx, Σxxᵀ, Σ|x|, 2-D histogram counts), so a
bootstrap replicate is a weighted sum over samples, never a pass over tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

PROJECTION_BINS = 16  # per axis of the top-2 PCA plane
JSD_PROJ_ESTIMATOR = (
    f"plug-in JS (bits) between {PROJECTION_BINS}x{PROJECTION_BINS} histograms on the top-2 principal "
    "components of the class-balanced pooled keys (basis and bins fixed from the full data)"
)


@dataclass(frozen=True)
class SampleMoments:
    """Per-sample sums of one modality's keys of one head. S samples, d = head_dim, float64."""

    count: Tensor  # [S]
    total: Tensor  # [S, d]      Σ x
    outer: Tensor  # [S, d, d]   Σ x xᵀ
    norm_total: Tensor  # [S]    Σ |x|

    @classmethod
    def of(cls, keys: Tensor, token_sample: Tensor, n_samples: int) -> "SampleMoments":
        keys = keys.double()
        dim = keys.shape[1]
        count = torch.zeros(n_samples, dtype=torch.float64).index_add_(0, token_sample, torch.ones(keys.shape[0], dtype=torch.float64))
        total = torch.zeros(n_samples, dim, dtype=torch.float64).index_add_(0, token_sample, keys)
        order = torch.argsort(token_sample, stable=True)
        per_sample = torch.split(keys[order], count.long().tolist())
        outer = torch.stack([rows.T @ rows for rows in per_sample])  # one d×d product per sample
        norm_total = torch.zeros(n_samples, dtype=torch.float64).index_add_(0, token_sample, keys.norm(dim=1))
        return cls(count, total, outer, norm_total)

    def mean_cov(self, weights: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``[R, d]`` and population covariance ``[R, d, d]`` for sample weights ``[R, S]``."""
        n = (weights @ self.count)[:, None]
        mean = (weights @ self.total) / n
        second = torch.einsum("rs,sij->rij", weights, self.outer) / n[:, :, None]
        return mean, second - mean[:, :, None] * mean[:, None, :]

    def mean_norm(self, weights: Tensor) -> Tensor:
        return (weights @ self.norm_total) / (weights @ self.count)


def centroid_cosine(image_mean: Tensor, text_mean: Tensor) -> Tensor:
    """cos(mean image key, mean text key), ``[R]``."""
    return torch.nn.functional.cosine_similarity(image_mean, text_mean, dim=1, eps=1e-30)


def frechet(image_mean: Tensor, image_cov: Tensor, text_mean: Tensor, text_cov: Tensor) -> tuple[Tensor, Tensor]:
    """Fréchet distance ``|Δμ|² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½)`` and the share of its mean term, each ``[R]``.

    tr (Σ₁Σ₂)^½ = Σ √λ(Σ₁^½ Σ₂ Σ₁^½), with symmetric eigen-decompositions in float64.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(image_cov)
    root = eigenvectors * eigenvalues.clamp_min(0).sqrt()[:, None, :] @ eigenvectors.transpose(1, 2)
    product = root @ text_cov @ root
    cross = torch.linalg.eigvalsh((product + product.transpose(1, 2)) / 2).clamp_min(0).sqrt().sum(1)
    mean_term = (image_mean - text_mean).square().sum(1)
    trace_term = torch.diagonal(image_cov, dim1=1, dim2=2).sum(1) + torch.diagonal(text_cov, dim1=1, dim2=2).sum(1)
    distance = (mean_term + trace_term - 2 * cross).clamp_min(0)
    return distance, mean_term / distance


def projection_histograms(
    image_keys: Tensor, image_sample: Tensor, text_keys: Tensor, text_sample: Tensor, n_samples: int
) -> tuple[Tensor, Tensor]:
    """Per-sample 2-D histogram counts on the top-2 PCA plane: ``([S, B²], [S, B²])`` float64.

    The plane is fitted to the class-balanced pooled keys (each modality weighted ½); bins span the
    range of all projected keys, ``PROJECTION_BINS`` per axis.
    """
    image_keys, text_keys = image_keys.double(), text_keys.double()
    image_mean, text_mean = image_keys.mean(0), text_keys.mean(0)
    centre = (image_mean + text_mean) / 2
    covariance = 0.5 * torch.cov(image_keys.T, correction=0).reshape(image_keys.shape[1], -1)
    covariance = covariance + 0.5 * torch.cov(text_keys.T, correction=0).reshape(text_keys.shape[1], -1)
    covariance = covariance + 0.25 * torch.outer(image_mean - text_mean, image_mean - text_mean)
    _, eigenvectors = torch.linalg.eigh(covariance)
    plane = eigenvectors[:, -2:]
    image_xy, text_xy = (image_keys - centre) @ plane, (text_keys - centre) @ plane
    pooled = torch.cat([image_xy, text_xy])
    low, high = pooled.min(0).values, pooled.max(0).values
    width = (high - low).clamp_min(1e-30) / PROJECTION_BINS

    def histogram(xy: Tensor, sample: Tensor) -> Tensor:
        cell = ((xy - low) / width).floor().clamp(0, PROJECTION_BINS - 1).long()
        flat = cell[:, 0] * PROJECTION_BINS + cell[:, 1] + sample * PROJECTION_BINS**2
        counts = torch.bincount(flat, minlength=n_samples * PROJECTION_BINS**2)
        return counts.reshape(n_samples, PROJECTION_BINS**2).double()

    return histogram(image_xy, image_sample), histogram(text_xy, text_sample)


def js_bits(p_counts: Tensor, q_counts: Tensor) -> Tensor:
    """Plug-in Jensen-Shannon divergence in bits between histograms ``[R, B]`` (rows normalised here)."""
    p = p_counts / p_counts.sum(1, keepdim=True)
    q = q_counts / q_counts.sum(1, keepdim=True)
    m = (p + q) / 2

    def kl(x: Tensor) -> Tensor:
        return torch.where(x > 0, x * (torch.log2(x.clamp_min(1e-300)) - torch.log2(m.clamp_min(1e-300))), 0.0).sum(1)

    return (0.5 * kl(p) + 0.5 * kl(q)).clamp(0.0, 1.0)
