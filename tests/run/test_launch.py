"""bias-suite launch: the shards of a run on an engine — local subprocesses, a local Ray cluster, a job array
through submitit's local executor — merged into the unsharded run's card and exit code; a failed shard runs
once more and then stays in the card and the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from bias_suite.run.executors import LaunchError, ShardJob, ShardOutcome, run_with_retry
from bias_suite.run.executors.local import LocalExecutor
from bias_suite.run.launch import LaunchOptions, check_gate_args, launch, wants_gpu
from tests.gate_runs import GATE, comparable


def merged_card(folder) -> dict:
    return json.loads((folder / "card.json").read_text())


class StoredShards:
    """An engine that answers with the cards the ``shards`` fixture measured (``broken``: shard index → how
    many of its first attempts crash)."""

    name = "stored"

    def __init__(self, folder, broken: dict[int, int] | None = None):
        self.folder, self.broken, self.runs = folder, dict(broken or {}), []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def run(self, jobs):
        outcomes = []
        for job in jobs:
            self.runs.append(job.index)
            if self.broken.get(job.index, 0) > 0:
                self.broken[job.index] -= 1
                outcomes.append(ShardOutcome(job.index, -9, "Killed", None))
            else:
                card = (self.folder / f"shard-{job.index}.json").read_text()
                outcomes.append(ShardOutcome(job.index, 7, "", card))
        return outcomes


def test_a_shard_that_crashes_once_is_run_again_and_the_run_is_whole(shards, unsharded, tmp_path, monkeypatch):
    monkeypatch.chdir(shards[0])
    engine = StoredShards(shards[0], broken={2: 1})
    result = launch(LaunchOptions(2, GATE, reports=(str(tmp_path / "card.json"),)), engine, tmp_path / "cards")
    assert engine.runs == [1, 2, 2] and [outcome.attempts for outcome in result.shards] == [1, 2]
    assert result.exit_code == unsharded[0]
    assert comparable(merged_card(tmp_path)) == comparable(unsharded[1])


def test_a_shard_that_fails_twice_stays_in_the_card_and_the_exit_code(shards, tmp_path, monkeypatch):
    monkeypatch.chdir(shards[0])
    result = launch(LaunchOptions(2, GATE, reports=(str(tmp_path / "card.json"),)),
                    StoredShards(shards[0], broken={1: 2}), tmp_path / "cards")
    assert result.exit_code == 6  # its cases are errors: INCONCLUSIVE, never a pass
    card = merged_card(tmp_path)
    assert any(line.startswith("shard 1/2 failed, its cells tiny-llava × photos") and "exit code -9" in line
               for line in card["problems"])
    assert set(card["verdicts"].values()) == {"INCONCLUSIVE"}


def test_when_no_shard_writes_a_card_the_launch_exits_with_their_code(tmp_path):
    assert launch(LaunchOptions(2, GATE), StoredShards(tmp_path, broken={1: 2, 2: 2}), tmp_path).exit_code == 1
    engine = LocalExecutor()
    result = launch(LaunchOptions(1, ("--model=no/such-model-here", "--samples=3")), engine, tmp_path / "cards")
    assert result.exit_code == 4 and result.outcome is None and result.shards[0].attempts == 2


@pytest.mark.parametrize("gate_option", ["--bias-report=x.json", "--update-thresholds", "--bias-shard=1/2",
                                         "--reason=x"])
def test_options_that_belong_to_the_launcher_are_refused_after_the_dashes(gate_option):
    with pytest.raises(LaunchError, match="is the launcher's: pass"):
        check_gate_args(["--model=x", gate_option])


def test_a_shard_asks_for_a_gpu_when_the_gate_runs_on_cuda():
    assert wants_gpu(["--device=cuda:1"]) is True and wants_gpu(["--bias-device", "cpu"]) is False
    assert wants_gpu(["--model=x"]) is None  # auto: where the engine has one


def test_local_shards_are_spread_over_the_gpus():
    job = ShardJob(5, 8, ("--model=x",), ".")
    assert LocalExecutor(gpus=4).pinned(job).env == {"CUDA_VISIBLE_DEVICES": "0"}
    assert LocalExecutor(gpus=1).pinned(job).env == {}
    assert LocalExecutor(gpus=4).pinned(replace(job, env={"CUDA_VISIBLE_DEVICES": "7"})).env["CUDA_VISIBLE_DEVICES"] \
        == "7"


def test_retry_reports_which_shard_runs_again(shards):
    said = []
    run_with_retry(StoredShards(shards[0], broken={1: 1}), [ShardJob(1, 2, GATE, ".")], report=said.append)
    assert said == ["retrying shard 1/2 (exit code -9)"]


# --------------------------------------------------------------------------- the engines, for real


@pytest.mark.slow
def test_launch_with_local_processes_from_the_command_line(unsharded, tmp_path):
    completed = subprocess.run([sys.executable, "-m", "bias_suite", "launch", "--executor=local", "--shards=2",
                                "--report=card.json", "--", *GATE], cwd=tmp_path, capture_output=True, text=True,
                               timeout=600, check=False)
    assert completed.returncode == unsharded[0], completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "shard 2/2: exit code 7 (NO BASELINE), 1 attempt(s)" in completed.stdout
    assert comparable(merged_card(tmp_path)) == comparable(unsharded[1])


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs for this module, stopped afterwards (a throw-away auth token, set before
    ``import ray``, keeps it from writing ~/.ray/auth_token)."""
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED")}
    if "ray" not in sys.modules:
        import secrets

        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             logging_level="warning", object_store_memory=100 * 1024**2)
    yield ray
    ray.shutdown()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.mark.slow
