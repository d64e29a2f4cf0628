"""Nonparametric bootstrap intervals for the Chinchilla fits.

Each bootstrap draws `n_resamples` resamples with replacement from a seeded generator, refits,
and reports percentile intervals at `level` for every parameter and for N_opt, D_opt and
tokens per parameter (D_opt / N_opt) at the caller's compute budgets `at_flops`.

- Approach 1 resamples whole training runs and refits on the full fit's FLOP grid.
- Approach 2 resamples at two levels: whole IsoFLOP budgets, then the points within each
  drawn budget, and refits each drawn budget's parabola (by the fit's own rules: a budget
  without a minimum, or unbracketed unless kept, drops out of that draw). Resampling budgets
  alone treats each budget's minimum as exact and under-covers with few budgets. Points are
  resampled through their residuals: each drawn budget keeps its sizes, and its losses are
  its parabola's values plus residuals drawn from all budgets' (scaled by sqrt(n / (n - 3k))
  for the k parabolas' fitted parameters). Drawing (N, loss) pairs instead fails with the
  usual four or five sizes per budget: most draws then hold three distinct sizes, whose
  parabola interpolates them exactly and whose minimum flies far outside the data. A draw with
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
from lm.scaling.chinchilla import predict as predict_fit
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
    unit: str  # what was resampled: "run", "budget+residual" or "point"
    n_resamples: int
    seed: int
    level: float
    at_flops: np.ndarray
    samples: dict[str, np.ndarray]
    intervals: dict[str, Interval]


def percentile_interval(estimate: float | np.ndarray, samples: np.ndarray,
                        level: float) -> Interval:
    """Interval between the (1 - level)/2 and (1 + level)/2 quantiles of `samples` along axis 0,
    over the resamples that give a number (a draw whose law has no compute-optimal allocation
    gives nan there); nan where none does."""
    samples = np.asarray(samples, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-nan column: a nan interval
        lower, upper = np.nanpercentile(samples, [50 * (1 - level), 50 * (1 + level)], axis=0)
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


@dataclass(frozen=True)
class _Profile:
    """One used IsoFLOP budget: its sizes, its parabola's values there, and (exact C) the
    line of log D on log N that gives D_opt."""

    budget: float
    N: np.ndarray
    fitted: np.ndarray
    d_line: tuple[float, float] | None


def _profiles(fit: Approach2Fit, N: np.ndarray, loss: np.ndarray, budget: np.ndarray,
              log_d: np.ndarray | None, rtol: float) -> tuple[list[_Profile], np.ndarray]:
    """The fit's used budgets and their pooled, df-scaled residuals."""
    profiles, residuals = [], []
    for c, at in isoflop_profiles(budget, rtol):
        if c not in set(fit.budgets):
            continue
        x = np.log(N[at]) - np.log(N[at]).mean()
        fitted = np.polyval(np.polyfit(x, loss[at], 2), x)
        line = None if log_d is None else tuple(np.polyfit(np.log(N[at]), log_d[at], 1))
        profiles.append(_Profile(c, N[at], fitted, line))
        residuals.append(loss[at] - fitted)
    residuals = np.concatenate(residuals)
    dof = residuals.size - 3 * len(profiles)
    return profiles, residuals * (np.sqrt(residuals.size / dof) if dof > 0 else 0.0)


def _redraw_budget(profile: _Profile, residuals: np.ndarray, keep_unbracketed: bool,
                   rng: np.random.Generator) -> tuple[float, float, float, float] | None:
    """One budget with resampled residuals: (budget, N_opt, D_opt, loss_opt), or None when
    the fit's rules would leave the redrawn budget out."""
    loss = profile.fitted + rng.choice(residuals, profile.N.size)
    minimum = budget_minimum(profile.N, loss)
    if not minimum.curvature > 0 or not (minimum.bracketed or keep_unbracketed):
        return None
    if profile.d_line is None:
        d_opt = profile.budget / (6.0 * minimum.n_opt)
    else:
        slope, intercept = profile.d_line
        d_opt = float(np.exp(intercept + slope * np.log(minimum.n_opt)))
    return profile.budget, minimum.n_opt, d_opt, minimum.loss_opt


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
    profiles, residuals = _profiles(fit, N, loss, budget, log_d, rtol)
    rng = np.random.default_rng(seed)
    fits, attempts = [], 0
    while len(fits) < n_resamples:
        attempts += 1
        if attempts > 20 * n_resamples:
            raise ValueError(f"approach 2 bootstrap: only {len(fits)} of {attempts} draws kept "
                             "2 usable budgets; the design is too thin for intervals")
        rows = [row for i in rng.integers(0, len(profiles), len(profiles))
                if (row := _redraw_budget(profiles[i], residuals, keep_unbracketed, rng))]
        if len({row[0] for row in rows}) < 2:
            continue
        budgets, n_opt, d_opt, loss_opt = (np.array(column) for column in zip(*rows))
        n_coef, a = fit_power_law(budgets, n_opt)
        d_coef, b = fit_power_law(budgets, d_opt)
        fits.append((n_coef, a, d_coef, b, fit_frontier(budgets, loss_opt, warn=False)))
    samples, n_opt, d_opt, loss_opt = _power_law_samples(fits, at_flops)
    loss_full = predict_loss_opt(fit, at_flops, frontier=frontier_of(fit, warn=False))
    return _summarise(fit, "budget+residual", n_resamples, seed, level, at_flops, samples,
                      n_opt, d_opt, loss_opt, loss_full)


def bootstrap_approach3(N: ArrayLike, D: ArrayLike, loss: ArrayLike, *, at_flops: ArrayLike,
                        n_convention: str, c_convention: str, n_resamples: int = 200,
                        seed: int = 0, level: float = 0.95, delta: float = 1e-3,
                        starts: ArrayLike | None = None, C: ArrayLike | None = None,
                        rtol: float = DEFAULT_RTOL,
                        ratio: FlopsRatio = SIX_ND) -> BootstrapResult:
    """Approach 3 with points resampled; `starts` serves only the full-data fit (see module doc).
    `C` (default 6ND) and `rtol` feed the design checks, `ratio` the loss at the optimum."""
    at_flops = _check(n_resamples, level, at_flops)
    fit = fit_approach3(N, D, loss, n_convention=n_convention, c_convention=c_convention,
                        delta=delta, starts=starts, C=C, rtol=rtol)
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


def predict(result: Approach3Fit | BootstrapResult, N: ArrayLike, D: ArrayLike) -> np.ndarray | Interval:
    """Loss at (N, D): from an approach-3 fit, its value; from a bootstrap of one, an Interval."""
    if isinstance(result, BootstrapResult):
        return prediction_interval(result, N, D)
    return predict_fit(result, N, D)
