"""Scaling-law plots on off-screen matplotlib Figures (Agg canvas, never a pyplot window).

Every function returns its Figure and, given `path`, also writes it there as a PNG (to a
temporary name, then renamed). Axis labels carry the fit's N and C conventions.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from lm.scaling.bootstrap import BootstrapResult
from lm.scaling.chinchilla import (Approach1Fit, Approach2Fit, Approach3Fit, TrainingRun,
                                   allocate, predict)
from lm.scaling.chinchilla import isoflop_profiles as profiles_of
from lm.scaling.design import DEFAULT_RTOL
from lm.scaling.fit_km import KMFit
from lm.scaling.laws import compute_optimal, km_loss_c, km_loss_d, km_loss_n, positive_array

# Published compute-optimal exponents of N_opt ~ C^a, drawn as reference slopes.
KM_A = 0.73  # Kaplan et al. (2020), section 6.1
CHINCHILLA_A = 0.50  # Hoffmann et al. (2022): 0.50, 0.49 and 0.46 from approaches 1-3

N_LABEL = {"total": "N (total parameters)", "non_embedding": "N (non-embedding parameters)"}
C_LABEL = {"6ND": "C = 6ND (FLOPs)", "exact": "C (exact FLOPs)"}
_KM_LAWS = {"km_n": ("N", km_loss_n), "km_d": ("D", km_loss_d), "km_c": ("C", km_loss_c)}
CMAP = matplotlib.colormaps["viridis"]


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write `fig` to `path` as a PNG atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def new_figure(ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(6.4 * ncols, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
    return fig, axes


def finish_figure(fig: Figure, path: str | Path | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        save_png(fig, path)
    return fig


def log_norm(values: np.ndarray) -> LogNorm:
    lo, hi = float(np.min(values)), float(np.max(values))
    return LogNorm(lo, hi if hi > lo else lo * 10)


# ---------------------------------------------------------------- approach 2

def isoflop_profiles(N: ArrayLike, loss: ArrayLike, budget: ArrayLike, fit: Approach2Fit, *,
                     rtol: float = DEFAULT_RTOL, path: str | Path | None = None) -> Figure:
    """Loss against N per IsoFLOP budget, with each budget's parabola in log N and its minimum.

    Budget values within `rtol` are one budget, as in the fit. Budgets the fit left out (no
    minimum, or one the sampled sizes do not bracket) are drawn hollow, without a curve.
    """
    N, loss, budget = (np.asarray(v, dtype=float) for v in (N, loss, budget))
    fig, (ax,) = new_figure()
    norm = log_norm(np.concatenate([fit.budgets, fit.excluded_budgets]))
    for c, at in profiles_of(budget, rtol):
        if c in fit.excluded_budgets:
            ax.plot(N[at], loss[at], "o", mfc="none", color=CMAP(norm(c)),
                    label=f"{c:.3g} (left out)")
            continue
        log_n = np.log(N[at])
        center = log_n.mean()
        parabola = np.poly1d(np.polyfit(log_n - center, loss[at], 2))
        grid = np.linspace(log_n.min() - 0.2, log_n.max() + 0.2, 100)
        ax.plot(N[at], loss[at], "o", color=CMAP(norm(c)), markersize=4, label=f"{c:.3g}")
        ax.plot(np.exp(grid), parabola(grid - center), "-", color=CMAP(norm(c)), linewidth=1)
    ax.plot(fit.n_opt, fit.loss_opt, "*", color="crimson", markersize=11, label="minima")
    ax.set_xscale("log")
    ax.set_xlabel(N_LABEL[fit.n_convention])
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"IsoFLOP profiles, budgets in {C_LABEL[fit.c_convention]}")
    ax.legend(fontsize=7, ncols=2)
    return finish_figure(fig, path)


# ---------------------------------------------------------------- approach 1

def run_flops(run: TrainingRun) -> np.ndarray:
    """A run's FLOPs at each evaluation: its own `flops`, else 6 N tokens."""
    if run.flops is not None:
        return positive_array("run.flops", run.flops)
    return 6.0 * run.N * positive_array("run.tokens", run.tokens)


def loss_vs_compute(runs: Sequence[TrainingRun], fit: Approach1Fit | None = None, *,
                    path: str | Path | None = None) -> Figure:
    """Every run's loss curve against compute, coloured by N, with approach 1's frontier
    (the lowest loss at each FLOP value) when `fit` is given."""
    if not runs:
        raise ValueError("runs is empty; pass at least one TrainingRun")
    fig, (ax,) = new_figure()
    norm = log_norm(np.array([run.N for run in runs]))
    for run in runs:
        ax.plot(run_flops(run), run.loss, "-", color=CMAP(norm(run.N)), linewidth=0.8)
    if fit is not None:
        ax.plot(fit.flops, fit.loss_opt, "-", color="crimson", linewidth=2,
                label=f"frontier: N_opt ~ C^{fit.a:.3f}")
        ax.legend()
    fig.colorbar(matplotlib.cm.ScalarMappable(norm, CMAP), ax=ax, label="N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(C_LABEL[fit.c_convention] if fit else "C (FLOPs)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"loss against compute, {len(runs)} runs")
    return finish_figure(fig, path)


