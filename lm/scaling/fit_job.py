"""What one `lm fit` computes, importable from a notebook: a method's report on the data, a
backtest on the largest budgets, and all three Chinchilla approaches side by side.

`FitData` holds the points (one per run: N, D, C, loss, IsoFLOP budget) and, for approach 1,
the training curves in the same order. Points without a budget (nan) count as their own
compute C wherever a budget is needed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from lm.scaling import reports
from lm.scaling.backtest import backtest_rows, point_budgets, split_largest
from lm.scaling.chinchilla import TrainingRun, isoflop_profiles
from lm.scaling.plots import run_flops
from lm.scaling.reports import Options
from lm.scaling.table import Points, csv_runs

CHINCHILLA = ("approach1", "approach2", "approach3")


@dataclass(frozen=True)
class FitData:
    """Points, and the curves of the same runs when approach 1 can use them (`runs`)."""

    points: Points
    runs: tuple[TrainingRun, ...] | None = None  # a sweep's curves, aligned with points
    curves_from_rows: bool = False  # CSV: the points are curve rows, grouped into runs by N

    def training_runs(self, c_convention: str) -> list[TrainingRun]:
        if self.curves_from_rows:
            return csv_runs(self.points, c_convention)
        if self.runs is None:
            raise ValueError("approach1 needs training curves: a sweep's curves.csv, or a CSV "
                             "whose rows at one N form a curve")
        return list(self.runs)

    def subset(self, keep: np.ndarray) -> FitData:
        runs = None if self.runs is None else tuple(np.array(self.runs, dtype=object)[keep])
        return replace(self, points=self.points.subset(keep), runs=runs)


def _budgeted(points: Points) -> Points:
    """The points that belong to an IsoFLOP budget (approach 2's)."""
    points = points.subset(np.isfinite(points.budget))
    if not len(points):
        raise ValueError("approach2 needs IsoFLOP budgets and no point has one (give "
                         "--budget-col, or with --sweep run an isoflop sweep)")
    return points


def largest_budget(data: FitData, method: str, options: Options) -> float:
    """The default budget to report at: the largest one the method fits."""
    if method == "approach1":
        return max(float(run_flops(run)[-1])
                   for run in data.training_runs(options.c_convention))
    points = _budgeted(data.points) if method == "approach2" else data.points
    return isoflop_profiles(point_budgets(points.budget, points.C), options.rtol)[-1][0]


def method_report(method: str, data: FitData, options: Options, at_flops: np.ndarray,
                  extra: np.ndarray = np.zeros(0)) -> tuple[dict, dict]:
    """The report of one Chinchilla approach and its predictions at `extra` budgets."""
    if method == "approach1":
        return reports.approach1(data.training_runs(options.c_convention), options, at_flops,
                                 extra)
    if method == "approach2":
        return reports.approach2(_budgeted(data.points), options, at_flops, extra)
    if method == "approach3":
        return reports.approach3(data.points, options, at_flops, extra)
    raise ValueError(f"method must be one of {', '.join(CHINCHILLA)}; got {method!r}")


def backtest(method: str, data: FitData, options: Options, k: int,
             at_flops: np.ndarray | None = None) -> dict:
    """`method` fitted on all but the `k` largest budgets, with a `backtest` section."""
    points = data.points
    holdout = split_largest(points.budget, points.C, k, rtol=options.rtol)
    train = data.subset(holdout.train)
    if at_flops is None:
        at_flops = np.array([holdout.fitted_budgets[-1]])
    report, predicted = method_report(method, train, options, at_flops, holdout.budgets)
    if "loss_opt" not in predicted:
        raise ValueError(f"{method} fitted on the {holdout.fitted_budgets.size} smaller budgets "
                         "has no compute-optimal allocation, so it predicts no loss")
    report["backtest"] = {
        "held_out_largest": k, "fitted_budgets": holdout.fitted_budgets,
        "n_fitted_points": int(holdout.train.sum()),
        "rows": backtest_rows(holdout, points.N, points.loss, predicted["loss_opt"],
                              predicted.get("lower"), predicted.get("upper"))}
    return report


def compare(data: FitData, options: Options, k: int = 0,
            at_flops: np.ndarray | None = None) -> dict:
    """Approaches 1-3 on the same data (each with its backtest when `k` > 0); a method the
    data cannot serve is listed under `skipped` with the reason."""
    methods, skipped = {}, {}
    for method in CHINCHILLA:
        sub = replace(options, out=None if options.out is None else options.out / method)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if k:
                    methods[method] = backtest(method, data, sub, k, at_flops)
                else:
                    flops = at_flops if at_flops is not None else np.array(
                        [largest_budget(data, method, options)])
                    methods[method] = method_report(method, data, sub, flops)[0]
            except ValueError as err:
                skipped[method] = str(err)
        for w in caught:  # say which method each warning is about
            warnings.warn_explicit(f"{method}: {w.message}", w.category, w.filename, w.lineno)
    if not methods:
        raise ValueError("no method could be fitted: " + "; ".join(
            f"{name}: {reason}" for name, reason in skipped.items()))
    return {"methods": methods, "skipped": skipped}
