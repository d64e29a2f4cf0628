"""A study's backtest sweep: the backtest step's sweep file at one budget, factor x its
largest, and one model size, the N_opt a fitted law predicts there.

The plan is a generated sweep file, DIR/backtest/backtest.py, written once (after every
step's sweep is complete) and reused by every rerun, so a rerun plans the same runs even if
the fit moved. Its `get_sweep()` is the step's sweep file's with budgets [C], model_sizes
[[N_opt]] and n_tolerance 0.5 (the family's nearest shape is trained, however far the
family's sizes are spaced); its `get_plan()` is what it was planned from. It is an ordinary
sweep file: `lm sweep run --config DIR/backtest/backtest.py --workdir DIR/backtest` and
`lm sweep status --workdir DIR/backtest` work on it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ml_collections

from lm.config import ConfigError, call_python_file
from lm.files import atomic_write
from lm.scaling.table import sweep_columns
from lm.sweep.results import HPARAM_PREFIX, RESULTS_FILE, read_results
from lm.sweep.study_file import FitSpec

PLAN_FILE = "backtest.py"
TOLERANCE = 0.5  # the backtest's n_tolerance: the family's nearest shape within 50%


@dataclasses.dataclass(frozen=True)
class BacktestPlan:
    """What the backtest sweep was planned from: the step, its sweep file, the budget C,
    the method whose N_opt at C sized the model, and that N_opt."""

    step: str
    source: str
    budget: float
    size_from: str
    n_opt: float


def backtest_sweep(source: str, budget: float, n_opt: float) -> dict[str, Any]:
    """The sweep file `source`'s `get_sweep()` at one budget and model size (n_tolerance 0.5);
    a relative `base` path is made absolute, since the backtest file lives elsewhere."""
    raw = call_python_file(Path(source), "get_sweep", kind="sweep")
    raw = raw.to_dict() if isinstance(raw, ml_collections.ConfigDict) else dict(raw)
    if isinstance(raw.get("base"), str):
        raw["base"] = str(Path(source).parent / raw["base"])
    raw.update(budgets=[budget], model_sizes=[[n_opt]], n_tolerance=TOLERANCE)
    return raw


def plan_text(plan: BacktestPlan, study_file: Path) -> str:
    """The generated sweep file of `plan`."""
    fields = ",\n".join(f"    {name!r}: {value!r}"
                         for name, value in dataclasses.asdict(plan).items())
    return (f'"""The backtest sweep of the study {study_file}, written by `lm sweep study`\n'
            f"and reused by its reruns: step {plan.step}'s sweep at C = {plan.budget:.4g} and the\n"
            f"model size {plan.size_from} finds compute-optimal there, N_opt = {plan.n_opt:,.0f}.\n"
            'Delete this directory to plan the backtest afresh."""\n\n'
            "from lm.sweep.study_backtest import backtest_sweep\n\n"
            f"PLAN = {{\n{fields},\n}}\n\n\n"
            "def get_plan():\n    return PLAN\n\n\n"
            "def get_sweep():\n"
            '    return backtest_sweep(PLAN["source"], PLAN["budget"], PLAN["n_opt"])\n')


def write_plan(directory: Path, plan: BacktestPlan, study_file: Path) -> Path:
    """Write DIR/backtest/backtest.py atomically; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PLAN_FILE
    with atomic_write(path) as f:
        f.write(plan_text(plan, study_file).encode("utf-8"))
    return path


def read_plan(directory: Path) -> BacktestPlan | None:
    """The plan stored in `directory`, or None when there is none yet."""
    path = directory / PLAN_FILE
    if not path.exists():
        return None
    raw = call_python_file(path, "get_plan", kind="backtest plan")
    try:
        return BacktestPlan(**raw)
    except TypeError as err:
        raise ConfigError(f"{path}: get_plan() does not hold a backtest plan ({err}); delete "
                          f"{directory} to plan the backtest afresh") from None


def check_plan(saved: BacktestPlan, step: str, source: str, budget: float, size_from: str,
               path: Path) -> None:
    """The stored plan must be for the study's backtest as it is now (N_opt aside: a rerun
    keeps the stored one); ConfigError naming the first field that differs otherwise."""
    wanted = {"step": step, "source": source, "budget": budget, "size_from": size_from}
    for name, value in wanted.items():
        old = getattr(saved, name)
        if old != value:
            text = (lambda v: f"{v:g}") if name == "budget" else repr
            raise ConfigError(f"{path} planned the backtest with {name}={text(old)}, the study "
                              f"now asks for {text(value)}; delete {path.parent} to plan it "
                              "afresh, or use a new --workdir")


def trained_run(directory: Path, fit: FitSpec) -> dict[str, Any]:
    """The backtest's trained model: the best member of its one point (results.csv `best`;
    every run done), with N and compute in the step's fit conventions and its loss in the
    fit's kind."""
    row, = [row for row in read_results(directory / RESULTS_FILE) if row["best"] == 1]
    columns = sweep_columns(fit.n_convention, fit.c_convention, fit.loss)
    return {"run": row["run"], "point": row["point"], "N": row[columns["N"]],
            "n_total": row["n_total"], "n_non_embedding": row["n_non_embedding"],
            "steps": row["steps"], "tokens": row["tokens"], "compute": row[columns["C"]],
            "loss_column": columns["loss"], "loss": row[columns["loss"]],
            "hparams": {column.removeprefix(HPARAM_PREFIX): value for column, value in row.items()
                        if column.startswith(HPARAM_PREFIX)}}