# ---------------------------------------------------------------- allocation

def _allocation_samples(result: BootstrapResult,
                        flops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) of every bootstrap resample at `flops`, shape (resamples, flops)."""
    s = {name: values[:, None] for name, values in result.samples.items()}
    if isinstance(result.fit, Approach3Fit):
        scale = flops / 6.0
        return s["G"] * scale ** s["a"], scale ** s["b"] / s["G"]
    return s["n_coef"] * flops ** s["a"], s["d_coef"] * flops ** s["b"]


def allocation(results: Mapping[str, Approach1Fit | Approach2Fit | Approach3Fit
                                | BootstrapResult], flops: ArrayLike, *,
               path: str | Path | None = None) -> Figure:
    """N_opt(C) and D_opt(C) of each labelled fit over the compute values `flops`.

    A bootstrap result adds its percentile band and error bars at its `at_flops`; approach 1
    and 2 fits add the points they were fitted to. Grey lines give the published slopes,
    N_opt ~ C^0.73 (Kaplan et al. 2020) and C^0.5 (Hoffmann et al. 2022), and the matching
    D_opt slopes under C = 6ND, drawn through the first fit at the middle of `flops`.
    """
    if not results:
        raise ValueError("results is empty; pass {label: fit or bootstrap result}")
    flops = np.sort(positive_array("flops", np.atleast_1d(flops)))
    fig, (ax_n, ax_d) = new_figure(2)
    for i, (label, result) in enumerate(results.items()):
        fit = result.fit if isinstance(result, BootstrapResult) else result
        color = f"C{i}"
        n_opt, d_opt = allocate(fit, flops)
        ax_n.plot(flops, n_opt, "-", color=color, label=f"{label}: a = {fit.a:.3f}")
        ax_d.plot(flops, d_opt, "-", color=color, label=f"{label}: b = {fit.b:.3f}")
        if isinstance(fit, Approach1Fit):  # the envelope: many grid values, drawn faint
            ax_n.plot(fit.flops, fit.n_opt, ".", color=color, markersize=2, alpha=0.3)
            ax_d.plot(fit.flops, fit.d_opt, ".", color=color, markersize=2, alpha=0.3)
        elif isinstance(fit, Approach2Fit):  # one minimum per budget
            ax_n.plot(fit.budgets, fit.n_opt, "s", color=color, markersize=4)
            ax_d.plot(fit.budgets, fit.d_opt, "s", color=color, markersize=4)
        if isinstance(result, BootstrapResult):
            n_samples, d_samples = _allocation_samples(result, flops)
            q = [50 * (1 - result.level), 50 * (1 + result.level)]
            for ax, samples, name in ((ax_n, n_samples, "N_opt"), (ax_d, d_samples, "D_opt")):
                lower, upper = np.nanpercentile(samples, q, axis=0)
                ax.fill_between(flops, lower, upper, color=color, alpha=0.2, linewidth=0)
                interval = result.intervals[name]
                ax.errorbar(result.at_flops, interval.estimate,
                            yerr=[interval.estimate - interval.lower,
                                  interval.upper - interval.estimate],
                            fmt="o", color=color, capsize=3, markersize=4)
        if i == 0:
            middle = np.sqrt(flops[0] * flops[-1])
            n_mid, d_mid = (float(np.ravel(v)[0]) for v in allocate(fit, middle))
            for a, name, style in ((KM_A, "Kaplan 2020", ":"),
                                   (CHINCHILLA_A, "Chinchilla", "--")):
                ax_n.plot(flops, n_mid * (flops / middle) ** a, style, color="grey",
                          label=f"{name}: C^{a:.2f}")
                ax_d.plot(flops, d_mid * (flops / middle) ** (1 - a), style, color="grey",
                          label=f"{name}: C^{1 - a:.2f}")
    for ax in (ax_n, ax_d):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(C_LABEL[fit.c_convention])
        ax.legend(fontsize=8)
    ax_n.set_ylabel(f"N_opt: {N_LABEL[fit.n_convention]}")
    ax_d.set_ylabel("D_opt (tokens)")
    ax_n.set_title("compute-optimal model size")
    ax_d.set_title("compute-optimal training tokens")
    return finish_figure(fig, path)


# ---------------------------------------------------------------- approach 3

def approach3_contours(fit: Approach3Fit, N: ArrayLike, D: ArrayLike, loss: ArrayLike, *,
                       path: str | Path | None = None) -> Figure:
    """Contours of the fitted L(N, D) with the runs on them coloured by their observed loss on
    the same scale, dotted IsoFLOP lines C = 6ND and the compute-optimal line."""
    N, D, loss = positive_array("N", N), positive_array("D", D), positive_array("loss", loss)
    fig, (ax,) = new_figure()
    pad = 0.3
    log_n = np.linspace(np.log10(N.min()) - pad, np.log10(N.max()) + pad, 120)
    log_d = np.linspace(np.log10(D.min()) - pad, np.log10(D.max()) + pad, 120)
    grid_n, grid_d = np.meshgrid(10 ** log_n, 10 ** log_d)
    surface = predict(fit, grid_n, grid_d)
    filled = ax.contourf(grid_n, grid_d, surface, levels=16, cmap=CMAP)
    fig.colorbar(filled, ax=ax, label="loss (nats/token)")
    ax.scatter(N, D, c=loss, cmap=CMAP, norm=filled.norm, s=18, edgecolors="black",
               linewidths=0.6, label="runs (observed loss)")
    corner = 6 * grid_n * grid_d
    for c in 10.0 ** np.arange(np.ceil(np.log10(corner.min())), np.log10(corner.max()) + 1):
        n_line = 10 ** log_n
        ax.plot(n_line, c / (6 * n_line), ":", color="white", linewidth=0.6)
    if np.isfinite(fit.G):
        c_line = np.geomspace(corner.min(), corner.max(), 100)
        n_opt, d_opt = compute_optimal(c_line, A=fit.A, B=fit.B, alpha=fit.alpha,
                                       beta=fit.beta)
        ax.plot(n_opt, d_opt, "-", color="crimson", linewidth=2,
                label=f"compute-optimal: N ~ C^{fit.a:.3f}")
    ax.set_xlim(grid_n.min(), grid_n.max())
    ax.set_ylim(grid_d.min(), grid_d.max())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(N_LABEL[fit.n_convention])
    ax.set_ylabel("D (tokens)")
    ax.set_title(f"E + A/N^{fit.alpha:.3f} + B/D^{fit.beta:.3f}, E = {fit.E:.3g}")
    ax.legend(fontsize=8, loc="upper right")
    return finish_figure(fig, path)


# ---------------------------------------------------------------- any fit

def residuals(x: ArrayLike, observed: ArrayLike, fitted: ArrayLike, *, x_label: str,
              title: str, path: str | Path | None = None) -> Figure:
    """log(observed) - log(fitted) against x (log scale), with the zero line and the RMS.

    Pass losses and a fit's predicted losses, or N_opt values and their fitted power law.
    """
    x = positive_array("x", x)
    residual = np.log(positive_array("observed", observed)) - np.log(
        positive_array("fitted", fitted))
    if not x.shape == residual.shape:
        raise ValueError(f"x, observed and fitted must share a shape; got {x.shape} and "
                         f"{residual.shape}")
    fig, (ax,) = new_figure()
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.plot(x, residual, "o", markersize=3, alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("log observed - log fitted")
    ax.set_title(f"{title}: RMS {np.sqrt(np.mean(residual ** 2)):.3g} over {x.size} points")
    return finish_figure(fig, path)


def power_law(fit: KMFit, x: ArrayLike, loss: ArrayLike, *,
              path: str | Path | None = None) -> Figure:
    """A one-variable KM law (km_n, km_d or km_c) over the points it was fitted to."""
    if fit.method not in _KM_LAWS:
        raise ValueError(f"power_law draws {sorted(_KM_LAWS)}; got a {fit.method} fit (plot "
                         "its residuals instead)")
    name, law = _KM_LAWS[fit.method]
    x, loss = positive_array(name, x), positive_array("loss", loss)
    fig, (ax,) = new_figure()
    line = np.geomspace(x.min(), x.max(), 100)
    ax.plot(x, loss, "o", markersize=4, label=f"{x.size} points")
    scale, exponent = fit.params[f"{name}c"], fit.params[f"alpha_{name}"]
    ax.plot(line, law(line, **fit.params), "-", color="crimson",
            label=f"({name}c/{name})^{exponent:.4f}, {name}c = {scale:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel({"N": N_LABEL[fit.n_convention], "D": "D (tokens)",
                   "C": C_LABEL[fit.c_convention]}[name])
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"Kaplan L({name})")
    ax.legend()
    return finish_figure(fig, path)
