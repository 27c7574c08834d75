"""Shared fixtures: tiny checkpoints (built once per run), device/dtype from --device/--dtype, samples."""

from __future__ import annotations

import pytest
import torch

from bias_suite.benchmarks.sample import Sample
from bias_suite.models.loading import LoadedModel, load_model
from bias_suite.models.tiny import TINY_FAMILIES
from tests.gate_runs import shards, unsharded  # noqa: F401  (session fixtures: one gate run, sharded or not)
from tests.samples import make_samples

FAMILIES = tuple(TINY_FAMILIES)


@pytest.fixture(scope="session")
def bias_device_and_dtype(pytestconfig: pytest.Config):
    """``(torch.device, torch.dtype)`` chosen by ``--device`` / ``--dtype`` (the gate's options), so this
    repository's capture tests can also run on CUDA in bfloat16."""
    from bias_suite.models.loading import resolve_device

    return resolve_device(pytestconfig.option.bias_device, pytestconfig.option.bias_dtype)


@pytest.fixture(scope="session")
def load_tiny(bias_device_and_dtype):
    """``load_tiny(alias, attn_implementation="sdpa") -> LoadedModel``, one load per session and key.

    The returned models are shared: tests must not modify them.
    """
    device, dtype = bias_device_and_dtype
    loaded: dict[tuple[str, str], LoadedModel] = {}

    def load(alias: str, attn_implementation: str = "sdpa") -> LoadedModel:
        key = (alias, attn_implementation)
        if key not in loaded:
            loaded[key] = load_model(
                alias, device=str(device), dtype=str(dtype).removeprefix("torch."),
                attn_implementation=attn_implementation,
            )
        return loaded[key]

    return load


@pytest.fixture(params=FAMILIES)
def alias(request) -> str:
    """Every built-in tiny family in turn."""
    return request.param


@pytest.fixture(scope="session")
def tolerance(bias_device_and_dtype) -> dict[str, float]:
    """``atol``/``rtol`` for comparing two computations of the same quantity in the model dtype."""
    _, dtype = bias_device_and_dtype
    return {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=3e-2, rtol=3e-2),
            torch.float16: dict(atol=5e-3, rtol=5e-3)}[dtype]


@pytest.fixture
def samples() -> list[Sample]:
    return make_samples(3)
