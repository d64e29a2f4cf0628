"""Nonparametric bootstrap intervals for the Chinchilla fits.

Each bootstrap draws `n_resamples` resamples with replacement from a seeded generator, refits,
and reports percentile intervals at `level` for every parameter and for N_opt, D_opt and
tokens per parameter (D_opt / N_opt) at the caller's compute budgets `at_flops`.

- Approach 1 resamples whole training runs and refits on the full fit's FLOP grid.
- Approach 2 resamples at two levels: whole IsoFLOP budgets, then the points within each
  drawn budget, and refits each drawn budget's parabola (by the fit's own rules: a budget
  without a minimum, or unbracketed unless kept, drops out of that draw). Resampling budgets
  alone treats each budget's minimum as exact and under-covers with few budgets. A draw with
  fewer than 2 distinct usable budgets is redrawn.
- Approach 3 resamples points. Each refit starts from the full-data optimum plus
  `REFIT_STARTS`, a coarse 32-point subset of the default grid, instead of all 4,500 starts,
  in the full data's normalised units: resamples stay near the full-data optimum, and this
  keeps a refit to a fraction of a second.

Every bootstrap also gives "loss_opt", the loss of the compute-optimal model at each entry of
`at_flops` (`lm.scaling.prediction`): approach 3's minimum along the IsoFLOP line, and for
approaches 1 and 2 the compute frontier refitted to each draw.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from lm.scaling.chinchilla import (Approach1Fit, Approach2Fit, Approach3Fit,
                                   IdentifiabilityWarning, Scales, TrainingRun, allocate,
                                   budget_minimum, fit_approach1, fit_approach2, fit_approach3,
                                   fit_power_law, isoflop_profiles, start_grid)
from lm.scaling.design import DEFAULT_RTOL
from lm.scaling.laws import chinchilla_loss, positive_array
from lm.scaling.prediction import (SIX_ND, FlopsRatio, approach3_loss_opt, fit_frontier,
                                   frontier_of, predict_loss_opt)

REFIT_STARTS = start_grid(a=(-4, -1), b=(-4, -1), e=(-1.5, -0.5), alpha=(0.5, 1.5),
                          beta=(0.5, 1.5))


@dataclass(frozen=True)
class Interval:
    """A full-data estimate and its bootstrap percentile interval (arrays for per-budget values)."""

    estimate: float | np.ndarray
    lower: float | np.ndarray
    upper: float | np.ndarray


@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap of one fit: `samples[name]` has a row per resample, `intervals[name]` its interval.

    Names: the fit's parameters ("a", "b", "n_coef", "d_coef" for approaches 1 and 2; "E",
    "A", "B", "alpha", "beta", "a", "b", "G" for approach 3) and, per entry of `at_flops`,
    "N_opt", "D_opt", "tokens_per_parameter" and "loss_opt".
    """

    fit: Approach1Fit | Approach2Fit | Approach3Fit  # the full-data fit
    unit: str  # what was resampled: "run", "budget+point" or "point"
    n_resamples: int
    seed: int
    level: float
    at_flops: np.ndarray
    samples: dict[str, np.ndarray]
    intervals: dict[str, Interval]


def percentile_interval(estimate: float | np.ndarray, samples: np.ndarray,
                        level: float) -> Interval:
    """Interval between the (1 - level)/2 and (1 + level)/2 quantiles of `samples` along axis 0."""
    lower, upper = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)], axis=0)
    if np.ndim(estimate) == 0:
        return Interval(float(estimate), float(lower), float(upper))
    return Interval(np.asarray(estimate), lower, upper)


def _check(n_resamples: int, level: float, at_flops: ArrayLike) -> np.ndarray:
    if not (isinstance(n_resamples, (int, np.integer)) and n_resamples >= 2):
        raise ValueError(f"n_resamples must be an integer >= 2; got {n_resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), e.g. 0.95; got {level!r}")
    return np.atleast_1d(positive_array("at_flops", at_flops))


def _summarise(fit, unit: str, n_resamples: int, seed: int, level: float, at_flops: np.ndarray,
               samples: dict[str, np.ndarray], n_opt: np.ndarray, d_opt: np.ndarray,
               loss_opt: np.ndarray, loss_full: np.ndarray) -> BootstrapResult:
    """Add the per-budget samples and build every interval around the full-data estimates."""
    samples = {**samples, "N_opt": n_opt, "D_opt": d_opt, "tokens_per_parameter": d_opt / n_opt,
               "loss_opt": loss_opt}
    n_full, d_full = allocate(fit, at_flops)
    estimates = {name: getattr(fit, name) for name in samples if hasattr(fit, name)}
    estimates.update(N_opt=n_full, D_opt=d_full, tokens_per_parameter=d_full / n_full,
                     loss_opt=loss_full)
    intervals = {name: percentile_interval(estimates[name], values, level)
                 for name, values in samples.items()}
    return BootstrapResult(fit, unit, n_resamples, seed, level, at_flops, samples, intervals)


