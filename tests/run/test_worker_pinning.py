"""Under pytest-xdist on a machine with several GPUs, worker ``gwN`` measures on GPU ``N mod count``
(``GateSession._worker_device``), with the GPU count mocked: the rule is checked on any machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bias_suite.options import RunSettings
from bias_suite.run.session import GateSession


def session(worker: str | None, device: str = "auto", device_map: str | None = None) -> GateSession:
    return GateSession(models=("tiny-llava",), benchmarks=("shapes",),
                       settings=RunSettings(device=device, device_map=device_map), thresholds=Path("thresholds"),
                       worker=worker)


@pytest.mark.parametrize(("count", "worker", "device", "expected"), [
    (4, "gw0", "auto", "cuda:0"), (4, "gw5", "auto", "cuda:1"), (2, "gw3", "cuda", "cuda:1"),
    (1, "gw3", "auto", None),  # one GPU: every worker shares it
    (0, "gw1", "auto", None),  # no GPU: auto falls back to the CPU
    (4, None, "auto", None),  # not under xdist
    (4, "gw2", "cpu", None),  # an explicit device wins
    (4, "gw2", "cuda:3", None),  # an explicit index wins
])
def test_worker_n_takes_gpu_n_mod_count(monkeypatch, count, worker, device, expected):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    assert session(worker, device)._worker_device() == expected


def test_a_device_map_places_the_model_itself(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert session("gw1", device_map="auto")._worker_device() is None


def test_building_a_session_loads_nothing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    gate = session("gw1")
    assert gate._loaded == {} and gate._worker_device() == "cuda:1"
