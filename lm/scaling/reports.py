"""The report of each Chinchilla approach for `lm fit`: parameters, the allocation and loss
prediction at the requested budgets, bootstrap intervals, and plots. Also the reports of the
learning-rate and batch laws (`hparams`) and of data-constrained scaling (`data_constrained`).

Each `approachN` function takes the data, the budgets to report (`at_flops`) and any `extra`
budgets to predict (a backtest's held-out ones), and returns the report and the predictions
at `extra` (loss_opt, with lower and upper under a bootstrap).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lm.scaling import law_plots, plots
from lm.scaling.bootstrap import (BootstrapResult, bootstrap_approach1, bootstrap_approach2,
                                  bootstrap_approach3)
from lm.scaling.chinchilla import (Approach2Fit, Approach3Fit, TrainingRun,
                                   allocate, fit_approach1, fit_approach2, fit_approach3, predict)
from lm.scaling.data_constrained import (DELTA, PAPER, bootstrap_data_constrained,
                                         fit_data_constrained)
from lm.scaling.hparams import DEEPSEEK, bootstrap_hparams, fit_hparams
from lm.scaling.prediction import (SIX_ND, FlopsRatio, fit_flops_ratio, frontier_of,
                                   predict_loss_opt)
from lm.scaling.table import Columns, Points

LEVEL = 0.95  # bootstrap interval coverage


@dataclass(frozen=True)
class Options:
    """What every method's report shares: conventions, bootstrap, budget grouping, plots."""

    n_convention: str
    c_convention: str
    bootstrap: int = 0
    seed: int = 0
    keep_unbracketed: bool = False
    rtol: float = 0.01
    out: Path | None = None

    @property
    def conv(self) -> dict[str, str]:
        return {"n_convention": self.n_convention, "c_convention": self.c_convention}


def draw(out: Path, drawings: dict[str, Callable[[Path], object]]) -> list[str]:
    """Call each drawing with its path under `out`; the paths written."""
    for name, drawing in drawings.items():
        drawing(out / name)
    return [str(out / name) for name in drawings]


def flops_range(low: float, high: float, at_flops: np.ndarray) -> np.ndarray:
    return np.geomspace(min(low, at_flops.min()), max(high, at_flops.max()), 100)


def intervals(result: BootstrapResult) -> dict:
    return {"n_resamples": result.n_resamples, "seed": result.seed, "level": result.level,
            "unit": result.unit,
            "intervals": {name: {"estimate": i.estimate, "lower": i.lower, "upper": i.upper}
                          for name, i in result.intervals.items()}}


def _power_law_drawings(label: str, fit, result: BootstrapResult | None, flops: np.ndarray,
                        at_flops: np.ndarray, title: str) -> dict[str, Callable[[Path], object]]:
    """The allocation plot and the residuals of N_opt at `flops` (the fitted budgets or the
    envelope grid) against an approach-1 or approach-2 power law."""
    return {
        "allocation.png": lambda path: plots.allocation(
            {label: result or fit}, flops_range(flops.min(), flops.max(), at_flops), path=path),
        "residuals.png": lambda path: plots.residuals(
            flops, fit.n_opt, allocate(fit, flops)[0], x_label=plots.C_LABEL[fit.c_convention],
            title=title, path=path)}


def _predictions(fit, result: BootstrapResult | None, at_flops: np.ndarray, extra: np.ndarray,
                 ratio: FlopsRatio) -> tuple[dict, dict]:
    """derived's allocation and loss_opt at `at_flops`, and the predictions at `extra`."""
    flops = np.concatenate([at_flops, extra])
    frontier = None if isinstance(fit, Approach3Fit) else frontier_of(fit)
    loss = predict_loss_opt(fit, flops, ratio=ratio, frontier=frontier)
    n_opt, d_opt = allocate(fit, at_flops)
    derived = {"a": fit.a, "b": fit.b, "at_flops": at_flops, "N_opt": n_opt, "D_opt": d_opt,
               "tokens_per_parameter": d_opt / n_opt, "loss_opt": loss[:at_flops.size]}
    predicted = {"loss_opt": loss[at_flops.size:]}
    if result is not None:
        interval = result.intervals["loss_opt"]
        derived["loss_opt_interval"] = {"lower": interval.lower[:at_flops.size],
                                        "upper": interval.upper[:at_flops.size]}
        predicted.update(lower=interval.lower[at_flops.size:],
                         upper=interval.upper[at_flops.size:])
    if frontier is not None:
        derived["frontier"] = {"E": frontier.E, "k": frontier.k, "gamma": frontier.gamma,
                               "n_points": frontier.n_points, "free_E": frontier.free_E,
                               "rms_log_residual": frontier.rms_log_residual}
    return derived, predicted