def _power_law_samples(fits: list[tuple[float, ...]], at_flops: np.ndarray
                       ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Samples of (n_coef, a, d_coef, b) and the N_opt, D_opt and frontier loss they give at
    `at_flops` from rows (n_coef, a, d_coef, b, frontier)."""
    n_coef, a, d_coef, b, frontiers = (list(column) for column in zip(*fits))
    n_coef, a, d_coef, b = (np.array(v) for v in (n_coef, a, d_coef, b))
    samples = {"a": a, "n_coef": n_coef, "b": b, "d_coef": d_coef}
    loss = np.array([f.loss(at_flops) for f in frontiers])
    return (samples, n_coef[:, None] * at_flops ** a[:, None],
            d_coef[:, None] * at_flops ** b[:, None], loss)


def bootstrap_approach1(runs: Sequence[TrainingRun], *, at_flops: ArrayLike, n_convention: str,
                        c_convention: str, n_resamples: int = 200, seed: int = 0,
                        level: float = 0.95,
                        flops_grid: ArrayLike | None = None) -> BootstrapResult:
    """Approach 1 with whole runs resampled; every refit uses the full fit's FLOP grid."""
    at_flops = _check(n_resamples, level, at_flops)
    fit = fit_approach1(runs, n_convention=n_convention, c_convention=c_convention,
                        flops_grid=flops_grid)
    rng = np.random.default_rng(seed)
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifiabilityWarning)
        for _ in range(n_resamples):
            draw = [runs[i] for i in rng.integers(0, len(runs), len(runs))]
            refit = fit_approach1(draw, n_convention=n_convention, c_convention=c_convention,
                                  flops_grid=fit.flops)
            fits.append((refit.n_coef, refit.a, refit.d_coef, refit.b,
                         frontier_of(refit, warn=False)))
    samples, n_opt, d_opt, loss_opt = _power_law_samples(fits, at_flops)
    loss_full = predict_loss_opt(fit, at_flops, frontier=frontier_of(fit, warn=False))
    return _summarise(fit, "run", n_resamples, seed, level, at_flops, samples, n_opt, d_opt,
                      loss_opt, loss_full)


def _redraw_budget(N: np.ndarray, loss: np.ndarray, log_d: np.ndarray | None, budget: float,
                   keep_unbracketed: bool, rng: np.random.Generator
                   ) -> tuple[float, float, float, float] | None:
    """One budget's points resampled: (budget, N_opt, D_opt, loss_opt), or None when the
    fit's rules would leave the resampled budget out."""
    draw = rng.integers(0, N.size, N.size)
    if np.unique(N[draw]).size < 3:
        return None
    minimum = budget_minimum(N[draw], loss[draw])
    if not minimum.curvature > 0 or not (minimum.bracketed or keep_unbracketed):
        return None
    if log_d is None:
        return budget, minimum.n_opt, budget / (6.0 * minimum.n_opt), minimum.loss_opt
    log_n = np.log(N[draw])
    slope, intercept = np.polyfit(log_n, log_d[draw], 1)
    return (budget, minimum.n_opt, float(np.exp(intercept + slope * np.log(minimum.n_opt))),
            minimum.loss_opt)


