"""`lm sweep study`: several IsoFLOP sweeps, a Chinchilla fit per step, and a backtest run,
in one resumable command (an ablation such as Porian et al. 2024, "Resolving discrepancies
in compute-optimal scaling of language models").

A study file (`experiments/studies/*.py`) defines `get_study()` returning a dict:

    steps      the steps, in order: each a dict of
                 name    a unique name ("iv")
                 title   what the step changes (optional; the table's "what changes")
                 sweep   an IsoFLOP sweep file (relative paths are relative to the study file);
                         steps naming the same file share its runs
                 fit     optional `lm fit --sweep` options for the step (all optional):
                         n_convention  "total" or "non_embedding" (default: the sweep's n_kind)
                         c_convention  "6ND" or "exact" (default: the sweep's flops, "6n" -> "6ND")
                         members       "best" (default: each point's best member), "all", or
                                       "FIELD=VALUE": the members with that value of a ruled or
                                       tuned field, e.g. "train.lr=0.01"
                         loss          "heldout" (default) or "train"
                         keep_unbracketed  keep approach-2 budgets whose minimum is outside the
                                       sampled N (default False)
                         rtol          budgets within this relative tolerance are one (0.01)
    method     "approach2" (default) or "approach3": the fit whose exponent a (N_opt ∝ C^a)
               the table reports per step
    bootstrap  resamples for 95% intervals (0: none, the default; else >= 2)
    seed       the bootstrap's seed (default 0)
    backtest   optional: train the model a fit calls compute-optimal beyond the data, and
               compare each method's predicted loss with it:
                 step       the step whose sweep and fit options it uses
                 factor     > 1: the backtest budget C is factor x that sweep's largest budget
                 methods    the methods whose predictions are scored (default: [method])
                 size_from  the method whose N_opt at C is trained (default: method)

Running it (`run_study`) into a directory DIR:

    DIR/sweeps/<sweep file stem>/   each distinct sweep, run by lm.sweep.runner (a rerun
                                    skips done runs)
    DIR/backtest/                   the backtest sweep (lm.sweep.study_backtest): its plan,
                                    backtest.py, is written once every step's sweep is
                                    complete and reused by reruns
    DIR/study.json, DIR/study.md    the record, and its tables

A run that failed (or is not done) stops the study before fitting (a backtest run: before
scoring), naming the run and its stderr.log. Each step is fitted with `method` on its
sweep's done runs (as `lm fit`, at the largest budget); a fit that fails (e.g. "budget: 1
usable IsoFLOP budget(s) of 2") is recorded with its message and the study goes on, and a
bootstrap that fails where the fit does not leaves the fit without intervals, with a
warning saying why. The backtest fits every method on all the backtest step's budgets,
trains size_from's N_opt at C (the family's nearest shape, with the sweep's rules and tune;
its best member counts), and scores each method's predicted compute-optimal loss at C
(`derived.loss_opt`, with its bootstrap interval) against that run's loss (the fit's loss
kind: held-out by default).

study.json (JSON, no NaN):

    study_file, workdir, overrides, method, bootstrap, seed
    sweeps     {stem: {"file", "dir", "runs"}}
    steps      per step: name, title, sweep, sweep_dir, fit {method, n_convention,
               c_convention, members, loss, keep_unbracketed, rtol}, error (None or the
               message), n_points, budgets (all), budgets_fitted, a, a_interval ([lower,
               upper] or None), b, b_interval, at_flops (the largest budget), N_opt and
               loss_opt there, minima (approach 2: [{budget, N_opt, D_opt, loss_opt}]),
               excluded_budgets, exclusion_reasons, params, notes, warnings
    backtest   None, or: step, sweep, factor, largest_budget, budget (C), size_from, plan
               (backtest.py), n_opt (planned), error (None or why it cannot run), run (the
               trained best member: run, point, N, n_total, n_non_embedding, steps, tokens,
               compute, loss_column, loss, hparams), actual (its loss), methods ({method:
               N_opt, loss_opt, interval, relative_error, covered, error, warnings}), warnings
    commands   the commands that reproduce it (argument lists)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from lm.config import ConfigError
from lm.files import atomic_write, json_safe, write_json_atomic
from lm.sweep.grid import expand, load_sweep
from lm.sweep.runner import RUNS_DIR, STDERR_LOG, RunStatus, run_sweep, stderr_tail
from lm.sweep.study_backtest import (PLAN_FILE, BacktestPlan, check_plan, read_plan,
                                     trained_run, write_plan)
from lm.sweep.study_file import Step, Study, load_study
from lm.sweep.study_fit import fit_step, predict, score
from lm.sweep.study_report import study_markdown

SWEEPS_DIR = "sweeps"
BACKTEST_DIR = "backtest"
STUDY_JSON = "study.json"
STUDY_MD = "study.md"


class StudyError(RuntimeError):
    """A run of the study failed or is not done; the message names it and its log."""


def _log(message: str) -> None:
    print(f"[study] {message}", flush=True)


def _run(label: str, sweep_file: Path, workdir: Path, overrides: Sequence[str],
         parallel: int) -> list[RunStatus]:
    """Run (or resume) one sweep; StudyError naming the runs that are not done."""
    _log(f"{label}: {sweep_file} -> {workdir}")
    final = run_sweep(sweep_file, workdir, overrides, parallel=parallel)
    missing = [s for s in final if s.status != "done"]
    if not missing:
        _log(f"{label}: all {len(final)} runs done")
        return final
    lines = []
    for s in missing:
        run_dir = workdir / RUNS_DIR / s.name
        tail = stderr_tail(run_dir, lines=1)
        why = (f"failed (exit {s.returncode}): {tail[0] if tail else 'no stderr'}"
               if s.status == "failed" else f"is {s.status} (another process may be training it)")
        lines.append(f"run {s.name} {why}; see {run_dir / STDERR_LOG}")
    raise StudyError(f"{label}: {len(missing)} of {len(final)} runs not done, so the study stops "
                     f"before fitting: {'; '.join(lines)}. Fix the cause and rerun "
                     "`lm sweep study` to resume")


def _fit_command(step: Step, sweep_dir: Path, method: str, study: Study,
                 at_flops: float | None = None) -> list[str]:
    fit = step.fit
    command = ["lm", "fit", "--sweep", str(sweep_dir), "--method", method, "--n-convention",
               fit.n_convention, "--c-convention", fit.c_convention, "--members", fit.members,
               "--loss", fit.loss, "--budget-rtol", f"{fit.rtol:g}"]
    command += ["--keep-unbracketed"] if fit.keep_unbracketed else []
    command += ["--bootstrap", str(study.bootstrap), "--seed", str(study.seed)]
    return command + ([] if at_flops is None else ["--at-flops", repr(at_flops)])


def _backtest(study: Study, workdir: Path, overrides: Sequence[str], parallel: int,
              commands: list[list[str]]) -> dict[str, Any]:
    """Plan (once), run and score the backtest; a record saying why when it cannot run."""
    spec = study.backtest
    step = study.step(spec.step)
    sweep_dir = workdir / SWEEPS_DIR / step.sweep_name
    largest = max(step.sweep.budgets)
    budget = spec.factor * largest
    directory = workdir / BACKTEST_DIR
    record: dict[str, Any] = {
        "step": step.name, "sweep": str(step.sweep_file), "factor": spec.factor,
        "largest_budget": largest, "budget": budget, "size_from": spec.size_from,
        "plan": None, "n_opt": None, "error": None, "run": None, "actual": None,
        "methods": {}, "warnings": []}
    predictions = {method: predict(method, step, sweep_dir, budget, bootstrap=study.bootstrap,
                                   seed=study.seed)
                   for method in dict.fromkeys((*spec.methods, spec.size_from))}
    record["methods"] = {method: predictions[method] for method in spec.methods}
    sizing = predictions[spec.size_from]
    if spec.size_from not in spec.methods:
        record["warnings"] += sizing["warnings"]
    plan = read_plan(directory)
    plan_path = directory / PLAN_FILE
    if plan is None:
        if sizing["N_opt"] is None:
            record["error"] = (f"{spec.size_from} fitted on step {step.name}'s sweep gives no "
                               f"N_opt at C = {budget:.4g}: {sizing['error']}")
            _log(f"backtest: cannot run: {record['error']}")
            return record
        plan = BacktestPlan(step.name, str(step.sweep_file), budget, spec.size_from,
                            sizing["N_opt"])
        write_plan(directory, plan, study.path)
        _log(f"backtest: planned {plan_path}: N_opt {plan.n_opt:,.0f} at C = {budget:.4g}")
    else:
        check_plan(plan, step.name, str(step.sweep_file), budget, spec.size_from, plan_path)
        if sizing["N_opt"] != plan.n_opt:
            now = sizing["error"] if sizing["N_opt"] is None else f"{sizing['N_opt']:,.0f}"
            record["warnings"].append(
                f"{plan_path} trains {spec.size_from}'s N_opt {plan.n_opt:,.0f} of an earlier "
                f"fit; the fit now gives {now} (delete {directory} to replan)")
    record.update(plan=str(plan_path), n_opt=plan.n_opt)
    commands += [["lm", "sweep", "status", "--workdir", str(directory)],
                 *(_fit_command(step, sweep_dir, method, study, budget) for method in spec.methods)]
    try:
        expand(load_sweep(plan_path), overrides)
    except ConfigError as err:  # e.g. the family has no shape within 50% of N_opt
        record["error"] = f"{plan_path} cannot be planned: {err}"
        _log(f"backtest: cannot run: {record['error']}")
        return record
    _run("backtest", plan_path, directory, overrides, parallel)
    run = trained_run(directory, step.fit)
    record.update(run=run, actual=run["loss"])
    record["methods"] = {method: score(p, run["loss"]) for method, p in record["methods"].items()}
    return record


def run_study(study_path: str | Path, workdir: str | Path, overrides: Sequence[str] = (), *,
              parallel: int = 1) -> dict[str, Any]:
    """Run the study file `study_path` in `workdir` (see the module docstring): its sweeps,
    each step's fit, the backtest; write DIR/study.json and DIR/study.md, print study.md and
    return the record. `overrides` (`--config.S.F=V`) apply to every sweep and the backtest.
    Raises StudyError when a run failed or is not done."""
    study = load_study(study_path)
    workdir = Path(workdir).absolute()
    sweeps = {}
    for name, sweep_file in study.sweeps().items():
        directory = workdir / SWEEPS_DIR / name
        final = _run(f"sweep {name}", sweep_file, directory, overrides, parallel)
        sweeps[name] = {"file": str(sweep_file), "dir": str(directory), "runs": len(final)}
    commands = [["lm", "sweep", "study", "--config", str(study.path), "--workdir", str(workdir),
                 *overrides]]
    steps = []
    for step in study.steps:
        sweep_dir = workdir / SWEEPS_DIR / step.sweep_name
        steps.append(fit_step(step, sweep_dir, study.method, bootstrap=study.bootstrap,
                              seed=study.seed))
        commands.append(_fit_command(step, sweep_dir, study.method, study))
        result = steps[-1]
        _log(f"step {step.name}: " + (f"fit failed: {result['error']}" if result["error"] else
                                      f"a = {result['a']:.3f}, b = {result['b']:.3f}"))
    backtest = None
    if study.backtest is not None:
        backtest = _backtest(study, workdir, overrides, parallel, commands)
    record = json_safe({"study_file": study.path, "workdir": workdir, "overrides": list(overrides),
                        "method": study.method, "bootstrap": study.bootstrap, "seed": study.seed,
                        "sweeps": sweeps, "steps": steps, "backtest": backtest,
                        "commands": commands})
    write_json_atomic(record, workdir / STUDY_JSON)
    text = study_markdown(record)
    with atomic_write(workdir / STUDY_MD) as f:
        f.write(text.encode("utf-8"))
    print(text, flush=True)
    _log(f"wrote {workdir / STUDY_JSON} and {workdir / STUDY_MD}")
    return record
