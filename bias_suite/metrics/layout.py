"""How the tokens of a key-space problem are grouped: by sample (image) and modality.

Every statistic in :mod:`bias_suite.metrics.keyspace` resamples, permutes and cross-validates **whole
samples**, never single tokens (tokens of one image are dependent). A :class:`TokenLayout` fixes the
order once: tokens sorted by block ``g = 2 · sample + modality`` (modality 0 = image, 1 = text), samples
indexed in sorted-id order, so results depend only on the multiset of (sample id, key) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

IMAGE, TEXT = 0, 1


def sample_codes(image_samples: Sequence | Tensor, text_samples: Sequence | Tensor) -> tuple[Tensor, Tensor, int]:
    """Dense sample indices in sorted-id order: ``(image codes [n_image], text codes [n_text], n_samples)``."""

    def as_array(ids):
        return ids.cpu().numpy() if isinstance(ids, Tensor) else np.asarray(ids)

    image_ids, text_ids = as_array(image_samples), as_array(text_samples)
    unique, inverse = np.unique(np.concatenate([image_ids, text_ids]), return_inverse=True)
    inverse = torch.from_numpy(inverse.astype(np.int64))
    return inverse[: len(image_ids)], inverse[len(image_ids):], len(unique)


@dataclass(frozen=True)
class TokenLayout:
    """Token grouping shared by every head (and layer) of one key-space problem. CPU tensors.

    order: ``[n]`` int64, applied to ``cat([image, text])`` gives tokens sorted by block.
    is_image, token_sample, token_block: ``[n]`` for the sorted tokens.
    block_sizes: ``[2 · n_samples]`` float64 token count of each (sample, modality) block.
    """

    n_samples: int
    order: Tensor
    is_image: Tensor
    token_sample: Tensor
    token_block: Tensor
    block_sizes: Tensor

    @classmethod
    def of(cls, image_samples: Sequence | Tensor, text_samples: Sequence | Tensor) -> TokenLayout:
        image_sample, text_sample, n_samples = sample_codes(image_samples, text_samples)
        is_image = torch.cat([torch.ones(len(image_sample), dtype=torch.bool),
                              torch.zeros(len(text_sample), dtype=torch.bool)])
        token_sample = torch.cat([image_sample, text_sample])
        token_block = 2 * token_sample + (~is_image).long()
        order = torch.argsort(token_block, stable=True)
        token_block = token_block[order]
        return cls(
            n_samples=n_samples,
            order=order,
            is_image=is_image[order],
            token_sample=token_sample[order],
            token_block=token_block,
            block_sizes=torch.bincount(token_block, minlength=2 * n_samples).double(),
        )

    @property
    def n_tokens(self) -> int:
        return int(self.order.numel())

    @property
    def n_blocks(self) -> int:
        return 2 * self.n_samples

    @property
    def sizes(self) -> Tensor:
        """``[n_samples, 2]`` tokens of each sample per modality (image, text)."""
        return self.block_sizes.view(self.n_samples, 2)

    @property
    def block_starts(self) -> list[int]:
        """First sorted-token index of every block (empty blocks start where the next one does)."""
        return [0, *torch.cumsum(self.block_sizes.long(), 0).tolist()[:-1]]

    def arrange(self, image_keys: Tensor, text_keys: Tensor) -> Tensor:
        """``[..., n_image, d]`` and ``[..., n_text, d]`` → ``[..., n, d]`` in block order."""
        return torch.cat([image_keys, text_keys], dim=-2)[..., self.order.to(image_keys.device), :]
