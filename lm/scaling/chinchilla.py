"""Chinchilla scaling-law fits: Hoffmann et al. (2022), "Training Compute-Optimal Large Language
Models".

- Approach 1: lower envelope of training curves over FLOPs -> N_opt = k C^a, D_opt = k' C^b.
- Approach 2: a parabola in log N per IsoFLOP budget -> its minimum -> the same power laws.
- Approach 3: L(N, D) = E + A/N^alpha + B/D^beta fitted with a Huber loss on log L
  (`lm.scaling.approach3`, re-exported here), as replicated by Besiroglu et al. (2024),
  "Chinchilla Scaling: A replication attempt" (Epoch AI).

Loss is in nats per token. Every result records the caller's `n_convention` and `c_convention`.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from lm.scaling.approach3 import (Approach3Fit, Scales, fit_approach3, paper_start_grid,
                                  start_grid)
from lm.scaling.design import (DEFAULT_RTOL, IdentifiabilityWarning, check_loss_varies,
                               group_close)
from lm.scaling.laws import check_conventions, chinchilla_loss, compute_optimal, positive_array, same_length

__all__ = ["Approach1Fit", "Approach2Fit", "Approach3Fit", "IdentifiabilityWarning", "Scales",
           "TrainingRun", "allocate", "budget_minimum", "fit_approach1", "fit_approach2",
           "fit_approach3", "fit_power_law", "load_epoch_chinchilla_csv", "paper_start_grid",
           "predict", "start_grid"]


@dataclass(frozen=True)
class TrainingRun:
    """One training curve: a model with N parameters, tokens seen and loss at each evaluation.

    `flops` (cumulative training FLOPs at each evaluation) is given exactly when the fit uses
    c_convention="exact"; under "6ND" the FLOPs are 6 * N * tokens.
    """

    N: float
    tokens: ArrayLike
    loss: ArrayLike
    flops: ArrayLike | None = None


@dataclass(frozen=True)
class Approach1Fit:
    """Approach 1: N_opt = n_coef * C^a and D_opt = d_coef * C^b fitted to the loss envelope."""

    method: str  # "approach1"
    n_convention: str
    c_convention: str
    n_points: int  # FLOP grid values on the envelope (those some run reaches)
    n_runs: int
    a: float
    n_coef: float
    b: float
    d_coef: float
    flops: np.ndarray  # the grid values used
    n_opt: np.ndarray  # N of the envelope run at each grid value
    d_opt: np.ndarray  # tokens that run has seen there
    loss_opt: np.ndarray  # envelope loss


@dataclass(frozen=True)
class Approach2Fit:
    """Approach 2: N_opt = n_coef * C^a and D_opt = d_coef * C^b fitted to IsoFLOP minima."""

    method: str  # "approach2"
    n_convention: str
    c_convention: str
    n_points: int  # IsoFLOP points in the budgets used
    a: float
    n_coef: float
    b: float
    d_coef: float
    budgets: np.ndarray  # budgets used, ascending
    n_opt: np.ndarray  # parabola minimum per budget
    d_opt: np.ndarray
    loss_opt: np.ndarray  # parabola value at its minimum
    excluded_budgets: tuple[float, ...]  # left out: no minimum, or (by default) unbracketed
    exclusion_reasons: tuple[str, ...] = ()  # why, one per excluded budget


# ---------------------------------------------------------------- data

EPOCH_COLUMNS = ("Model Size", "Training FLOP", "loss")


def load_epoch_chinchilla_csv(path: str | Path, *,
                              drop_highest_loss: int = 0) -> tuple[np.ndarray, ...]:
    """(N, D, C, loss) from Epoch AI's extraction of Chinchilla Figure 4, D = C / (6N).

    Epoch's replication (Besiroglu et al. 2024) fits approach 3 after dropping the 5
    highest-loss points: pass `drop_highest_loss=5` to do the same.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in EPOCH_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path} lacks columns {missing}; expected {EPOCH_COLUMNS}")
        rows = [[float(row[c]) for c in EPOCH_COLUMNS] for row in reader]
    if not rows:
        raise ValueError(f"{path} has no data rows")
    N, C, loss = (positive_array(name, column)
                  for name, column in zip(EPOCH_COLUMNS, np.array(rows, dtype=float).T))
    if not 0 <= drop_highest_loss < len(loss):
        raise ValueError(f"drop_highest_loss must be in [0, {len(loss)}); got {drop_highest_loss}")
    keep = np.sort(np.argsort(loss, kind="stable")[:len(loss) - drop_highest_loss])
    N, C, loss = N[keep], C[keep], loss[keep]
    return N, C / (6.0 * N), C, loss


