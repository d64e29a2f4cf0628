"""The loss a fitted law predicts for the compute-optimal model at a budget C.

- Approach 3: L(N_opt, D_opt), the minimum of E + A/N^alpha + B/D^beta along the budget's
  IsoFLOP line. Under C = 6ND that line is D = C / (6N); when the data count exact FLOPs,
  the FLOPs per parameter-token of the data, C / (N D), are fitted as a power law in N
  (`FlopsRatio`: embeddings, the head and attention make it fall with N at small scale) and
  the line is D = C / (ratio(N) N).
- Approaches 1 and 2 estimate allocations, not a loss surface: their loss at C comes from a
  fit of the compute frontier L*(C) = E + k C^-gamma to the per-budget parabola minima
  (approach 2) or the loss envelope (approach 1). Under C = 6ND the Chinchilla law's frontier
  has exactly this form (gamma = alpha beta / (alpha + beta)). Three points determine it
  exactly, with nothing left to check the fit (an IdentifiabilityWarning says so); with two,
  E is fixed at 0 (a pure power law), which under-predicts the loss of larger budgets.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize_scalar

from lm.scaling.approach3 import Approach3Fit
from lm.scaling.design import IdentifiabilityWarning
from lm.scaling.laws import positive_array

MIN_FREE_E = 3  # frontier points needed to fit E as well as k and gamma


@dataclass(frozen=True)
class Frontier:
    """L*(C) = E + k C^-gamma, fitted by least squares on log L*."""

    E: float
    k: float
    gamma: float
    n_points: int
    rms_log_residual: float
    free_E: bool  # False: E fixed at 0 (too few points)

    def loss(self, C: ArrayLike) -> np.ndarray:
        return self.E + self.k * positive_array("C", C) ** -self.gamma


def _power_fit(log_c: np.ndarray, loss: np.ndarray, E: float) -> tuple[float, float, float]:
    """(sum of squared log residuals, log k, gamma) of L - E = k C^-gamma for a fixed E."""
    slope, intercept = np.polyfit(log_c, np.log(loss - E), 1)
    fitted = E + np.exp(intercept + slope * log_c)
    return float(np.sum((np.log(loss) - np.log(fitted)) ** 2)), float(intercept), float(-slope)


def fit_frontier(C: ArrayLike, loss: ArrayLike, *, warn: bool = True) -> Frontier:
    """Fit L*(C) = E + k C^-gamma (0 <= E < min loss) to frontier points (C, loss).

    For each E the best k and gamma are a linear regression of log(L - E) on log C; E is
    chosen by a bounded scalar search over that profile. Needs >= 2 distinct C; with fewer
    than `MIN_FREE_E` points E = 0.
    """
    C, loss = positive_array("C", C), positive_array("loss", loss)
    if np.unique(C).size < 2:
        raise ValueError(f"the compute frontier needs at least 2 distinct C; got "
                         f"{np.unique(C).size}")
    log_c = np.log(C)
    free = C.size >= MIN_FREE_E
    if warn and C.size == MIN_FREE_E:
        warnings.warn(f"compute frontier: {C.size} points for the 3 parameters of "
                      "E + k C^-gamma: it passes through them exactly, and nothing checks its "
                      "extrapolation", IdentifiabilityWarning, stacklevel=2)
    elif warn and not free:
        warnings.warn(f"compute frontier: {C.size} points for E + k C^-gamma; E fixed at 0 "
                      f"(a pure power law, which under-predicts larger budgets' loss; "
                      f"{MIN_FREE_E} points free it)", IdentifiabilityWarning, stacklevel=2)
    E = 0.0
    if free:
        top = loss.min() * (1 - 1e-6)
        best = minimize_scalar(lambda e: _power_fit(log_c, loss, e)[0], bounds=(0.0, top),
                               method="bounded", options={"xatol": 1e-10 * top})
        E = min((0.0, float(best.x)), key=lambda e: _power_fit(log_c, loss, e)[0])
    sse, log_k, gamma = _power_fit(log_c, loss, E)
    return Frontier(E, float(np.exp(log_k)), gamma, int(C.size), float(np.sqrt(sse / C.size)),
                    free)


@dataclass(frozen=True)
class FlopsRatio:
    """C / (N D) = coef * N^power: training FLOPs per parameter per token (6 under 6ND)."""

    coef: float
    power: float

    def __call__(self, N: np.ndarray) -> np.ndarray:
        return self.coef * np.asarray(N, dtype=float) ** self.power


SIX_ND = FlopsRatio(6.0, 0.0)


def fit_flops_ratio(N: ArrayLike, D: ArrayLike, C: ArrayLike) -> FlopsRatio:
    """C / (N D) of the data as a power law in N (a constant when N takes one value)."""
    N, D, C = (positive_array(name, v) for name, v in (("N", N), ("D", D), ("C", C)))
    ratio = C / (N * D)
    if np.unique(N).size < 2:
        return FlopsRatio(float(np.exp(np.log(ratio).mean())), 0.0)
    power, log_coef = np.polyfit(np.log(N), np.log(ratio), 1)
    return FlopsRatio(float(np.exp(log_coef)), float(power))


def approach3_loss_opt(E: float, A: float, B: float, alpha: float, beta: float, C: float,
                       ratio: FlopsRatio = SIX_ND) -> float:
    """min over N of E + A/N^alpha + B/D^beta with D = C / (ratio(N) N)."""
    def loss_at(log_n: np.ndarray) -> np.ndarray:
        n = np.exp(log_n)
        with np.errstate(over="ignore"):
            return E + A / n ** alpha + B / (C / (ratio(n) * n)) ** beta

    # N from 1 parameter to C / 6, which leaves about one token
    grid = np.linspace(0.0, np.log(C / 6.0), 401)
    with np.errstate(invalid="ignore"):
        values = loss_at(grid)
    if not np.isfinite(values).any():  # a bootstrap draw's law with no finite loss here
        return float("nan")
    i = int(np.nanargmin(np.where(np.isfinite(values), values, np.nan)))
    best = minimize_scalar(lambda x: float(loss_at(x)), method="bounded",
                           bounds=(grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]),
                           options={"xatol": 1e-9})
    return float(min(best.fun, values[i]))


def predict_loss_opt(fit, C: ArrayLike, *, ratio: FlopsRatio = SIX_ND,
                     frontier: Frontier | None = None) -> np.ndarray:
    """The loss of the compute-optimal model at each C: approach 3's minimum along the
    IsoFLOP line, else `frontier`'s value (approaches 1 and 2: fit it with
    `frontier_of(fit)`)."""
    C = np.atleast_1d(positive_array("C", C))
    if isinstance(fit, Approach3Fit):
        return np.array([approach3_loss_opt(fit.E, fit.A, fit.B, fit.alpha, fit.beta, c, ratio)
                         for c in C])
    if frontier is None:
        raise ValueError(f"{fit.method} predicts loss through its compute frontier; pass "
                         "frontier=frontier_of(fit)")
    return frontier.loss(C)


def frontier_of(fit, *, warn: bool = True) -> Frontier:
    """The compute frontier of an approach-1 fit (its envelope) or approach-2 fit (its minima)."""
    if fit.method == "approach2":
        return fit_frontier(fit.budgets, fit.loss_opt, warn=warn)
    if fit.method == "approach1":
        return fit_frontier(fit.flops, fit.loss_opt, warn=warn)
    raise TypeError(f"only approaches 1 and 2 have a fitted compute frontier; got {fit.method}")
