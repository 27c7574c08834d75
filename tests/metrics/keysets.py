"""Synthetic key sets for metric tests: Gaussian clusters of tokens grouped by sample."""

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

    def metrics(self, config: KeySpaceConfig = FAST):
        return keyspace_metrics(self.image, self.image_ids, self.text, self.text_ids, config)

    def pooled(self, config: KeySpaceConfig = FAST):
        return self.metrics(config)[-1].metrics

    def swapped(self) -> "KeySets":
        return KeySets(self.text, self.text_ids, self.image, self.image_ids)

    def transformed(self, matrix: torch.Tensor) -> "KeySets":
        return replace(self, image=self.image @ matrix, text=self.text @ matrix)


def make_keysets(seed: int, n_samples: int = 10, per_sample: tuple[int, int] = (12, 12), dim: int = 4,
                 heads: int = 1, shift: float = 0.0) -> KeySets:
    """Standard-normal keys; text keys moved by ``shift`` along the first axis."""
    rng = np.random.default_rng(seed)
    n_image, n_text = n_samples * per_sample[0], n_samples * per_sample[1]
    image = rng.standard_normal((n_image, heads, dim))
    text = rng.standard_normal((n_text, heads, dim))
    text[:, :, 0] += shift
    image_ids = tuple(f"sample-{i // per_sample[0]:02d}" for i in range(n_image))
    text_ids = tuple(f"sample-{i // per_sample[1]:02d}" for i in range(n_text))
    return KeySets(torch.tensor(image, dtype=torch.float32), image_ids, torch.tensor(text, dtype=torch.float32), text_ids)


@st.composite
def keysets(draw, shift: float = 0.0) -> KeySets:
    return make_keysets(
        seed=draw(st.integers(0, 2**32 - 1)),
        n_samples=draw(st.integers(8, 14)),
        per_sample=(draw(st.integers(4, 12)), draw(st.integers(4, 12))),
        dim=draw(st.integers(2, 6)),
        shift=shift,
    )


def random_rotation(dim: int, seed: int) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return torch.tensor(q * np.sign(np.diag(r)), dtype=torch.float32)
