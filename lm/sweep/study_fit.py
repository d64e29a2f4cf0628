"""A study step's fit, and a method's predictions at the backtest budget, as JSON-safe records
(lm.sweep.study describes them). The fitting is lm.scaling's (`method_report`, as `lm fit`
runs it); a fit that cannot be made is recorded with its message, not raised."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from lm.files import json_safe
from lm.scaling.chinchilla import isoflop_profiles
from lm.scaling.design import IdentifiabilityWarning
from lm.scaling.fit_job import FitData, largest_budget, method_report
from lm.scaling.reports import Options
from lm.scaling.table import Points, sweep_points
from lm.sweep.study_file import Step


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    """Warnings as `lm fit` reports them: identifiability ones by their message, others with
    their category; each once, in order."""
    messages = [str(w.message) if issubclass(w.category, IdentifiabilityWarning)
                else f"{w.category.__name__}: {w.message}" for w in caught]
    return list(dict.fromkeys(messages))


@dataclasses.dataclass(frozen=True)
class Fitted:
    """One `method_report` on a step's sweep: the report (None when the fit failed), the
    points read (None when reading failed), the warnings raised, and the failure's message."""

    report: dict | None
    points: Points | None
    warnings: list[str]
    error: str | None


def _report(method: str, data: FitData, options: Options, at_flops: float | None) -> dict:
    flops = largest_budget(data, method, options) if at_flops is None else at_flops
    return method_report(method, data, options, np.array([flops]))[0]


def fit(method: str, step: Step, sweep_dir: Path, *, bootstrap: int, seed: int,
        at_flops: float | None = None) -> Fitted:
    """`method` on the done runs of `sweep_dir` with the step's fit options, reporting at
    `at_flops` (default: the largest budget the method fits). When the bootstrap fails
    (too thin a design: approach 2 on a few sizes per budget) but the fit does not, the
    fit is kept without intervals and a warning says why."""
    spec = step.fit
    options = Options(spec.n_convention, spec.c_convention, bootstrap, seed,
                      spec.keep_unbracketed, spec.rtol)
    report = points = error = None
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        try:
            points = sweep_points(sweep_dir, n_convention=spec.n_convention,
                                  c_convention=spec.c_convention, loss=spec.loss,
                                  members=spec.members)
            data = FitData(points)
            try:
                report = _report(method, data, options, at_flops)
            except ValueError as err:
                if not bootstrap:
                    raise
                report = _report(method, data, dataclasses.replace(options, bootstrap=0), at_flops)
                warnings.warn(f"no bootstrap intervals: {err}", IdentifiabilityWarning)
        except ValueError as err:  # TableError, and the fitters' named data checks
            error = str(err)
    if report is not None and "a" not in report["derived"]:
        error = (f"{method}'s fitted law has no compute-optimal allocation (see its "
                 "warnings), so it gives no exponent a, N_opt or loss")
        report = None
    return Fitted(report, points, _messages(caught), error)


def _interval(intervals: dict, name: str) -> list[float] | None:
    interval = intervals.get(name)
    return None if interval is None else [interval["lower"], interval["upper"]]


def fit_step(step: Step, sweep_dir: Path, method: str, *, bootstrap: int, seed: int) -> dict:
    """The record of one step: its fit's exponents (with bootstrap intervals), the budgets
    fitted and left out, the per-budget minima (approach 2), N_opt and loss at the largest
    budget, the warnings, or the error that stopped the fit."""
    fitted = fit(method, step, sweep_dir, bootstrap=bootstrap, seed=seed)
    record = {"name": step.name, "title": step.title, "sweep": step.sweep_file,
              "sweep_dir": sweep_dir, "fit": {"method": method, **dataclasses.asdict(step.fit)},
              "error": fitted.error, "n_points": None, "budgets": [], "budgets_fitted": None,
              "a": None, "a_interval": None, "b": None, "b_interval": None, "at_flops": None,
              "N_opt": None, "loss_opt": None, "minima": None, "excluded_budgets": [],
              "exclusion_reasons": [], "params": None, "notes": [], "warnings": fitted.warnings}
    if fitted.points is not None:
        points = fitted.points
        record["notes"] = list(points.notes)
        budgets = points.budget[np.isfinite(points.budget)]
        record["budgets"] = [c for c, _ in isoflop_profiles(budgets, step.fit.rtol)]
    report = fitted.report
    if report is None:
        return json_safe(record)
    derived = report["derived"]
    intervals = report.get("bootstrap", {}).get("intervals", {})
    record.update(n_points=report["n_points"], params=report["params"], a=derived["a"],
                  b=derived["b"], a_interval=_interval(intervals, "a"),
                  b_interval=_interval(intervals, "b"), at_flops=derived["at_flops"][0],
                  N_opt=derived["N_opt"][0], loss_opt=derived["loss_opt"][0],
                  budgets_fitted=record["budgets"])
    profiles = report.get("profiles")
    if profiles is not None:  # approach 2: the parabola minimum of each budget kept
        record.update(budgets_fitted=profiles["budget"], minima=[
            {"budget": c, "N_opt": n, "D_opt": d, "loss_opt": loss} for c, n, d, loss in
            zip(profiles["budget"], profiles["N_opt"], profiles["D_opt"], profiles["loss_opt"])],
            excluded_budgets=profiles["excluded_budgets"],
            exclusion_reasons=profiles["exclusion_reasons"])
    return json_safe(record)


def predict(method: str, step: Step, sweep_dir: Path, budget: float, *, bootstrap: int,
            seed: int) -> dict:
    """`method`'s N_opt and compute-optimal loss at `budget`, fitted on every budget of the
    step's sweep, with the loss's bootstrap interval (None without a bootstrap)."""
    fitted = fit(method, step, sweep_dir, bootstrap=bootstrap, seed=seed, at_flops=budget)
    record = {"N_opt": None, "loss_opt": None, "interval": None, "relative_error": None,
              "covered": None, "error": fitted.error, "warnings": fitted.warnings}
    if fitted.report is not None:
        derived = fitted.report["derived"]
        record.update(N_opt=derived["N_opt"][0], loss_opt=derived["loss_opt"][0])
        interval = derived.get("loss_opt_interval")
        if interval is not None:
            record["interval"] = [interval["lower"][0], interval["upper"][0]]
    return json_safe(record)


def score(prediction: dict, actual: float) -> dict:
    """`prediction` with its relative error, (predicted - actual) / actual, and whether its
    interval covers `actual` (None without an interval or a prediction)."""
    predicted, interval = prediction["loss_opt"], prediction["interval"]
    if predicted is None:
        return prediction
    covered = None if interval is None or None in interval else interval[0] <= actual <= interval[1]
    return {**prediction, "relative_error": (predicted - actual) / actual, "covered": covered}