def fit_power_law(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(coef, exponent) of y = coef * x^exponent by linear regression of log y on log x."""
    exponent, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(intercept)), float(exponent)


# ---------------------------------------------------------------- approach 1

def _run_flops(i: int, run: TrainingRun, c_convention: str) -> tuple[np.ndarray, ...]:
    """Validated (log C, log D, loss) of one run."""
    name = f"runs[{i}]"
    N = float(positive_array(f"{name}.N", run.N))
    tokens = positive_array(f"{name}.tokens", run.tokens)
    loss = positive_array(f"{name}.loss", run.loss)
    same_length(**{f"{name}.tokens": tokens, f"{name}.loss": loss})
    if c_convention == "6ND":
        if run.flops is not None:
            raise ValueError(f"{name}.flops is given but c_convention='6ND' computes C = 6ND; "
                             "drop flops or pass c_convention='exact'")
        flops = 6.0 * N * tokens
    else:
        if run.flops is None:
            raise ValueError(f"{name}.flops is required with c_convention='exact'")
        flops = positive_array(f"{name}.flops", run.flops)
        same_length(**{f"{name}.tokens": tokens, f"{name}.flops": flops})
    if tokens.size < 2 or np.any(np.diff(flops) <= 0):
        raise ValueError(f"{name} needs at least 2 evaluations with strictly increasing FLOPs")
    return np.log(flops), np.log(tokens), loss


def fit_approach1(runs: Sequence[TrainingRun], *, n_convention: str, c_convention: str,
                  flops_grid: ArrayLike | None = None) -> Approach1Fit:
    """Approach 1: at each FLOP value the run with the lowest loss, then power laws in C.

    Each curve is interpolated linearly in log C, and only inside the FLOPs it covers.
    `flops_grid` defaults to 1,500 log-spaced values (as in the paper) from the smallest to the
    largest final FLOPs over runs; grid values no run reaches are skipped. Near the top of that
    range few runs compete, so pass a grid restricted to where the envelope is meaningful.
    Warns with IdentifiabilityWarning when one run makes the whole envelope.
    """
    check_conventions(n_convention, c_convention)
    if len(runs) < 2:
        raise ValueError(f"runs must hold at least 2 training runs; got {len(runs)}")
    curves = [_run_flops(i, run, c_convention) for i, run in enumerate(runs)]
    if flops_grid is None:
        finals = [log_c[-1] for log_c, _, _ in curves]
        log_grid = np.linspace(min(finals), max(finals), 1500)
    else:
        log_grid = np.log(positive_array("flops_grid", flops_grid))
    loss = np.stack([np.interp(log_grid, log_c, l, left=np.inf, right=np.inf)
                     for log_c, _, l in curves])
    log_tokens = np.stack([np.interp(log_grid, log_c, log_d) for log_c, log_d, _ in curves])
    best = np.argmin(loss, axis=0)
    columns = np.arange(log_grid.size)
    covered = np.isfinite(loss[best, columns])
    if np.unique(log_grid[covered]).size < 2:
        raise ValueError(f"flops_grid: {np.unique(log_grid[covered]).size} distinct grid value(s) "
                         "lie within some run's FLOPs; need at least 2")
    best, columns = best[covered], columns[covered]
    if np.unique(best).size == 1:
        warnings.warn(f"the loss envelope is run {best[0]} (N={float(runs[best[0]].N):.3g}) at "
                      "every FLOP value, so N_opt does not vary; the fitted exponents say "
                      "nothing about the law", IdentifiabilityWarning, stacklevel=2)
    flops = np.exp(log_grid[columns])
    n_opt = np.array([float(runs[i].N) for i in best])
    d_opt = np.exp(log_tokens[best, columns])
    n_coef, a = fit_power_law(flops, n_opt)
    d_coef, b = fit_power_law(flops, d_opt)
    return Approach1Fit("approach1", n_convention, c_convention, int(covered.sum()), len(runs),
                        a, n_coef, b, d_coef, flops, n_opt, d_opt, loss[best, columns])


# ---------------------------------------------------------------- approach 2

@dataclass(frozen=True)
class BudgetMinimum:
    """One IsoFLOP profile's parabola in log N: its minimum, and whether the sampled N
    bracket it (the smallest sampled N <= N_opt <= the largest)."""

    n_opt: float  # nan when the parabola opens downward
    loss_opt: float  # the parabola's value there (nan when it opens downward)
    curvature: float  # of loss in log N; <= 0: no minimum
    bracketed: bool
    best_loss: float  # the lowest observed loss of the profile


def budget_minimum(N: np.ndarray, loss: np.ndarray) -> BudgetMinimum:
    """The parabola of `loss` in log `N` through one IsoFLOP profile (>= 3 distinct N)."""
    log_n = np.log(N)
    center = log_n.mean()
    p2, p1, p0 = np.polyfit(log_n - center, loss, 2)
    if not p2 > 0:
        return BudgetMinimum(float("nan"), float("nan"), float(p2), False, float(loss.min()))
    x = -p1 / (2 * p2)
    bracketed = bool(log_n.min() <= x + center <= log_n.max())
    return BudgetMinimum(float(np.exp(x + center)), float(p0 - p1 ** 2 / (4 * p2)), float(p2),
                         bracketed, float(loss.min()))


def isoflop_profiles(budget: np.ndarray, rtol: float = DEFAULT_RTOL
                     ) -> list[tuple[float, np.ndarray]]:
    """(budget, mask of its points) per IsoFLOP profile, by ascending budget: values within
    `rtol` of each other are one budget, represented by their geometric mean."""
    groups = group_close(budget, rtol)
    profiles = []
    for g in np.unique(groups):
        values = budget[groups == g]
        c = values[0] if np.all(values == values[0]) else np.exp(np.log(values).mean())
        profiles.append((float(c), groups == g))
    return profiles


def fit_approach2(N: ArrayLike, loss: ArrayLike, budget: ArrayLike, *, n_convention: str,
                  c_convention: str, tokens: ArrayLike | None = None,
                  keep_unbracketed: bool = False, rtol: float = DEFAULT_RTOL) -> Approach2Fit:
    """Approach 2: per IsoFLOP budget a parabola of loss in log N; its minimum is N_opt(C).

    `budget[i]` is the FLOP budget of point i; values within `rtol` (relative) of each other
    are one budget (`design.group_close`), represented by their geometric mean. Under
    c_convention="6ND", D_opt = C / (6 N_opt); under "exact", `tokens` is required and D_opt
    comes from a linear fit of log D on log N within the budget.

    A budget is left out of the power laws, with an IdentifiabilityWarning naming it, when it
    has fewer than 3 distinct N, when its parabola opens downward (no minimum) or, unless
    `keep_unbracketed`, when its minimum lies
    outside the sampled N: such a minimum is an extrapolation, and one of them can move the
    exponent far from what the data support. Kept unbracketed budgets also warn.
    """
    check_conventions(n_convention, c_convention)
    N, loss, budget = (positive_array(name, value) for name, value in
                       (("N", N), ("loss", loss), ("budget", budget)))
    same_length(N=N, loss=loss, budget=budget)
    if c_convention == "6ND" and tokens is not None:
        raise ValueError("tokens is only used with c_convention='exact'; under '6ND' "
                         "D_opt = C / (6 N_opt)")
    if c_convention == "exact":
        if tokens is None:
            raise ValueError("tokens is required with c_convention='exact' (D_opt comes from "
                             "the caller's token counts)")
        tokens = positive_array("tokens", tokens)
        same_length(N=N, tokens=tokens)
    check_loss_varies(loss, "approach 2")
    profiles = isoflop_profiles(budget, rtol)
    rows, excluded, reasons, kept_used = [], [], [], []
    for c, at in profiles:
        same = f" ({at.sum()} values within {rtol:.0%})" if np.unique(budget[at]).size > 1 else ""
        log_n = np.log(N[at])
        if np.unique(log_n).size < 3:
            reason = (f"budget {c:.4g}{same} has {np.unique(log_n).size} distinct N value(s); a "
                      "parabola in log N needs at least 3, so it is left out (budgets within "
                      f"rtol={rtol:g} are one: widen it, --budget-rtol, or name each point's "
                      "budget, --budget-col)")
            warnings.warn(reason, IdentifiabilityWarning, stacklevel=2)
            excluded.append(c)
            reasons.append(reason)
            continue
        fit = budget_minimum(N[at], loss[at])
        if not fit.curvature > 0:
            reason = (f"budget {c:.4g}: the parabola in log N opens downward (curvature "
                      f"{fit.curvature:.3g}); it has no minimum and is left out")
        elif not fit.bracketed:
            where = (f"budget {c:.4g}: the parabola's minimum N={fit.n_opt:.3g} lies outside "
                     f"the sampled N in [{N[at].min():.3g}, {N[at].max():.3g}]")
            reason = (f"{where}; kept (--keep-unbracketed), an extrapolation" if keep_unbracketed
                      else f"{where}, an extrapolation, and is left out (keep it with "
                           "--keep-unbracketed / keep_unbracketed=True)")
        else:
            reason = ""
        if reason:
            warnings.warn(reason, IdentifiabilityWarning, stacklevel=2)
        if reason and not (keep_unbracketed and fit.curvature > 0):
            excluded.append(c)
            reasons.append(reason)
            continue
        if c_convention == "6ND":
            d_opt = c / (6.0 * fit.n_opt)
        else:
            center = log_n.mean()
            slope, intercept = np.polyfit(log_n - center, np.log(tokens[at]), 1)
            d_opt = float(np.exp(intercept + slope * (np.log(fit.n_opt) - center)))
        kept_used.append(at)
        rows.append((c, fit.n_opt, d_opt, fit.loss_opt))
    if len(rows) < 2:
        shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3
                                          else "")
        raise ValueError(f"budget: {len(rows)} usable IsoFLOP budget(s) of "
                         f"{len(profiles)}; the power laws need at least 2"
                         + (f" (left out: {shown})" if reasons else ""))
    budgets, n_opt, d_opt, loss_opt = (np.array(column) for column in zip(*rows))
    n_coef, a = fit_power_law(budgets, n_opt)
    d_coef, b = fit_power_law(budgets, d_opt)
    return Approach2Fit("approach2", n_convention, c_convention,
                        int(np.any(kept_used, axis=0).sum()), a, n_coef, b, d_coef, budgets,
                        n_opt, d_opt, loss_opt, tuple(excluded), tuple(reasons))


# ---------------------------------------------------------------- using fits

def allocate(result: Approach1Fit | Approach2Fit | Approach3Fit,
             flops: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) at compute `flops`: the fitted power laws, or approach 3's closed form."""
    flops = positive_array("flops", flops)
    if isinstance(result, Approach3Fit):
        return compute_optimal(flops, A=result.A, B=result.B, alpha=result.alpha,
                               beta=result.beta)
    if isinstance(result, (Approach1Fit, Approach2Fit)):
        return result.n_coef * flops ** result.a, result.d_coef * flops ** result.b
    raise TypeError(f"result must be an Approach1Fit, Approach2Fit or Approach3Fit; got "
                    f"{type(result).__name__}")


def predict(result: Approach3Fit, N: ArrayLike, D: ArrayLike) -> np.ndarray:
    """Loss at (N, D) from an approach-3 fit (lm.scaling.bootstrap.predict also takes a
    bootstrap of one and gives an Interval)."""
    if isinstance(result, Approach3Fit):
        return chinchilla_loss(N, D, E=result.E, A=result.A, B=result.B, alpha=result.alpha,
                               beta=result.beta)
    raise TypeError("result must be an Approach3Fit (approaches 1 and 2 estimate allocations, "
                    f"not losses; a bootstrap goes to lm.scaling.bootstrap.predict); got "
                    f"{type(result).__name__}")
