"""``bias-suite launch --executor=ray|slurm|local --shards=N [--report PATH…] -- <gate options>``.

Runs the gate in N shards — Ray tasks, one Slurm array index each (submitit), or local subprocesses — each
``python -m pytest -p bias_suite.plugin <gate options> --bias-shard=K/N`` in this directory, runs a failed
shard once more, merges the cards and exits with the gate's code (:mod:`bias_suite.run.launch`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from bias_suite import options as validate
from bias_suite.errors import BiasSuiteError
from bias_suite.options import argparse_type as checked
from bias_suite.options import unwritable_destinations
from bias_suite.tools.command import CommandParser, fail

EXECUTORS = ("local", "ray", "slurm")
DESCRIPTION = ("Run the gate in N shards of its (model × benchmark) cells — Ray tasks, a Slurm job array (submitit) "
               "or local subprocesses — retry a failed shard once, merge the shards' cards into one card and exit "
               "with the gate's code: the unsharded run's.")


def build_parser() -> CommandParser:
    parser = CommandParser(prog="bias-suite launch", usage="%(prog)s --executor {local,ray,slurm} --shards N "
                           "[options] -- GATE_OPTIONS…", description=DESCRIPTION,
                           epilog="Everything after -- goes to every shard's pytest, e.g. -- --model=ckpts/a "
                                  "--model=ckpts/b --benchmark=shapes --device=cuda.")
    parser.add_argument("--executor", choices=EXECUTORS, default="local", help="where the shards run (default local)")
    parser.add_argument("--shards", type=checked(validate.parse_positive), required=True, metavar="N",
                        help="how many shards of the (model × benchmark) cells")
    parser.add_argument("--report", action="append", default=[], type=checked(validate.parse_report_path),
                        metavar="PATH", help="write the merged card: .md, .json or .html (repeatable)")
    parser.add_argument("--shard-dir", metavar="DIR", help="keep the shards' cards here (default: a temporary folder; "
                                                          "./bias-shards for Slurm, which needs a shared one)")
    parser.add_argument("--retries", type=int, default=1, metavar="N",
                        help="how many more times a failed shard runs (default 1)")
    parser.add_argument("--update-thresholds", action="store_true", help="bless the merged run")
    parser.add_argument("--reason", metavar="TEXT", help="why the thresholds change (needed to bless)")
    parser.add_argument("--accept-regression", action="store_true", help="bless a run worse than the current file")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every judged row and layer")
    local = parser.add_argument_group("local")
    local.add_argument("--parallel", type=checked(validate.parse_positive), metavar="P",
                       help="shards at a time (default: all; with several GPUs shard K gets GPU (K-1) mod count)")
    ray = parser.add_argument_group("ray")
    ray.add_argument("--ray-address", metavar="HOST:PORT", help="join this cluster (auto: the local one); default: "
                                                                 "start a local cluster for the launch")
    ray.add_argument("--ray-cpus", type=checked(validate.parse_positive), metavar="N",
                     help="CPUs of the local cluster started here (default: the machine's)")
    slurm = parser.add_argument_group("slurm (submitit)")
    slurm.add_argument("--slurm-partition", metavar="NAME")
    slurm.add_argument("--slurm-gpus-per-node", type=int, metavar="G",
                       help="GPUs per shard (default 1 with --device cuda, else 0)")
    slurm.add_argument("--slurm-timeout-min", type=checked(validate.parse_positive), default=60, metavar="MIN",
                       help="time limit of each shard (default 60)")
    slurm.add_argument("--slurm-cpus-per-task", type=checked(validate.parse_positive), metavar="C")
    slurm.add_argument("--slurm-array-parallelism", type=checked(validate.parse_positive), metavar="A",
                       help="shards running at once (default: all)")
    slurm.add_argument("--slurm-cluster", choices=("slurm", "local"), default="slurm",
                       help="local: submitit's local executor, the same job array without Slurm (for testing)")
    return parser


def executor_for(args, gate_args, shard_dir: Path):
    from bias_suite.run.launch import wants_gpu

    gpu = wants_gpu(gate_args)
    if args.executor == "ray":
        from bias_suite.run.executors.ray_tasks import RayExecutor

        return RayExecutor(address=args.ray_address, gpu=gpu, num_cpus=args.ray_cpus)
    if args.executor == "slurm":
        from bias_suite.run.executors.slurm_array import SlurmExecutor

        gpus = args.slurm_gpus_per_node if args.slurm_gpus_per_node is not None else int(bool(gpu))
        return SlurmExecutor(shard_dir / "submitit", cluster=args.slurm_cluster,
                             partition=args.slurm_partition, gpus_per_node=gpus, timeout_min=args.slurm_timeout_min,
                             cpus_per_task=args.slurm_cpus_per_task,
                             array_parallelism=args.slurm_array_parallelism or args.shards)
    from bias_suite.run.executors.local import LocalExecutor

    gpus = 0
    if gpu is not False:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return LocalExecutor(parallel=args.parallel, gpus=gpus)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    own, gate_args = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(own)
    if not gate_args:
        parser.error("give the gate's options after --, e.g. -- --model=ckpts/a --benchmark=shapes")
    if args.update_thresholds and not (args.reason or "").strip():
        parser.error("--update-thresholds needs --reason TEXT: say why the thresholds change")
    from bias_suite.run.launch import LaunchOptions, gate_option, launch

    blessed = gate_option(gate_args, "thresholds", "thresholds") if args.update_thresholds else None
    problems = unwritable_destinations(args.report, blessed)
    if problems:
        return fail("launch", "cannot write " + "; ".join(problems))

    on_slurm = args.executor == "slurm" and args.slurm_cluster == "slurm"  # its nodes need a shared folder
    kept = args.shard_dir or ("bias-shards" if on_slurm else None)
    shard_dir = Path(kept) if kept else Path(tempfile.mkdtemp(prefix="bias-shards-"))
    options = LaunchOptions(shards=args.shards, gate_args=tuple(gate_args), reports=tuple(args.report),
                            retries=args.retries, update=args.update_thresholds, reason=args.reason,
                            accept_regression=args.accept_regression)
    try:
        result = launch(options, executor_for(args, gate_args, shard_dir), shard_dir,
                        report=lambda line: print(f"bias-suite launch: {line}", file=sys.stderr))
    except (BiasSuiteError, ValueError) as error:
        return fail("launch", str(error))
    finally:
        if not kept:
            shutil.rmtree(shard_dir, ignore_errors=True)
    for outcome in result.shards:
        where = f" on {outcome.where}" if outcome.where else ""
        print(f"shard {outcome.index}/{args.shards}: {outcome.describe()}, {outcome.attempts} attempt(s), "
              f"{outcome.seconds:.1f} s{where}")
        if outcome.failed:
            print("\n".join(f"  | {line}" for line in outcome.output_tail.strip().splitlines()[-20:]))
    if kept:
        print(f"shard cards: {', '.join(str(path) for path in result.cards)}")
    if result.outcome is None:
        print("no shard wrote a card: nothing to merge", file=sys.stderr)
        return result.exit_code
    print("\n".join(result.outcome.card.terminal_lines(verbose=args.verbose)))
    return result.exit_code