def approach1(runs: list[TrainingRun], options: Options, at_flops: np.ndarray,
              extra: np.ndarray) -> tuple[dict, dict]:
    """Approach 1 on training curves."""
    flops = np.concatenate([at_flops, extra])
    result = None
    if options.bootstrap:
        result = bootstrap_approach1(runs, at_flops=flops, n_resamples=options.bootstrap,
                                     seed=options.seed, level=LEVEL, **options.conv)
        fit = result.fit
    else:
        fit = fit_approach1(runs, **options.conv)
    derived, predicted = _predictions(fit, result, at_flops, extra, SIX_ND)
    report = {"n_points": fit.n_points, "n_runs": fit.n_runs,
              "params": {"a": fit.a, "n_coef": fit.n_coef, "b": fit.b, "d_coef": fit.d_coef},
              "derived": derived}
    if result is not None:
        report["bootstrap"] = intervals(result)
    if options.out is not None:
        report["plots"] = draw(options.out, {
            "loss_vs_compute.png": lambda path: plots.loss_vs_compute(runs, fit, path=path),
            **_power_law_drawings("approach 1", fit, result, fit.flops, at_flops,
                                  "envelope N_opt against its power law")})
    return report, predicted


def approach2(points: Points, options: Options, at_flops: np.ndarray,
              extra: np.ndarray) -> tuple[dict, dict]:
    """Approach 2 on the points that have an IsoFLOP budget."""
    tokens = points.D if options.c_convention == "exact" else None
    kwargs = dict(tokens=tokens, keep_unbracketed=options.keep_unbracketed, rtol=options.rtol,
                  **options.conv)
    result = None
    if options.bootstrap:
        result = bootstrap_approach2(points.N, points.loss, points.budget,
                                     at_flops=np.concatenate([at_flops, extra]),
                                     n_resamples=options.bootstrap, seed=options.seed,
                                     level=LEVEL, **kwargs)
        fit: Approach2Fit = result.fit
    else:
        fit = fit_approach2(points.N, points.loss, points.budget, **kwargs)
    derived, predicted = _predictions(fit, result, at_flops, extra, SIX_ND)
    report = {"n_points": fit.n_points,
              "params": {"a": fit.a, "n_coef": fit.n_coef, "b": fit.b, "d_coef": fit.d_coef},
              "derived": derived,
              "profiles": {"budget": fit.budgets, "N_opt": fit.n_opt, "D_opt": fit.d_opt,
                           "loss_opt": fit.loss_opt, "excluded_budgets": fit.excluded_budgets,
                           "exclusion_reasons": fit.exclusion_reasons}}
    if result is not None:
        report["bootstrap"] = intervals(result)
    if options.out is not None:
        report["plots"] = draw(options.out, {
            "isoflop.png": lambda path: plots.isoflop_profiles(
                points.N, points.loss, points.budget, fit, rtol=options.rtol, path=path),
            **_power_law_drawings("approach 2", fit, result, fit.budgets, at_flops,
                                  "IsoFLOP minima against their power law")})
    return report, predicted


def approach3(points: Points, options: Options, at_flops: np.ndarray,
              extra: np.ndarray) -> tuple[dict, dict]:
    """Approach 3 on every point."""
    ratio = (fit_flops_ratio(points.N, points.D, points.C) if options.c_convention == "exact"
             else SIX_ND)
    result = None
    if options.bootstrap:
        result = bootstrap_approach3(points.N, points.D, points.loss,
                                     at_flops=np.concatenate([at_flops, extra]),
                                     n_resamples=options.bootstrap, seed=options.seed,
                                     level=LEVEL, C=points.C, rtol=options.rtol, ratio=ratio,
                                     **options.conv)
        fit: Approach3Fit = result.fit
    else:
        fit = fit_approach3(points.N, points.D, points.loss, C=points.C, rtol=options.rtol,
                            **options.conv)
    derived, predicted = {}, {}
    if np.isfinite(fit.G):
        derived, predicted = _predictions(fit, result, at_flops, extra, ratio)
        derived = {"G": fit.G, **derived}
        if options.c_convention == "exact":
            derived["flops_ratio"] = {"coef": ratio.coef, "power": ratio.power}
    report = {"n_points": fit.n_points,
              "params": {"E": fit.E, "A": fit.A, "B": fit.B, "alpha": fit.alpha,
                         "beta": fit.beta},
              "derived": derived,
              "objective": {"sum_huber": fit.objective, "delta": fit.delta,
                            "n_starts": fit.n_starts}}
    if result is not None:
        report["bootstrap"] = intervals(result)
    if options.out is not None:
        drawings = {
            "contours.png": lambda path: plots.approach3_contours(
                fit, points.N, points.D, points.loss, path=path),
            "residuals.png": lambda path: plots.residuals(
                points.N, points.loss, predict(fit, points.N, points.D),
                x_label=plots.N_LABEL[fit.n_convention],
                title="loss against the approach-3 fit", path=path)}
        if derived:
            drawings["allocation.png"] = lambda path: plots.allocation(
                {"approach 3": result or fit},
                flops_range(points.C.min(), points.C.max(), at_flops), path=path)
        report["plots"] = draw(options.out, drawings)
    return report, predicted