def bootstrap_approach2(N: ArrayLike, loss: ArrayLike, budget: ArrayLike, *, at_flops: ArrayLike,
                        n_convention: str, c_convention: str, tokens: ArrayLike | None = None,
                        n_resamples: int = 200, seed: int = 0, level: float = 0.95,
                        keep_unbracketed: bool = False,
                        rtol: float = DEFAULT_RTOL) -> BootstrapResult:
    """Approach 2 with budgets, then points within budgets, resampled (see the module doc)."""
    at_flops = _check(n_resamples, level, at_flops)
    fit = fit_approach2(N, loss, budget, n_convention=n_convention, c_convention=c_convention,
                        tokens=tokens, keep_unbracketed=keep_unbracketed, rtol=rtol)
    N, loss, budget = (np.asarray(v, dtype=float) for v in (N, loss, budget))
    log_d = None if tokens is None else np.log(np.asarray(tokens, dtype=float))
    used = [at for c, at in isoflop_profiles(budget, rtol) if c in set(fit.budgets)]
    rng = np.random.default_rng(seed)
    fits, attempts = [], 0
    while len(fits) < n_resamples:
        attempts += 1
        if attempts > 20 * n_resamples:
            raise ValueError(f"approach 2 bootstrap: only {len(fits)} of {attempts} draws kept "
                             "2 usable budgets; the design is too thin for intervals")
        rows = []
        for i in rng.integers(0, len(used), len(used)):
            at = used[i]
            row = _redraw_budget(N[at], loss[at], None if log_d is None else log_d[at],
                                 float(fit.budgets[i]), keep_unbracketed, rng)
            if row is not None:
                rows.append(row)
        if len({row[0] for row in rows}) < 2:
            continue
        budgets, n_opt, d_opt, loss_opt = (np.array(column) for column in zip(*rows))
        n_coef, a = fit_power_law(budgets, n_opt)
        d_coef, b = fit_power_law(budgets, d_opt)
        fits.append((n_coef, a, d_coef, b, fit_frontier(budgets, loss_opt, warn=False)))
    samples, n_opt, d_opt, loss_opt = _power_law_samples(fits, at_flops)
    loss_full = predict_loss_opt(fit, at_flops, frontier=frontier_of(fit, warn=False))
    return _summarise(fit, "budget+point", n_resamples, seed, level, at_flops, samples, n_opt,
                      d_opt, loss_opt, loss_full)


def bootstrap_approach3(N: ArrayLike, D: ArrayLike, loss: ArrayLike, *, at_flops: ArrayLike,
                        n_convention: str, c_convention: str, n_resamples: int = 200,
                        seed: int = 0, level: float = 0.95, delta: float = 1e-3,
                        starts: ArrayLike | None = None, C: ArrayLike | None = None,
                        ratio: FlopsRatio = SIX_ND) -> BootstrapResult:
    """Approach 3 with points resampled; `starts` serves only the full-data fit (see module doc).
    `C` (default 6ND) feeds the design checks, `ratio` the loss at the compute optimum."""
    at_flops = _check(n_resamples, level, at_flops)
    fit = fit_approach3(N, D, loss, n_convention=n_convention, c_convention=c_convention,
                        delta=delta, starts=starts, C=C)
    N, D, loss = (np.asarray(v, dtype=float) for v in (N, D, loss))
    scales = Scales.of(N, D, loss)
    full = [np.log(fit.A), np.log(fit.B), np.log(fit.E), fit.alpha, fit.beta]
    refit_starts = np.vstack([scales.to_normalised([full]), REFIT_STARTS])
    rng = np.random.default_rng(seed)
    names = ("E", "A", "B", "alpha", "beta", "a", "b", "G")
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifiabilityWarning)
        for _ in range(n_resamples):
            draw = rng.integers(0, N.size, N.size)
            try:
                refit = fit_approach3(N[draw], D[draw], loss[draw], n_convention=n_convention,
                                      c_convention=c_convention, delta=delta,
                                      starts=refit_starts, scales=scales)
            except ValueError:  # a draw of equal losses
                continue
            rows.append([getattr(refit, name) for name in names])
    samples = dict(zip(names, np.array(rows).T))
    scale = at_flops / 6.0  # N_opt = G (C/6)^a, D_opt = (C/6)^b / G; nan where G is nan
    n_opt = samples["G"][:, None] * scale ** samples["a"][:, None]
    d_opt = scale ** samples["b"][:, None] / samples["G"][:, None]
    loss_opt = np.array([[approach3_loss_opt(*(row[:5]), c, ratio) for c in at_flops]
                         for row in rows])
    loss_full = predict_loss_opt(fit, at_flops, ratio=ratio)
    return _summarise(fit, "point", n_resamples, seed, level, at_flops, samples, n_opt, d_opt,
                      loss_opt, loss_full)


def prediction_interval(result: BootstrapResult, N: ArrayLike, D: ArrayLike) -> Interval:
    """Loss at (N, D) from an approach-3 bootstrap: the full fit's value and a percentile interval.

    The interval covers parameter uncertainty (the expected loss), not one run's noise.
    """
    if not isinstance(result.fit, Approach3Fit):
        raise TypeError(f"prediction needs an approach-3 bootstrap; got one of {result.fit.method} "
                        "(approaches 1 and 2 estimate allocations, not losses)")
    fit = result.fit
    estimate = chinchilla_loss(N, D, E=fit.E, A=fit.A, B=fit.B, alpha=fit.alpha, beta=fit.beta)
    shape = (-1,) + (1,) * np.ndim(estimate)
    params = {name: result.samples[name].reshape(shape)
              for name in ("E", "A", "B", "alpha", "beta")}
    return percentile_interval(estimate, chinchilla_loss(N, D, **params), result.level)
