"""Run a recipe: tasks in passes on a local process pool (or Ray), then the final outputs.

    run_dir/recipe.json        the validated recipe; a rerun with a different one is refused
    run_dir/tasks/inputs.json  the input files (size, mtime) and those not read, with reasons
    run_dir/tasks/plan.json    the tasks; tasks/pass-K/<task>.json are done-markers
    then clean/, removed/, quarantine.jsonl, tokenizer/, tokens/, report.{json,md}, plots/

Every file is written atomically and every stage is skipped when its output is
complete, so a killed run, rerun, redoes only unfinished tasks and gives the same
bytes as an uninterrupted one. SIGTERM or SIGINT stops the run between tasks
(`lm.data.stop`): the tasks in flight finish, and a rerun resumes. Cross-shard steps
combine their per-task signatures in this process between passes.

A rerun whose input files changed since planning (grown, modified, new or gone;
`inputs`) is refused rather than silently leaving the change out; ``replan=True``
(``--replan``) discards the run's work and plans again, as it does for a different
recipe. While no task has finished, a different recipe simply replaces the old one.
Before the first pass the tokenizer's vocabulary is checked against the characters
of a sample (`vocab_check`).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from lm.config import ConfigError
from lm.data.prepare import output, report, rundir, tokenize_stage
from lm.data.prepare.inputs import input_changes, scan_inputs, skipped_files
from lm.data.prepare.pipeline import (TaskOptions, combined_path, done_marker, kept_path, read_marker, run_task,
                                      signature_path)
from lm.data.prepare.plan import Pass, Task, plan_passes, plan_tasks
from lm.data.prepare.provenance import merge
from lm.data.prepare.quarantine import merge_quarantine
from lm.data.prepare.recipe import Recipe
from lm.data.prepare.steps import build_step
from lm.data.prepare.vocab_check import check_vocab_size
from lm.data.read import DataError
from lm.data.stop import Preempted, StopSignals, ignore_stop_signals
from lm.files import write_json_atomic

EXECUTORS = ("local", "ray")
Job = tuple[str, Task, Pass, TaskOptions]


def prepare(recipe: Recipe, run_dir: Path, *, workers: int = 1, executor: str = "local",
            progress: bool = True, replan: bool = False) -> dict:
    """Prepare the recipe's data in `run_dir` (resuming what is there, or planning it again
    with `replan`); return the report. `Preempted` if stopped by SIGTERM / SIGINT."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r} is not one of {EXECUTORS}")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: use 1 or more")
    run_dir = Path(run_dir)
    with rundir.hold_run_dir(run_dir), StopSignals() as stop:
        try:
            return _prepare(recipe, run_dir, workers, executor, progress, replan, stop)
        except Exception as e:
            if stop.received is None or isinstance(e, Preempted):
                raise
            raise Preempted(f"stopped by {stop.received} ({rundir.progress(run_dir)}); finished work is kept; "
                            "rerun the same command to resume") from e


def _prepare(recipe: Recipe, run_dir: Path, workers: int, executor: str, progress: bool, replan: bool,
             stop: StopSignals) -> dict:
    options = _task_options(recipe)
    tasks, inputs = _start(recipe, run_dir, options, replan)
    passes = plan_passes(recipe.steps)
    pool = None
    if executor == "local" and workers > 1:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=ignore_stop_signals)
    try:
        for pass_ in passes:
            jobs = [(str(run_dir), t, pass_, options) for t in tasks
                    if not done_marker(run_dir, pass_.index, t.id).exists()]
            desc = f"pass {pass_.index + 1}/{len(passes)}"
            if executor == "ray":
                from lm.data.prepare.ray_executor import run_ray

                run_ray(run_task, jobs, workers=workers, desc=desc, progress=progress, stop=stop)
            else:
                run_local(run_task, jobs, pool=pool, workers=workers, desc=desc, progress=progress, stop=stop)
            done = sum(done_marker(run_dir, pass_.index, t.id).exists() for t in tasks)
            stop.check(f"during {desc} ({done} of {len(tasks)} tasks done)")
            if pass_.collect is not None:
                _combine(run_dir, tasks, pass_)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    stop.check("after the passes, before the final outputs")
    return _finish(recipe, run_dir, tasks, passes, inputs, stop)


def run_local(fn: Callable[..., str], jobs: Sequence[Job], *, pool: ProcessPoolExecutor | None, workers: int,
              desc: str, progress: bool, stop: StopSignals) -> None:
    """Run `fn(*job)` for every job: in this process without a pool, else in the pool's
    processes, at most `workers` at a time. The first failure stops the run and is raised;
    after a stop signal no job starts, and those running finish."""
    with tqdm(total=len(jobs), desc=desc, unit="task", disable=not progress) as bar:
        if pool is None:
            for job in jobs:
                if stop.received is not None:
                    return
                fn(*job)
                bar.update(1)
            return
        queue, running = list(reversed(jobs)), set()
        while queue or running:
            while queue and len(running) < workers and stop.received is None:
                running.add(pool.submit(fn, *queue.pop()))
            if not running:
                return
            done, running = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                if future.exception() is not None:
                    wait(running)
                    raise future.exception()
                bar.update(1)


