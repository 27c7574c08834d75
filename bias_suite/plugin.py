"""pytest plugin: options and fixtures only; the library does the work.

Registered through the ``pytest11`` entry point ``bias_suite.plugin`` (the root ``conftest.py`` loads
it under the same name for a source checkout).
"""

from __future__ import annotations

import argparse

import pytest

from bias_suite.loading import DTYPES

DEVICE_OPTION = "--device"
DTYPE_OPTION = "--dtype"


def _device_choice(value: str) -> str:
    if value == "auto" or value == "cpu" or value.startswith("cuda"):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not a device: use auto, cpu, cuda or cuda:N")


def _dtype_choice(value: str) -> str:
    if value == "auto" or value in DTYPES:
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not a dtype: use auto, {', '.join(DTYPES)}")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bias", "bias-suite: intrinsic text bias of multimodal LLMs")
    group.addoption(DEVICE_OPTION, dest="bias_device", default="auto", type=_device_choice,
                    help="device for models under test: auto (CUDA when present), cpu, cuda, cuda:N")
    group.addoption(DTYPE_OPTION, dest="bias_dtype", default="auto", type=_dtype_choice,
                    help="weight dtype: auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16")


@pytest.fixture(scope="session")
def bias_device_and_dtype(pytestconfig: pytest.Config):
    """``(torch.device, torch.dtype)`` chosen by ``--device`` / ``--dtype``."""
    from bias_suite.loading import resolve_device

    return resolve_device(pytestconfig.option.bias_device, pytestconfig.option.bias_dtype)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, share the CPU cores between workers: torch's default of one intra-op
    thread per core in every worker oversubscribes the machine and makes small tensor work crawl."""
    import os

    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))
