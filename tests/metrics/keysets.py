"""Synthetic key sets for metric tests: Gaussian tokens grouped by sample, with known truth.

Each sample (image) has its own offset, as real keys do (the keys of one image are more alike than
keys of two images); ``shared_offset`` gives a sample's image and text tokens the same offset (the
null case a permutation test must stay calibrated on), otherwise each modality draws its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from hypothesis import strategies as st

from bias_suite.metrics import KeySpaceConfig, keyspace_metrics

FAST = KeySpaceConfig(n_bootstrap=40, n_permutations=99, n_folds=4, seed=0)


@dataclass(frozen=True)
class KeySets:
    """Image and text keys ``[n, heads, dim]`` float32 with the sample id of each token."""

    image: torch.Tensor
    image_ids: tuple[str, ...]
    text: torch.Tensor
    text_ids: tuple[str, ...]

    def metrics(self, config: KeySpaceConfig = FAST, **kwargs):
        return keyspace_metrics(self.image, self.image_ids, self.text, self.text_ids, config, **kwargs)

    def pooled(self, config: KeySpaceConfig = FAST):
        return self.metrics(config)[-1].metrics

    def swapped(self) -> KeySets:
        return KeySets(self.text, self.text_ids, self.image, self.image_ids)

    def transformed(self, matrix: torch.Tensor) -> KeySets:
        return replace(self, image=self.image @ matrix, text=self.text @ matrix)


def make_keysets(seed: int, n_samples: int = 10, per_sample: tuple[int, int] = (12, 12), dim: int = 4,
                 heads: int = 1, shift: float = 0.0, offset: float = 0.7, shared_offset: bool = False,
                 centre: float = 3.0) -> KeySets:
    """Standard-normal keys plus a per-sample offset of scale ``offset``; text keys moved by ``shift``
    along the first axis; every key moved by ``centre`` along the second axis (keys are not centred on
    the origin, which centroid_cosine and norm_ratio are about)."""
    rng = np.random.default_rng(seed)
    n_image, n_text = n_samples * per_sample[0], n_samples * per_sample[1]
    image_offsets = offset * rng.standard_normal((n_samples, heads, dim))
    text_offsets = image_offsets if shared_offset else offset * rng.standard_normal((n_samples, heads, dim))
    image = rng.standard_normal((n_image, heads, dim)) + np.repeat(image_offsets, per_sample[0], axis=0)
    text = rng.standard_normal((n_text, heads, dim)) + np.repeat(text_offsets, per_sample[1], axis=0)
    text[:, :, 0] += shift
    image[:, :, 1 % dim] += centre
    text[:, :, 1 % dim] += centre
    image_ids = tuple(f"sample-{i // per_sample[0]:02d}" for i in range(n_image))
    text_ids = tuple(f"sample-{i // per_sample[1]:02d}" for i in range(n_text))
    return KeySets(torch.tensor(image, dtype=torch.float32), image_ids,
                   torch.tensor(text, dtype=torch.float32), text_ids)


@st.composite
def keysets(draw, shift: float = 0.0, shared_offset: bool = False) -> KeySets:
    return make_keysets(
        seed=draw(st.integers(0, 2**32 - 1)),
        n_samples=draw(st.integers(8, 14)),
        per_sample=(draw(st.integers(4, 12)), draw(st.integers(4, 12))),
        dim=draw(st.integers(2, 6)),
        shift=shift,
        shared_offset=shared_offset,
    )


def random_rotation(dim: int, seed: int) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return torch.tensor(q * np.sign(np.diag(r)), dtype=torch.float32)
