"""Backtests: fit a law on all but the largest compute budgets, predict the held-out ones.

The book's "predictable scaling" (Zhao et al., section 2.2.3), and what GPT-4's report did:
estimate a large run's loss from small runs. The budgets are the points' IsoFLOP budgets
when any point has one (values within `rtol` are one budget), else each point's own compute
C. The K largest budgets are held out; the fit sees only points with less compute than the
smallest of them (points outside every budget included, when their C is below it).
For each held-out budget:

- `predicted`: the fitted law's loss for the compute-optimal model at that budget
  (`lm.scaling.prediction`), with its bootstrap interval when there is one;
- `actual`: the budget's parabola minimum in log N when its sampled sizes bracket it (and the
  parabola opens upward), else its lowest observed loss;
- `relative_error` = (predicted - actual) / actual; `covered`: actual inside the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lm.scaling.chinchilla import budget_minimum, isoflop_profiles
from lm.scaling.design import DEFAULT_RTOL


@dataclass(frozen=True)
class Holdout:
    """Which points a backtest fits and which budgets it holds out."""

    budgets: np.ndarray  # held-out budgets, ascending
    held: tuple[np.ndarray, ...]  # a mask of each held-out budget's points
    train: np.ndarray  # mask of the points the fit may see
    fitted_budgets: np.ndarray  # the budgets left to fit, ascending


def point_budgets(budget: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Each point's budget: its IsoFLOP budget where it has one, else its compute."""
    return np.where(np.isfinite(budget), budget, C)


def backtest_budgets(budget: np.ndarray, C: np.ndarray) -> np.ndarray:
    """The budgets a backtest holds out: IsoFLOP ones when there are any (nan elsewhere),
    else every point's compute."""
    return budget if np.isfinite(budget).any() else C


def split_largest(budget: np.ndarray, C: np.ndarray, k: int, *,
                  rtol: float = DEFAULT_RTOL) -> Holdout:
    """Hold out the `k` largest budgets (see the module docstring); ValueError naming
    --holdout-largest when fewer than 2 budgets would be left to fit."""
    chosen = backtest_budgets(budget, C)
    finite = np.isfinite(chosen)
    profiles = []
    for c, at in isoflop_profiles(chosen[finite], rtol):
        mask = np.zeros(C.size, dtype=bool)
        mask[np.flatnonzero(finite)[at]] = True
        profiles.append((c, mask))
    if not 1 <= k <= len(profiles) - 2:
        raise ValueError(f"--holdout-largest {k}: the data have {len(profiles)} budget(s) "
                         f"(values within {rtol:.0%} are one); holding out {k} must leave at "
                         "least 2 to fit, so K must lie in [1, "
                         f"{max(len(profiles) - 2, 0)}]")
    held = profiles[-k:]
    lowest = held[0][0] / (1 + rtol)
    in_held = np.any([at for _, at in held], axis=0)
    train = ~in_held & (C < lowest)
    return Holdout(np.array([c for c, _ in held]), tuple(at for _, at in held), train,
                   np.array([c for c, at in profiles[:-k]]))


def actual_loss(N: np.ndarray, loss: np.ndarray) -> tuple[float, str]:
    """A held-out budget's observed compute-optimal loss and how it was read."""
    if np.unique(N).size >= 3:
        minimum = budget_minimum(N, loss)
        if minimum.curvature > 0 and minimum.bracketed:
            return minimum.loss_opt, "parabola minimum"
    return float(loss.min()), "best observed loss"


def backtest_rows(holdout: Holdout, N: np.ndarray, loss: np.ndarray, predicted: np.ndarray,
                  lower: np.ndarray | None = None,
                  upper: np.ndarray | None = None) -> list[dict]:
    """One row per held-out budget: predicted (and its interval), actual, error, coverage."""
    rows = []
    for i, (c, at) in enumerate(zip(holdout.budgets, holdout.held)):
        actual, source = actual_loss(N[at], loss[at])
        row = {"budget": float(c), "n_points": int(at.sum()), "predicted": float(predicted[i]),
               "actual": actual, "actual_from": source,
               "relative_error": float((predicted[i] - actual) / actual)}
        if lower is not None and upper is not None:
            row["interval"] = [float(lower[i]), float(upper[i])]
            row["covered"] = bool(lower[i] <= actual <= upper[i])
        rows.append(row)
    return rows
