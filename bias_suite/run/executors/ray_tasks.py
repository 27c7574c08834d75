"""Shards as Ray tasks, one per shard, each asking for a GPU when the gate runs on CUDA.

``address`` joins a running cluster (``ray start --head`` on the head node; ``auto`` finds the local one);
without it a local cluster starts for the launch and stops after it — or, when this process already
started Ray (a test fixture), that cluster is used and left running. Pitfalls this module handles (measured
with Ray 2.60): ``ray.init()`` without an address joins whatever cluster the machine recorded, so a new one
is asked for with ``address="local"``; a cluster started here gets a throw-away auth token set before
``import ray`` (else Ray writes ``~/.ray/auth_token`` and warns); an unreachable ``host:port`` makes
``ray.init`` retry for minutes, so it is probed first; a task that asks for a GPU the cluster does not have
waits forever, so the cluster's GPUs are checked first; tasks return their exit code (``max_retries=0``:
the launcher retries a failed shard once itself, whatever the cause).
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from collections.abc import Sequence

from bias_suite.run.executors import OUTPUT_TAIL, LaunchError, ShardJob, ShardOutcome, run_shard

PROBE_SECONDS = 5.0
OBJECT_STORE_BYTES = 256 * 1024**2  # outcomes are small: do not take 30 % of the machine's memory


def probe(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Fail within seconds when no Ray head answers at ``host:port`` (``auto`` and ``ray://`` are not probed)."""
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as error:
        raise LaunchError(f"--ray-address {address}: no Ray head answers there ({error}); start one with "
                          "`ray start --head` or leave --ray-address out to start a local cluster") from None


def task_options(gpu: bool) -> dict:
    """What one shard's task asks the cluster for."""
    return {"num_cpus": 1, "num_gpus": 1} if gpu else {"num_cpus": 1}


class RayExecutor:
    """Run the shards as Ray tasks on a cluster joined at ``address``, or on a local one started here."""

    name = "ray"

    def __init__(self, address: str | None = None, gpu: bool | None = None, num_cpus: int | None = None):
        """gpu: each task asks for a GPU (True), never (False), or when the cluster has any (None: the gate's
        ``--device auto``); num_cpus: CPUs of a local cluster started here (default: the machine's)."""
        self.address, self.gpu, self.num_cpus = address, gpu, num_cpus
        self._started = False

    def __enter__(self) -> RayExecutor:
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            ray = sys.modules["ray"]
        elif self.address:
            probe(self.address)
            ray = _import_ray()
            ray.init(address=self.address, log_to_driver=False, logging_level="warning")
            self._started = True
        else:
            if "ray" not in sys.modules and not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} & set(os.environ):
                os.environ["RAY_AUTH_MODE"] = "token"  # a token only this process knows; read at import
                os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
            ray = _import_ray()
            ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level="warning", object_store_memory=OBJECT_STORE_BYTES)
            self._started = True
        gpus = ray.cluster_resources().get("GPU", 0)
        if self.gpu and gpus < 1:
            self.__exit__()
            raise LaunchError("the gate runs on CUDA (--device cuda) but the Ray cluster has no GPU: join a cluster "
                              "with GPUs (--ray-address) or run the gate with --device cpu")
        self.gpu = bool(gpus >= 1) if self.gpu is None else self.gpu
        self._ray = ray
        return self

    def __exit__(self, *exc_info) -> None:
        if self._started:
            sys.modules["ray"].shutdown()
            self._started = False

    def run(self, jobs: Sequence[ShardJob]) -> list[ShardOutcome]:
        ray = self._ray
        task = ray.remote(max_retries=0)(run_shard)
        options = task_options(bool(self.gpu))
        refs = [task.options(name=f"bias-shard-{job.index}-of-{job.count}", **options).remote(job) for job in jobs]
        outcomes = []
        for job, ref in zip(jobs, refs):
            try:
                outcomes.append(ray.get(ref))
            except ray.exceptions.RayError as error:  # the worker or its node died, the task was cancelled
                outcomes.append(ShardOutcome(job.index, None, f"{type(error).__name__}: {error}"[-OUTPUT_TAIL:], None))
        return outcomes


def _import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise LaunchError("--executor ray needs Ray: pip install 'bias-suite[ray]'") from None
    return ray
