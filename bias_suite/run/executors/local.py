"""Shards as local subprocesses, all at once (or ``parallel`` at a time), on the machine of the launcher.

With several GPUs, shard K sees only GPU ``(K - 1) mod count`` (``CUDA_VISIBLE_DEVICES``), unless the
caller already chose the devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from bias_suite.run.executors import ShardJob, ShardOutcome, run_shard


class LocalExecutor:
    """Run the shards as subprocesses of this machine."""

    name = "local"

    def __init__(self, parallel: int | None = None, gpus: int = 0):
        """parallel: shards at a time (default: all); gpus: GPUs to spread the shards over (0 or 1: none)."""
        self.parallel, self.gpus = parallel, gpus

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def pinned(self, job: ShardJob) -> ShardJob:
        """The job with its GPU chosen, when there are several to spread over."""
        if self.gpus < 2 or "CUDA_VISIBLE_DEVICES" in job.env:
            return job
        return replace(job, env={**job.env, "CUDA_VISIBLE_DEVICES": str((job.index - 1) % self.gpus)})

    def run(self, jobs: Sequence[ShardJob]) -> list[ShardOutcome]:
        if not jobs:
            return []
        with ThreadPoolExecutor(max_workers=self.parallel or len(jobs)) as pool:
            return list(pool.map(run_shard, [self.pinned(job) for job in jobs]))
