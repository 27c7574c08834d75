"""Shards as one Slurm job array through submitit: one array index per shard (``sbatch --array=0-(N-1)``).

``cluster="local"`` runs the same array with submitit's local executor (subprocesses of this machine): how
the tests run it without Slurm. Pitfalls this module handles (measured with submitit 1.5.4): the job body
returns the exit code rather than raising (``submitit.helpers.CommandFunction`` loses it, and 1 is a verdict);
``timeout_min`` is always set (submitit's defaults are 2 minutes locally, 5 on Slurm); the local executor
hides the GPUs (``CUDA_VISIBLE_DEVICES=""``) unless ``gpus_per_node`` > 0. submitit's own requeue of a
preempted job comes on top of the launcher's one retry. The folder must be on a filesystem the nodes share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from bias_suite.run.executors import OUTPUT_TAIL, LaunchError, ShardJob, ShardOutcome, run_shard


class SlurmExecutor:
    """Run the shards as a Slurm job array (or submitit's local stand-in for one)."""

    name = "slurm"

    def __init__(self, folder: str | Path, cluster: str = "slurm", partition: str | None = None,
                 gpus_per_node: int = 0, timeout_min: int = 60, cpus_per_task: int | None = None,
                 array_parallelism: int | None = None, additional: Mapping[str, object] | None = None):
        """folder: where submitit keeps each job's pickles and logs (``FOLDER/<job id>``); cluster: ``slurm``
        or ``local``; the rest are the job's Slurm parameters (``additional``: any other ``#SBATCH`` key, e.g.
        ``{"account": "vision"}``)."""
        self.folder, self.cluster = Path(folder), cluster
        self.parameters = {"name": "bias-gate-shard", "timeout_min": timeout_min, "gpus_per_node": gpus_per_node,
                           "tasks_per_node": 1, "nodes": 1, "cpus_per_task": cpus_per_task,
                           "slurm_partition": partition, "slurm_array_parallelism": array_parallelism,
                           "slurm_additional_parameters": dict(additional) if additional else None}

    def __enter__(self) -> SlurmExecutor:
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def executor(self):
        """The configured submitit executor."""
        try:
            import submitit
        except ImportError:
            raise LaunchError("--executor slurm needs submitit: pip install 'bias-suite[slurm]'") from None
        try:
            executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.cluster)
        except RuntimeError as error:  # no sbatch / srun on this machine
            raise LaunchError(f"--executor slurm: {error} (run the launcher on a Slurm login node)") from None
        executor.update_parameters(**{key: value for key, value in self.parameters.items() if value is not None})
        return executor

    def run(self, jobs: Sequence[ShardJob]) -> list[ShardOutcome]:
        if not jobs:
            return []
        submitted = self.executor().map_array(run_shard, list(jobs))  # one sbatch --array for all of them
        outcomes = []
        for job, array_job in zip(jobs, submitted):
            try:
                outcomes.append(array_job.result())
            except Exception as error:  # submitit's FailedJobError / UncompletedJobError, whatever the cause
                text = f"{type(error).__name__} (job {array_job.job_id}): {error}"
                outcomes.append(ShardOutcome(job.index, None, text[-OUTPUT_TAIL:], None, where=str(array_job.job_id)))
        return outcomes
