"""`lm sweep eval`: few-shot task metrics of every finished run of a sweep, and of the
checkpoints kept along its curve (`train.keep_every`), in two tables:

    DIR/task_results.csv   one row per run x checkpoint step x task x metric, with the
        tokens, compute and held-out loss at that step (columns: lm.sweep.task_table)
    DIR/results_tasks.csv  results.csv (rewritten first, as `lm sweep status` does) with a
        column task.<task>.<metric> per task and metric: the metric at each done run's
        final step (empty for other runs, or where the final step is not evaluated)

The metrics are lm.tasks' (lm/tasks/metrics.py): acc, acc_norm, acc_bytes, logprob and
brier for multiple choice, exact_match, logprob and edit_distance for generation. Each
run's tokenizer and one scorer serve all its checkpoints (one compilation per run and
task shape). A rerun skips the (run, step, task) already in task_results.csv, which is
rewritten atomically after every checkpoint, so an interrupted evaluation resumes. A task
keeps its num_fewshot and limit within one table: evaluating it again with other values
is refused (delete its rows, or the file, to change them).
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import ml_collections

from lm.errors import ConfigError
from lm.files import atomic_write
from lm.sweep.plan import RunSpec
from lm.sweep.results import RESULTS_FILE, flops_per_token
from lm.sweep.runner import (RUNS_DIR, checkpoint_steps, count_text, load_plan, statuses,
                             write_sweep_results)
from lm.sweep.task_table import TASK_COLUMNS, TASK_RESULTS_FILE, cell, csv_bytes, read_task_results
from lm.tasks.schema import Task, load_task
from lm.train.metrics import METRICS_FILE, read_metrics

TASK_SUMMARY_FILE = "results_tasks.csv"
TASK_PREFIX = "task."
CHECKPOINTS = ("all", "final")


def _check_settings(path: Path, rows: Sequence[dict], tasks: Sequence[Task], shots: dict[str, int],
                    limit: int | None) -> None:
    """Refuse a task already in the table with another num_fewshot or limit."""
    for task in tasks:
        old = next((r for r in rows if r["task"] == task.name), None)
        if old and (old["num_fewshot"], old["limit"]) != (shots[task.name], limit):
            def settings(k: int, n: int | None) -> str:
                return f"--num-fewshot {k} --limit {'none' if n is None else n}"
            raise ConfigError(
                f"{path} holds task {task.name} with {settings(old['num_fewshot'], old['limit'])}, "
                f"not {settings(shots[task.name], limit)}; use those, or delete its rows (or the file)")


def _todo(workdir: Path, specs: Sequence[RunSpec], which: str) -> list[tuple[RunSpec, list[int]]]:
    """The finished runs and the checkpoint steps of each to evaluate."""
    finished = [(spec, s) for spec, s in zip(specs, statuses(workdir)) if s.status == "done"]
    if not finished:
        raise ConfigError(f"no finished runs to evaluate in {workdir} ({len(specs)} runs: "
                          f"{count_text(statuses(workdir))}); run `lm sweep run` first")
    return [(spec, [s.steps] if which == "final" else checkpoint_steps(workdir / RUNS_DIR / spec.name))
            for spec, s in finished]


def _base_row(spec: RunSpec, cfg: ml_collections.ConfigDict, step: int, evals: dict[int, float]) -> dict:
    tokens = step * cfg.train.batch_size * cfg.data.seq_len
    return {"run": spec.name, "step": step, "tokens": tokens, "n_total": spec.n_total,
            "n_non_embedding": spec.n_non_embedding,
            **{k: v * tokens for k, v in flops_per_token(spec).items()}, "heldout_loss": evals.get(step)}


def _metric_rows(base: dict, task: Task, result: dict, limit: int | None) -> list[dict]:
    names = [k for k in result if f"{k}_stderr" in result]
    return [{**base, "task": task.name, "kind": task.kind, "num_fewshot": result["num_fewshot"],
             "limit": limit, "examples": result["examples"], "metric": name,
             "value": result[name], "stderr": result[f"{name}_stderr"]} for name in names]


def evaluate_sweep(workdir: Path, task_names: Sequence[str], *, num_fewshot: int | None = None,
                   limit: int | None = None, checkpoints: str = "all",
                   say: Callable[[str], None] | None = None) -> Path:
    """Evaluate the finished runs of the sweep in `workdir` on the tasks (names or paths)
    at each kept checkpoint (`checkpoints="all"`) or the final one only; write
    task_results.csv and results_tasks.csv (see the module docstring). Returns the first."""
    from lm.data.build import run_tokenizer_path
    from lm.data.tokenizer import Tokenizer
    from lm.tasks.run import evaluate_task
    from lm.tasks.scoring import Scorer
    from lm.train.state import restore_params

    say = say or (lambda line: print(line, flush=True))
    if (num_fewshot is not None and num_fewshot < 0) or (limit is not None and limit <= 0):
        raise ConfigError("--num-fewshot must be >= 0 and --limit positive")
    if checkpoints not in CHECKPOINTS:
        raise ConfigError(f"--checkpoints must be one of {', '.join(CHECKPOINTS)}, not {checkpoints!r}")
    workdir = Path(workdir)
    tasks = [load_task(name) for name in dict.fromkeys(task_names)]  # every file checked first
    shots = {t.name: t.num_fewshot if num_fewshot is None else num_fewshot for t in tasks}
    _, specs = load_plan(workdir)
    path = workdir / TASK_RESULTS_FILE
    rows = read_task_results(path) if path.exists() else []
    _check_settings(path, rows, tasks, shots, limit)
    done = {(r["run"], r["step"], r["task"]) for r in rows}
    todo = _todo(workdir, specs, checkpoints)
    total = sum(len(steps) for _, steps in todo)
    count = 0
    for spec, steps in todo:
        cfg, run_dir = spec.config(), workdir / RUNS_DIR / spec.name
        metrics = run_dir / METRICS_FILE
        evals = {r["step"]: r["loss"] for r in read_metrics(metrics, kind="eval")} if metrics.exists() else {}
        scorer = None
        for step in steps:
            count += 1
            missing = [t for t in tasks if (spec.name, step, t.name) not in done]
            if not missing:
                say(f"[sweep eval] {count}/{total} {spec.name} step {step}: already evaluated")
                continue
            start = time.perf_counter()
            graphdef, params, _ = restore_params(run_dir, cfg, command="lm sweep eval", step=step)
            if scorer is None:  # one per run: its compiled functions serve every checkpoint
                tokenizer = Tokenizer.load(run_tokenizer_path(cfg.data, run_dir))
                scorer = Scorer(graphdef, params, tokenizer, max_len=cfg.model.max_seq_len,
                                batch_size=cfg.train.batch_size)
            scorer.params = params
            base = _base_row(spec, cfg, step, evals)
            said = []
            for task in missing:
                result = evaluate_task(scorer, task, num_fewshot=num_fewshot, limit=limit)
                rows.extend(_metric_rows(base, task, result, limit))
                done.add((spec.name, step, task.name))
                said.append(summary_text(task.name, result))
            with atomic_write(path) as f:
                f.write(csv_bytes(TASK_COLUMNS, rows))
            say(f"[sweep eval] {count}/{total} {spec.name} step {step}: {'; '.join(said)} "
                f"({time.perf_counter() - start:.1f}s)")
    summary = write_task_summary(workdir, rows)
    say(f"[sweep eval] {len(rows)} rows: {path}; final steps joined to results: {summary}")
    return path


def summary_text(task: str, result: dict[str, Any]) -> str:
    """'indentation acc 0.41 logprob -3.20' for one task's metrics."""
    names = [n for n in ("acc", "exact_match", "logprob", "brier", "edit_distance") if n in result]
    return f"{task} " + " ".join(f"{n} {result[n]:.3g}" for n in names)


def write_task_summary(workdir: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Rewrite results.csv and write results_tasks.csv: its rows with a task.<task>.<metric>
    column per task and metric, each done run's value at its final step."""
    workdir = Path(workdir)
    _, specs = load_plan(workdir)
    write_sweep_results(workdir, statuses(workdir))
    final = {spec.name: spec.config().train.steps for spec in specs}
    columns = list(dict.fromkeys(f"{TASK_PREFIX}{r['task']}.{r['metric']}" for r in rows))
    values = {(r["run"], f"{TASK_PREFIX}{r['task']}.{r['metric']}"): r["value"]
              for r in rows if final.get(r["run"]) == r["step"]}
    with open(workdir / RESULTS_FILE, newline="") as f:
        table = list(csv.reader(f))
    header, body = table[0], table[1:]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header + columns)
    for line in body:
        run = line[header.index("run")]
        writer.writerow(line + [cell(values.get((run, c))) for c in columns])
    path = workdir / TASK_SUMMARY_FILE
    with atomic_write(path) as f:
        f.write(out.getvalue().encode("utf-8"))
    return path
