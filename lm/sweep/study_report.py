"""study.md: a study's record (study.json, lm.sweep.study) as markdown: a table of the steps'
exponents, the backtest's predictions against the trained model, and the commands that
reproduce them."""

from __future__ import annotations

import shlex
from typing import Any, Sequence

DASH = "–"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *map(_row, rows)]


def _cell(text: str) -> str:
    """User text in a table cell (a '|' would end the cell)."""
    return text.replace("|", "\\|")


def _number(value: float | None, spec: str = ".3f") -> str:
    return DASH if value is None else format(value, spec)


def _with_interval(value: float | None, interval: list | None, spec: str) -> str:
    text = _number(value, spec)
    if value is not None and interval is not None and None not in interval:
        text += f" ({interval[0]:{spec}}{DASH}{interval[1]:{spec}})"
    return text


def _notes(label: str, messages: Sequence[str]) -> list[str]:
    return [f"- {label}: {message}" for message in messages]


def _new(warnings: Sequence[str], error: str | None) -> list[str]:
    """The warnings an error message does not already quote (approach 2's left-out budgets)."""
    return [w for w in warnings if w not in (error or "")]


def steps_section(record: dict[str, Any]) -> list[str]:
    """The steps' table (one row per step, counting every warning) and their errors and
    warnings."""
    rows, notes = [], []
    for step in record["steps"]:
        a = "failed" if step["error"] else _with_interval(step["a"], step["a_interval"], ".3f")
        fitted = DASH if step["budgets_fitted"] is None else str(len(step["budgets_fitted"]))
        rows.append([_cell(step["name"]), _cell(step["title"]), a, _number(step["b"]),
                     f"{fitted} of {len(step['budgets'])}", str(len(step["warnings"]))])
        if step["error"]:
            notes += _notes(f"{step['name']} failed", [step["error"]])
        notes += _notes(step["name"], _new(step["warnings"], step["error"]))
    interval = " (95% interval)" if record["bootstrap"] else ""
    lines = [f"## Steps: {record['method']}, N_opt ∝ C^a and D_opt ∝ C^b", "",
             *_table(["step", "what changes", f"a{interval}", "b", "budgets fitted", "warnings"],
                     rows)]
    return lines + ([""] + notes if notes else [])


def backtest_section(backtest: dict[str, Any] | None) -> list[str]:
    """The backtest's table (one row per method) and what was trained, or why it did not run."""
    if backtest is None:
        return []
    head = (f"## Backtest: step {backtest['step']} at {backtest['factor']:g} x its largest "
            f"budget {backtest['largest_budget']:.3g}, C = {backtest['budget']:.3g}")
    if backtest["error"]:
        return [head, "", f"The backtest cannot run: {backtest['error']}"]
    run = backtest["run"]
    rows, notes = [], []
    for method, p in backtest["methods"].items():
        predicted = "failed" if p["error"] else _with_interval(p["loss_opt"], p["interval"], ".3f")
        covered = DASH if p["covered"] is None else ("yes" if p["covered"] else "no")
        rows.append([method, f"{backtest['budget']:.3g}", _number(p["N_opt"], ",.0f"),
                     f"{run['N']:,.0f}", predicted, f"{backtest['actual']:.3f}",
                     _number(p["relative_error"], "+.1%"), covered])
        if p["error"]:
            notes += _notes(f"{method} failed", [p["error"]])
        notes += _notes(method, _new(p["warnings"], p["error"]))
    values = ", ".join(f"{field}={value}" for field, value in run["hparams"].items())
    trained = (f"Trained: {run['run']}, the best of its point's members ({values}), "
               f"{run['steps']} steps; {backtest['size_from']}'s N_opt {backtest['n_opt']:,.0f} "
               f"planned the nearest shape of the family. Actual: its {run['loss_column']}.")
    return [head, "", *_table(["method", "C", "N_opt predicted", "N trained",
                               "predicted loss (95% interval)", "actual", "error", "covered"],
                              rows), "", trained, *([""] + notes if notes else []),
            *_notes("backtest", backtest["warnings"])]


def study_markdown(record: dict[str, Any]) -> str:
    """study.md's text."""
    bootstrap = (f"{record['bootstrap']} bootstrap resamples (seed {record['seed']})"
                 if record["bootstrap"] else "no bootstrap")
    lines = [f"# Study {record['study_file']}", "",
             f"Workdir {record['workdir']}; {bootstrap}.", "", *steps_section(record), ""]
    backtest = backtest_section(record["backtest"])
    lines += [*backtest, ""] if backtest else []
    lines += ["## Reproduce", "", "```", *(shlex.join(c) for c in record["commands"]), "```"]
    return "\n".join(lines) + "\n"
