"""Plots of the hyperparameter laws (`lm.scaling.hparams`) and of data-constrained scaling
(`lm.scaling.data_constrained`), on off-screen Figures like `lm.scaling.plots` (each function
returns its Figure and, given `path`, writes it there as a PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from lm.scaling.data_constrained import PAPER, DataConstrainedFit
from lm.scaling.hparams import DEEPSEEK, HparamBootstrap, HparamFit
from lm.scaling.plots import C_LABEL, N_LABEL, CMAP, new_figure, finish_figure, log_norm


def hparam_laws(fit: HparamFit, lr: np.ndarray, batch: np.ndarray,
                result: HparamBootstrap | None = None, *, path: str | Path | None = None) -> Figure:
    """eta_opt(C) and B_opt(C): every run (grey), the near-optimal regions (blue circles, as
    DeepSeek drew them), each budget's centre (red), the fitted law (with its bootstrap band)
    and DeepSeek's exponent drawn through the middle of the fit."""
    fig, axes = new_figure(2)
    flops = np.geomspace(fit.budgets.min() / 1.5, fit.budgets.max() * 1.5, 100)
    lines = fit.predict(flops)
    bands = None
    if result is not None:
        q = [50 * (1 - result.level), 50 * (1 + result.level)]
        s = result.samples
        bands = [np.nanpercentile(s[f"{name}_opt_coef"][:, None]
                                  * flops ** s[f"{name}_opt_exponent"][:, None], q, axis=0)
                 for name in ("lr", "batch")]
    middle = np.sqrt(flops[0] * flops[-1])
    for i, (ax, name, values, centre, label) in enumerate((
            (axes[0], "lr", lr, fit.lr_opt, "peak learning rate"),
            (axes[1], "batch", batch, fit.batch_opt, "batch (tokens)"))):
        exponent = getattr(fit, f"{name}_opt_exponent")
        ax.plot(fit.point_budget, values, ".", color="grey", alpha=0.5, label="runs")
        ax.plot(fit.point_budget[fit.near], values[fit.near], "o", mfc="none", color="C0",
                label=f"within {fit.tolerance:.2%} of the budget's best")
        ax.plot(fit.budgets, centre, "*", color="crimson", markersize=11, label="region centre")
        ax.plot(flops, lines[i], "-", color="crimson", label=f"fit: C^{exponent:.3f}")
        if bands is not None:
            ax.fill_between(flops, *bands[i], color="crimson", alpha=0.15, linewidth=0)
        at_middle = float(np.ravel(fit.predict(middle)[i])[0])
        reference = DEEPSEEK[f"{name}_opt_exponent"]
        ax.plot(flops, at_middle * (flops / middle) ** reference, "--", color="grey",
                label=f"DeepSeek's slope: C^{reference:.3f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(C_LABEL[fit.c_convention])
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    axes[0].set_title("optimal learning rate")
    axes[1].set_title("optimal batch size")
    return finish_figure(fig, path)


def hparam_landscape(fit: HparamFit, lr: np.ndarray, batch: np.ndarray, loss: np.ndarray, *,
                     path: str | Path | None = None) -> Figure:
    """Per budget, loss against learning rate with a line per batch size; near-optimal runs
    circled (DeepSeek's Figure 3 in one row)."""
    fig, axes = new_figure(fit.budgets.size)
    norm = log_norm(batch)
    for ax, c in zip(axes, fit.budgets):
        at = np.flatnonzero(fit.point_budget == c)
        for b in np.unique(batch[at]):
            run = at[batch[at] == b]
            run = run[np.argsort(lr[run])]
            ax.plot(lr[run], loss[run], "o-", color=CMAP(norm(b)), markersize=3,
                    label=f"batch {b:,.0f}")
        near = at[fit.near[at]]
        ax.plot(lr[near], loss[near], "o", mfc="none", color="crimson", markersize=9)
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate")
        ax.set_ylabel("loss (nats/token)")
        ax.set_title(f"C = {c:.3g}", fontsize=9)
        ax.legend(fontsize=6)
    return finish_figure(fig, path)


def data_constrained(fit: DataConstrainedFit, N: np.ndarray, D: np.ndarray, U: np.ndarray,
                     loss: np.ndarray, *, path: str | Path | None = None) -> Figure:
    """Left: loss against tokens per model size, repeated runs (filled, the fitted law solid
    for each U) and runs on fresh data (hollow; the law at U = D dashed). Right: effective
    data D' / U_D against epochs, the fitted decay and the paper's R*_D = 15.4."""
    fig, (ax, ax_r) = new_figure(2)
    norm = log_norm(N)
    once = D <= U * (1 + 1e-9)
    for n in np.unique(N):
        color = CMAP(norm(n))
        at = N == n
        ax.plot(D[at & once], loss[at & once], "o", mfc="none", color=color)
        ax.plot(D[at & ~once], loss[at & ~once], "o", color=color, label=f"N = {n:.3g}")
        grid = np.geomspace(D[at].min(), D[at].max(), 100)
        ax.plot(grid, fit.predict(n, grid, grid), "--", color=color, linewidth=0.8)
        for u in np.unique(U[at & ~once]):
            tokens = np.geomspace(u, D[at & (U == u)].max(), 100)
            ax.plot(tokens, fit.predict(n, tokens, u), "-", color=color, linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("D (tokens trained on)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("repeated data (filled, solid) and fresh data (hollow, dashed)", fontsize=9)
    ax.legend(fontsize=7, title=N_LABEL[fit.n_convention], title_fontsize=7)
    epochs = np.geomspace(1, max(64.0, float((fit.R_D + 1).max())), 100)
    for r_star, style, label in ((fit.R_D_star, "-", f"fit: R*_D = {fit.R_D_star:.3g}"),
                                 (PAPER["R_D_star"], "--", "Muennighoff et al.: 15.4")):
        ax_r.plot(epochs, 1 + r_star * -np.expm1(-(epochs - 1) / r_star), style, label=label)
    ax_r.plot(epochs, epochs, ":", color="grey", label="fresh data (D' = D)")
    repeated = fit.R_D > 0
    r_d = fit.R_D[repeated]
    ax_r.plot(r_d + 1, 1 + fit.R_D_star * -np.expm1(-r_d / fit.R_D_star), "o", color="crimson",
              label="the runs' epochs")
    ax_r.set_xscale("log")
    ax_r.set_yscale("log")
    ax_r.set_xlabel("epochs (D / U_D)")
    ax_r.set_ylabel("effective data D' / U_D")
    ax_r.set_title("what repeated tokens are worth")
    ax_r.legend(fontsize=7)
    return finish_figure(fig, path)