def _start(recipe: Recipe, run_dir: Path, options: TaskOptions, replan: bool) -> tuple[list[Task], dict]:
    """Record the recipe and its inputs and plan the tasks, or reload the plan after checking
    that neither the recipe nor the inputs changed."""
    recipe_path = run_dir / rundir.RECIPE
    settings = json.loads(recipe.fingerprint_json())
    if replan:
        rundir.discard(run_dir)
    elif recipe_path.exists() and json.loads(recipe_path.read_text("utf-8")) != settings:
        if rundir.has_finished_work(run_dir):
            raise DataError(f"{run_dir} was prepared with a different recipe (see {recipe_path}); rerun with "
                            "--replan to discard its work and prepare it again with this recipe, or use another "
                            "--output directory")
        rundir.discard(run_dir)  # nothing finished under the old recipe: start again with this one
    inputs = scan_inputs(recipe.sources, run_dir)
    inputs_path, plan_path = run_dir / "tasks" / "inputs.json", run_dir / "tasks" / "plan.json"
    if plan_path.exists():
        if not inputs_path.exists():  # planned before inputs were recorded: take them as they are now
            write_json_atomic(inputs, inputs_path)
        changes = input_changes(json.loads(inputs_path.read_text("utf-8")), inputs)
        if changes:
            raise DataError(f"the inputs changed since {run_dir} was planned ({'; '.join(changes)}); its work would "
                            "leave the change out. Rerun with --replan to prepare it again from the current inputs "
                            "(its finished work is discarded), or restore the inputs")
        return [Task.from_json(t) for t in json.loads(plan_path.read_text("utf-8"))], inputs
    tasks = plan_tasks(recipe, inputs)
    check_vocab_size(recipe, tasks, options)
    write_json_atomic(settings, recipe_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(inputs, inputs_path)
    write_json_atomic([t.to_json() for t in tasks], plan_path)
    return tasks, inputs


def _task_options(recipe: Recipe) -> TaskOptions:
    s = recipe.settings
    keys = ("text_field", "csv_column", "doc_separator", "hf_split", "limit")
    return TaskOptions(max_doc_chars=s["input"]["max_doc_chars"],
                       removed_text_chars=s["output"]["removed_text_chars"],
                       examples_per_reason=s["output"]["examples_per_reason"],
                       sources={src.name: {k: getattr(src, k) for k in keys} for src in recipe.sources})


def _combine(run_dir: Path, tasks: Sequence[Task], pass_: Pass) -> None:
    """The global phase of the cross-shard step ending `pass_` (skipped when done)."""
    out = combined_path(run_dir, pass_.collect.name)
    if out.exists():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    step = build_step(pass_.collect.name, pass_.collect.kwargs)
    step.combine([signature_path(run_dir, pass_.index, t.id, pass_.collect.name) for t in tasks], out)


def _finish(recipe: Recipe, run_dir: Path, tasks: Sequence[Task], passes: Sequence[Pass], inputs: dict,
            stop: StopSignals) -> dict:
    """Clean shards, quarantine file, tokenizer and token shards, then the report. When no
    document is left, the report is written and DataError says so (nothing to tokenize)."""
    s = recipe.settings
    last = passes[-1].index
    clean_dir = run_dir / "clean"
    if not (clean_dir / output.MANIFEST).exists():
        output.write_clean_shards([kept_path(run_dir, last, t.id) for t in tasks], clean_dir,
                                  s["output"]["docs_per_shard"])
    clean_docs = json.loads((clean_dir / output.MANIFEST).read_text())["num_docs"]
    num_quarantined = merge_quarantine([run_dir / "quarantine" / f"{t.id}.jsonl" for t in tasks],
                                       run_dir / "quarantine.jsonl")
    token_manifests = {}
    stop.check("after writing clean/, before the tokenizer")
    if s["tokenizer"] is not None and clean_docs > 0:
        token_manifests = tokenize_stage.tokenize_clean(clean_dir, run_dir, s["tokenizer"], s["tokens"]["group_by"])
    step_order = [spec.name for spec in recipe.steps]
    provenance = merge((read_marker(run_dir, p.index, t.id) for t in tasks for p in passes), step_order)
    rep = report.write_report(run_dir, provenance, step_order=step_order, num_tasks=len(tasks),
                              clean_docs=clean_docs, num_quarantined=num_quarantined,
                              token_manifests=token_manifests,
                              files_read=sum(len(src["files"]) for src in inputs["sources"]),
                              skipped=skipped_files(inputs))
    if s["tokenizer"] is not None and clean_docs == 0:
        raise DataError(f"no document survived the steps, so there is nothing to train a tokenizer on; "
                        f"see {run_dir / 'report.md'} for why they were dropped")
    return rep
