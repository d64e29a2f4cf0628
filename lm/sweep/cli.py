"""`lm sweep`: plan, run, inspect and submit scaling-law sweeps.

    lm sweep plan   --config experiments/sweeps/isoflop_cpu.py [--config.S.F=V ...]
    lm sweep run    --config FILE --workdir DIR [--parallel K] [--stop-timeout S]
                    [--config.S.F=V ...]
    lm sweep status --workdir DIR
    lm sweep eval   --workdir DIR --task TASK [TASK ...] [--num-fewshot K] [--limit N]
                    [--checkpoints all|final] [--plot PNG]
    lm sweep slurm  --config FILE --workdir DIR [--partition P --time T --gpus-per-node G
                    --nodes N --signal SIG@SECONDS --no-requeue] [--submit] [--config.S.F=V ...]
    lm sweep study  --config experiments/studies/NAME.py --workdir DIR [--parallel K]
                    [--config.S.F=V ...]

`--config.S.F=V` overrides apply to every run (fields the sweep plans are refused; a study
applies them to every sweep and its backtest). `run` exits 1 when any run failed, `study`
when a run failed or is not done (before fitting); rerunning either resumes.

SIGTERM or Ctrl-C stops `run` (and `study`) cleanly: the trainers save a checkpoint and
stop, no further run starts, and the command exits 75 (preempted, checkpoint saved: rerun
the same command to resume); `run` also exits 75 when a trainer was stopped by a signal of
its own. A `slurm` job asks for SIGTERM `--signal` seconds before its time limit and
requeues a run whose trainer exited 75 (see lm.sweep.slurm).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lm.config import ConfigError


def _plan(args: argparse.Namespace, overrides: list[str]) -> None:
    from lm.sweep.grid import expand, load_sweep
    from lm.sweep.plan import format_table

    sweep = load_sweep(args.config)
    print(format_table(expand(sweep, overrides), n_kind=sweep.n_kind))


def _run(args: argparse.Namespace, overrides: list[str]) -> None:
    from lm.sweep.runner import run_sweep
    from lm.errors import PREEMPTED_EXIT

    final = run_sweep(Path(args.config), Path(args.workdir), overrides, parallel=args.parallel,
                      stop_timeout=args.stop_timeout)  # a signal: SweepStopped, exit 75
    failed = [s.name for s in final if s.status == "failed"]
    if failed:
        print(f"lm sweep run: {len(failed)} run(s) failed: {', '.join(failed)}; see "
              f"{Path(args.workdir) / 'runs'}/<name>/stderr.log", file=sys.stderr)
        raise SystemExit(1)
    interrupted = [s.name for s in final if s.status == "interrupted"]
    if interrupted:  # a trainer stopped by a signal sent to it, not to the runner
        print(f"lm sweep run: {len(interrupted)} run(s) interrupted by a signal: "
              f"{', '.join(interrupted)}; rerun the same command to resume them", file=sys.stderr)
        raise SystemExit(PREEMPTED_EXIT)


def _status(args: argparse.Namespace, overrides: list[str]) -> None:
    from lm.sweep.status import status_report

    if overrides:
        raise ConfigError("lm sweep status takes no --config.* overrides; the sweep's own are used")
    print(status_report(Path(args.workdir)))


def _eval(args: argparse.Namespace, overrides: list[str]) -> None:
    from lm.sweep.task_eval import evaluate_sweep
    from lm.sweep.task_table import read_task_results

    if overrides:
        raise ConfigError("lm sweep eval takes no --config.* overrides; each run's config is used")
    path = evaluate_sweep(Path(args.workdir), args.task, num_fewshot=args.num_fewshot, limit=args.limit,
                          checkpoints=args.checkpoints)
    if args.plot:
        from lm.sweep.task_plots import plot_task_metrics

        print(f"[sweep eval] plot: {plot_task_metrics(read_task_results(path), Path(args.plot))}")


def _study(args: argparse.Namespace, overrides: list[str]) -> None:
    from lm.sweep.study import StudyError, run_study

    try:
        run_study(Path(args.config), Path(args.workdir), overrides, parallel=args.parallel)
    except StudyError as err:
        print(f"lm sweep study: error: {err}", file=sys.stderr)
        raise SystemExit(1)


def _slurm(args: argparse.Namespace, overrides: list[str]) -> None:
    from lm.sweep.runner import prepare, statuses
    from lm.sweep.slurm import SlurmOptions, submit, write_job

    options = SlurmOptions(partition=args.partition, time=args.time,
                           gpus_per_node=args.gpus_per_node, nodes=args.nodes,
                           signal=SlurmOptions.signal if args.signal is None else args.signal,
                           requeue=args.requeue)
    options.check()
    workdir = Path(args.workdir)
    specs = prepare(Path(args.config), workdir, overrides)
    todo = [spec for spec, s in zip(specs, statuses(workdir)) if s.status != "done"]
    if not todo:
        print(f"all {len(specs)} runs in {workdir} are done; nothing to submit")
        return
    script = write_job(workdir, todo, options)
    print(f"{script} ({len(todo)} of {len(specs)} runs)")
    if args.submit:
        try:
            print(submit(script))
        except RuntimeError as err:
            print(f"lm sweep slurm: error: {err}", file=sys.stderr)
            raise SystemExit(1)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `sweep` and its subcommands (plan, run, status, eval, slurm, study) to the `lm` parser; each
    sets `run(args, overrides)` like the other `lm` commands."""
    sweep = subparsers.add_parser("sweep", help="plan, run and inspect scaling-law sweeps",
                                  description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = sweep.add_subparsers(dest="sweep_command", required=True)

    plan = commands.add_parser("plan", help="print the runs a sweep file plans")
    plan.add_argument("--config", required=True, help="sweep file with get_sweep()")
    plan.set_defaults(run=_plan)

    run = commands.add_parser("run", help="run (or resume) a sweep locally, one subprocess per run")
    run.add_argument("--config", required=True, help="sweep file with get_sweep()")
    run.add_argument("--workdir", required=True, help="sweep directory; rerunning resumes")
    run.add_argument("--parallel", type=int, default=1, help="runs trained at once (default 1)")
    run.add_argument("--stop-timeout", type=float, default=300.0, metavar="SECONDS",
                     help="after SIGTERM or Ctrl-C, how long the trainers get to save a "
                     "checkpoint before they are killed (default 300)")
    run.set_defaults(run=_run)

    status = commands.add_parser("status", help="show each run's status; write results.csv")
    status.add_argument("--workdir", required=True)
    status.set_defaults(run=_status)

    evaluate = commands.add_parser("eval", help="few-shot task metrics of every finished run and its "
                                   "kept checkpoints; write task_results.csv (resumable)")
    evaluate.add_argument("--workdir", required=True, help="sweep directory")
    evaluate.add_argument("--task", required=True, nargs="+", action="extend", metavar="TASK",
                          help="names of files in experiments/tasks/ or paths to task files")
    evaluate.add_argument("--num-fewshot", type=int, help="shots per prompt (default: the task's)")
    evaluate.add_argument("--limit", type=int, help="evaluate only the first N examples of each task")
    evaluate.add_argument("--checkpoints", choices=("all", "final"), default="all",
                          help="every checkpoint kept along each run (default) or its final one")
    evaluate.add_argument("--plot", metavar="PNG", help="also draw the task metrics against compute "
                          "and held-out loss (lm.sweep.task_plots) into this PNG")
    evaluate.set_defaults(run=_eval)

    slurm = commands.add_parser("slurm", help="write (and --submit) a Slurm job array, one task per run")
    slurm.add_argument("--config", required=True, help="sweep file with get_sweep()")
    slurm.add_argument("--workdir", required=True, help="sweep directory, on a filesystem all nodes share")
    slurm.add_argument("--partition", default="")
    slurm.add_argument("--time", default="", help="time limit per run, e.g. 24:00:00")
    slurm.add_argument("--gpus-per-node", type=int, default=0)
    slurm.add_argument("--nodes", type=int, default=1, help="nodes per run (multi-host training)")
    slurm.add_argument("--signal", metavar="SIG@SECONDS",
                       help="signal the trainer SECONDS before the time limit so it saves and "
                       "exits 75 (sbatch --signal; default TERM@120; 'none': no signal)")
    slurm.add_argument("--requeue", action=argparse.BooleanOptionalAction, default=True,
                       help="requeue a task whose trainer exited 75 (preempted, checkpoint "
                       "saved), so it resumes (default: on)")
    slurm.add_argument("--submit", action="store_true", help="submit the script with sbatch")
    slurm.set_defaults(run=_slurm)

    study = commands.add_parser("study", help="run a study: several sweeps, a fit per step and "
                                "a backtest run (resumable)")
    study.add_argument("--config", required=True, help="study file with get_study()")
    study.add_argument("--workdir", required=True, help="study directory; rerunning resumes")
    study.add_argument("--parallel", type=int, default=1, help="runs trained at once (default 1)")
    study.set_defaults(run=_study)
