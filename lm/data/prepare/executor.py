"""Run a recipe: tasks in passes on a local process pool (or Ray), then the final outputs.

    run_dir/recipe.json        the validated recipe; a rerun with a different one is refused
    run_dir/tasks/plan.json    the tasks; tasks/pass-K/<task>.json are done-markers
    then clean/, removed/, quarantine.jsonl, tokenizer/, tokens/, report.{json,md}, plots/

Every file is written atomically and every stage is skipped when its output is
complete, so a killed run, rerun, redoes only unfinished tasks and gives the same
bytes as an uninterrupted one. Cross-shard steps combine their per-task
signatures in this process between passes.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from lm.config import ConfigError
from lm.data.prepare import output, report, tokenize_stage
from lm.data.prepare.pipeline import TaskOptions, combined_path, kept_path, read_marker, run_task, signature_path
from lm.data.prepare.plan import Pass, Task, plan_passes, plan_tasks
from lm.data.prepare.provenance import merge
from lm.data.prepare.quarantine import merge_quarantine
from lm.data.prepare.recipe import Recipe
from lm.data.prepare.steps import build_step
from lm.data.read import DataError
from lm.files import write_json_atomic

EXECUTORS = ("local", "ray")
Job = tuple[str, Task, Pass, TaskOptions]


def prepare(recipe: Recipe, run_dir: Path, *, workers: int = 1, executor: str = "local",
            progress: bool = True) -> dict:
    """Prepare the recipe's data in `run_dir` (resuming what is there); return the report."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r} is not one of {EXECUTORS}")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: use 1 or more")
    run_dir = Path(run_dir)
    tasks = _start(recipe, run_dir)
    passes = plan_passes(recipe.steps)
    options = _task_options(recipe)
    pool = None
    if executor == "local" and workers > 1:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for pass_ in passes:
            jobs = [(str(run_dir), t, pass_, options) for t in tasks]
            desc = f"pass {pass_.index + 1}/{len(passes)}"
            if executor == "ray":
                from lm.data.prepare.ray_executor import run_ray

                run_ray(run_task, jobs, workers=workers, desc=desc, progress=progress)
            else:
                run_local(run_task, jobs, pool=pool, desc=desc, progress=progress)
            if pass_.collect is not None:
                _combine(run_dir, tasks, pass_)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return _finish(recipe, run_dir, tasks, passes)


def run_local(fn: Callable[..., str], jobs: Sequence[Job], *, pool: ProcessPoolExecutor | None, desc: str,
              progress: bool) -> None:
    """Run `fn(*job)` for every job: in this process without a pool, else in the pool's
    processes. The first failure stops the run and is raised."""
    with tqdm(total=len(jobs), desc=desc, unit="task", disable=not progress) as bar:
        if pool is None:
            for job in jobs:
                fn(*job)
                bar.update(1)
            return
        pending = {pool.submit(fn, *job) for job in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()
                bar.update(1)


def _start(recipe: Recipe, run_dir: Path) -> list[Task]:
    """Record the recipe (refusing a different one) and plan the tasks (or reload the plan)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe_path = run_dir / "recipe.json"
    settings = json.loads(recipe.fingerprint_json())
    if recipe_path.exists():
        if json.loads(recipe_path.read_text("utf-8")) != settings:
            raise DataError(f"{run_dir} was prepared with a different recipe (see {recipe_path}); "
                            "use another --output directory or delete this one")
    else:
        write_json_atomic(settings, recipe_path)
    plan_path = run_dir / "tasks" / "plan.json"
    if plan_path.exists():
        return [Task.from_json(t) for t in json.loads(plan_path.read_text("utf-8"))]
    tasks = plan_tasks(recipe)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic([t.to_json() for t in tasks], plan_path)
    return tasks


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


def _finish(recipe: Recipe, run_dir: Path, tasks: Sequence[Task], passes: Sequence[Pass]) -> dict:
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
    if s["tokenizer"] is not None and clean_docs > 0:
        token_manifests = tokenize_stage.tokenize_clean(clean_dir, run_dir, s["tokenizer"], s["tokens"]["group_by"])
    step_order = [spec.name for spec in recipe.steps]
    provenance = merge((read_marker(run_dir, p.index, t.id) for t in tasks for p in passes), step_order)
    rep = report.write_report(run_dir, provenance, step_order=step_order, num_tasks=len(tasks),
                              clean_docs=clean_docs, num_quarantined=num_quarantined,
                              token_manifests=token_manifests)
    if s["tokenizer"] is not None and clean_docs == 0:
        raise DataError(f"no document survived the steps, so there is nothing to train a tokenizer on; "
                        f"see {run_dir / 'report.md'} for why they were dropped")
    return rep
