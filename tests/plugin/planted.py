"""Checkpoints with a known amount of visual-key separation, built from the tiny LLaVA.

``control``: the projector is rescaled so image embeddings have the mean and spread of the text
embedding table (in distribution). ``planted``: the same, plus a large offset along one direction
added to every image embedding, so visual keys form a far cluster at every layer.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bias_suite.benchmarks import load_benchmark
from bias_suite.models.loading import load_model
from bias_suite.models.prompts import encode_batch

# The options every gate run of these tests uses: small and quick.
FAST = ("-p", "no:cacheprovider", "--samples", "8", "--benchmark", "shapes", "-q")


@torch.no_grad()
def build_separated_llava(directory: Path, offset: float) -> Path:
    loaded = load_model("tiny-llava", device="cpu", dtype="float32")
    model = loaded.model
    projector = model.model.multi_modal_projector
    samples = load_benchmark("shapes", n_samples=8).samples
    inputs = encode_batch(loaded.processor, samples, "cpu", torch.float32)
    features = model.model.get_image_features(pixel_values=inputs["pixel_values"])
    features = getattr(features, "pooler_output", features)
    image_embeddings = torch.cat(list(features)) if isinstance(features, (list, tuple)) else features
    image_embeddings = image_embeddings.reshape(-1, image_embeddings.shape[-1])
    text_embeddings = model.get_input_embeddings().weight
    scale = text_embeddings.std() / image_embeddings.std()
    projector.linear_2.weight *= scale
    projector.linear_2.bias *= scale
    projector.linear_2.bias -= (image_embeddings * scale).mean(0) - text_embeddings.mean(0)
    direction = torch.randn(image_embeddings.shape[-1], generator=torch.Generator().manual_seed(0))
    projector.linear_2.bias += offset * direction / direction.norm()
    model.save_pretrained(directory)
    loaded.processor.save_pretrained(directory)
    return directory