def test_launch_on_a_local_ray_cluster_gives_the_unsharded_card(ray_cluster, unsharded, tmp_path, monkeypatch):
    from bias_suite.run.executors.ray_tasks import RayExecutor

    monkeypatch.chdir(tmp_path)
    result = launch(LaunchOptions(2, GATE, reports=("card.json",)), RayExecutor(), tmp_path / "cards")
    assert result.exit_code == unsharded[0] and [outcome.attempts for outcome in result.shards] == [1, 1]
    assert comparable(merged_card(tmp_path)) == comparable(unsharded[1])
    assert ray_cluster.is_initialized()  # a cluster the launcher did not start is left running


def test_a_ray_cluster_without_gpus_is_refused_for_a_cuda_gate(ray_cluster):
    from bias_suite.run.executors.ray_tasks import RayExecutor, task_options

    assert task_options(True) == {"num_cpus": 1, "num_gpus": 1} and "num_gpus" not in task_options(False)
    with pytest.raises(LaunchError, match="the Ray cluster has no GPU"), RayExecutor(gpu=True):
        pass


def test_an_unreachable_ray_address_fails_within_seconds():
    from bias_suite.run.executors.ray_tasks import probe

    started = time.perf_counter()
    with pytest.raises(LaunchError, match=r"--ray-address 127\.0\.0\.1:9: no Ray head answers there"):
        probe("127.0.0.1:9", timeout=2)
    assert time.perf_counter() - started < 10


@pytest.mark.slow
def test_launch_as_a_job_array_through_submitit_gives_the_unsharded_card(unsharded, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from bias_suite.run.executors.slurm_array import SlurmExecutor

    monkeypatch.chdir(tmp_path)
    engine = SlurmExecutor(tmp_path / "submitit", cluster="local", timeout_min=10)
    result = launch(LaunchOptions(2, GATE, reports=("card.json",)), engine, tmp_path / "cards")
    assert result.exit_code == unsharded[0], [outcome.output_tail for outcome in result.shards]
    assert comparable(merged_card(tmp_path)) == comparable(unsharded[1])


def test_slurm_parameters_reach_the_sbatch_script(tmp_path, monkeypatch):
    """Without Slurm: fake ``srun`` / ``sbatch`` on PATH; the launcher's options become one job array."""
    pytest.importorskip("submitit")
    from bias_suite.run.executors import run_shard
    from bias_suite.tools.launch import build_parser, executor_for

    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_folder / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho Submitted batch job 4242\n')
    for name in ("srun", "sbatch"):
        (bin_folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    args = build_parser().parse_args(["--executor=slurm", "--shards=3", "--slurm-partition=gpu",
                                      "--slurm-timeout-min=30", "--slurm-cpus-per-task=8"])
    engine = executor_for(args, ["--model=x", "--device=cuda"], tmp_path / "cards")
    jobs = engine.executor().map_array(run_shard, [ShardJob(k, 3, ("--model=x",), ".") for k in (1, 2, 3)])
    assert [job.job_id for job in jobs] == ["4242_0", "4242_1", "4242_2"]
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("#SBATCH --array=0-2%3", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=30", "#SBATCH --cpus-per-task=8"):
        assert line in script, script
