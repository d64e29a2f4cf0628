"""One plot of the compute-optimal loss against compute: what each budget's runs reached,
each method's predicted frontier, and its predictions (with intervals) for held-out budgets."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from lm.scaling.backtest import actual_loss, backtest_budgets
from lm.scaling.chinchilla import isoflop_profiles
from lm.scaling.design import DEFAULT_RTOL
from lm.scaling.plots import C_LABEL, new_figure, finish_figure
from lm.scaling.prediction import FlopsRatio, Frontier, approach3_loss_opt
from lm.scaling.table import Points

_COLORS = {"approach1": "tab:blue", "approach2": "tab:orange", "approach3": "tab:green"}


def frontier_curve(body: Mapping, C: np.ndarray) -> np.ndarray | None:
    """The loss_opt(C) a method's report describes (its frontier or its approach-3 law)."""
    derived = body.get("derived") or {}
    if "frontier" in derived:
        return Frontier(**derived["frontier"]).loss(C)
    if derived and "E" in body.get("params", {}):
        ratio = FlopsRatio(**derived.get("flops_ratio", {"coef": 6.0, "power": 0.0}))
        return np.array([approach3_loss_opt(*(body["params"][k] for k in
                                              ("E", "A", "B", "alpha", "beta")), c, ratio)
                         for c in C])
    return None


def comparison(points: Points, methods: Mapping[str, Mapping], *, rtol: float = DEFAULT_RTOL,
               c_convention: str = "6ND", path: str | Path | None = None) -> Figure:
    """Per budget the runs' compute-optimal loss (parabola minimum or best run; held-out
    budgets ringed), each method's frontier, and its backtest predictions."""
    fig, (ax,) = new_figure()
    budgets = backtest_budgets(points.budget, points.C)
    budgeted = np.isfinite(budgets)
    held = {row["budget"] for body in methods.values()
            for row in body.get("backtest", {}).get("rows", [])}
    observed = []
    N, loss = points.N[budgeted], points.loss[budgeted]
    for c, at in isoflop_profiles(budgets[budgeted], rtol):
        observed.append((c, actual_loss(N[at], loss[at])[0]))
    c_obs, l_obs = (np.array(v) for v in zip(*observed))
    ax.plot(c_obs, l_obs, "ko", markersize=5, label="runs: each budget's optimum")
    ringed = np.isin(c_obs, list(held))
    if ringed.any():
        ax.plot(c_obs[ringed], l_obs[ringed], "o", mfc="none", mec="crimson", markersize=12,
                label="held out")
    grid = np.geomspace(c_obs.min(), c_obs.max() * 1.5, 60)
    for name, body in methods.items():
        color = _COLORS.get(name, "tab:purple")
        curve = frontier_curve(body, grid)
        if curve is not None:
            ax.plot(grid, curve, "-", color=color, linewidth=1.2, label=f"{name} loss_opt(C)")
        for row in body.get("backtest", {}).get("rows", []):
            interval = row.get("interval")
            err = None if interval is None else [[row["predicted"] - interval[0]],
                                                 [interval[1] - row["predicted"]]]
            ax.errorbar([row["budget"]], [row["predicted"]], yerr=err, fmt="s", color=color,
                        capsize=3, markersize=5)
    ax.set_xscale("log")
    ax.set_xlabel(C_LABEL[c_convention])
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("compute-optimal loss: runs and predictions")
    ax.legend(fontsize=7)
    return finish_figure(fig, path)