def hparams(data: Columns, options: Options, at_flops: np.ndarray | None,
            tolerance: float) -> dict:
    """Learning-rate and batch laws (`lm.scaling.hparams`) on columns C, lr, batch (tokens),
    loss and optionally budget; eta_opt and B_opt at `at_flops` (default: the largest budget)."""
    v = data.values
    kwargs = dict(c_convention=options.c_convention, tolerance=tolerance, rtol=options.rtol,
                  budget=v.get("budget"))
    result = None
    if options.bootstrap:
        flops = at_flops if at_flops is not None else np.array(
            [fit_hparams(v["C"], v["lr"], v["batch"], v["loss"], warn=False, **kwargs).budgets[-1]])
        result = bootstrap_hparams(v["C"], v["lr"], v["batch"], v["loss"], at_flops=flops,
                                   n_resamples=options.bootstrap, seed=options.seed, level=LEVEL,
                                   **kwargs)
        fit = result.fit
    else:
        fit = fit_hparams(v["C"], v["lr"], v["batch"], v["loss"], **kwargs)
    at_flops = np.array([fit.budgets[-1]]) if at_flops is None else at_flops
    lr_at, batch_at = fit.predict(at_flops)
    derived = {"at_flops": at_flops, "lr_opt": lr_at, "batch_opt": batch_at}
    if result is not None:
        derived.update({f"{name}_interval": {"lower": result.intervals[name].lower,
                                             "upper": result.intervals[name].upper}
                        for name in ("lr_opt", "batch_opt")})
    report = {"n_points": fit.n_points, "params": fit.params, "near_optimal": tolerance,
              "derived": derived, "reference": {"DeepSeek LLM (2024)": DEEPSEEK},
              "budgets": {"budget": fit.budgets, "n_runs": fit.n_runs, "n_near": fit.n_near,
                          "best_loss": fit.best_loss, "best_lr": fit.best_lr,
                          "best_batch": fit.best_batch, "lr_opt": fit.lr_opt,
                          "batch_opt": fit.batch_opt, "lr_range": fit.lr_range,
                          "batch_range": fit.batch_range}}
    if result is not None:
        report["bootstrap"] = intervals(result)
    if options.out is not None:
        report["plots"] = draw(options.out, {
            "hparams.png": lambda path: law_plots.hparam_laws(fit, v["lr"], v["batch"], result,
                                                              path=path),
            "landscape.png": lambda path: law_plots.hparam_landscape(
                fit, v["lr"], v["batch"], v["loss"], path=path)})
    return report


def data_constrained(data: Columns, options: Options, constants: dict | None) -> dict:
    """R*_D (and R*_N) of Muennighoff et al. (`lm.scaling.data_constrained`) on columns N, D,
    U and loss; `constants` (E, A, B, alpha, beta) fixes the Chinchilla part."""
    v = data.values
    args = (v["N"], v["D"], v["U"], v["loss"])
    kwargs = dict(n_convention=options.n_convention, constants=constants, rtol=options.rtol)
    result = None
    if options.bootstrap:
        result = bootstrap_data_constrained(*args, n_resamples=options.bootstrap,
                                            seed=options.seed, level=LEVEL, **kwargs)
        fit = result.fit
    else:
        fit = fit_data_constrained(*args, **kwargs)
    epochs = v["D"] / np.minimum(v["U"], v["D"])
    report = {"n_points": fit.n_points, "n_repeated": fit.n_repeated, "params": fit.params,
              "constants": "fixed" if fit.fixed else "fitted",
              "objective": {"sum_huber": fit.objective, "delta": DELTA},
              "reference": {"Muennighoff et al. (2023)": PAPER},
              "runs": {"epochs": epochs, "R_N": fit.R_N,
                       "residual": np.log(v["loss"]) - np.log(fit.predict(*args[:3]))}}
    if result is not None:
        report["bootstrap"] = intervals(result)
    if options.out is not None:
        report["plots"] = draw(options.out, {
            "data_constrained.png": lambda path: law_plots.data_constrained(fit, *args,
                                                                            path=path)})
    return report
