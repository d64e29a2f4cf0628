"""Chinchilla scaling-law fits: Hoffmann et al. (2022), "Training Compute-Optimal Large Language
Models".

- Approach 1: lower envelope of training curves over FLOPs -> N_opt = k C^a, D_opt = k' C^b.
- Approach 2: a parabola in log N per IsoFLOP budget -> its minimum -> the same power laws.
- Approach 3: L(N, D) = E + A/N^alpha + B/D^beta fitted with a Huber loss on log L from the
  paper's grid of starts, as replicated by Besiroglu et al. (2024), "Chinchilla Scaling: A
  replication attempt" (Epoch AI).

Loss is in nats per token. Every result records the caller's `n_convention` and `c_convention`.
"""

from __future__ import annotations

import csv
import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

from lm.scaling.laws import (allocation_coefficient, allocation_exponents, check_conventions,
                             chinchilla_loss, compute_optimal, positive_array, same_length)

if TYPE_CHECKING:
    from lm.scaling.bootstrap import BootstrapResult, Interval


class IdentifiabilityWarning(UserWarning):
    """The data cannot pin down (part of) the fitted law; the message names the problem."""


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
    excluded_budgets: tuple[float, ...]  # budgets whose parabola opens downward


@dataclass(frozen=True)
class Approach3Fit:
    """Approach 3: L(N, D) = E + A/N^alpha + B/D^beta; a, b, G give the C = 6ND allocation."""

    method: str  # "approach3"
    n_convention: str
    c_convention: str
    n_points: int
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    a: float  # N_opt ~ C^a; nan when alpha + beta <= 0
    b: float  # D_opt ~ C^b
    G: float  # N_opt = G (C/6)^a; nan when alpha*A or beta*B <= 0
    objective: float  # sum of Huber losses at the optimum
    delta: float
    n_starts: int


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

def fit_approach2(N: ArrayLike, loss: ArrayLike, budget: ArrayLike, *, n_convention: str,
                  c_convention: str, tokens: ArrayLike | None = None) -> Approach2Fit:
    """Approach 2: per IsoFLOP budget a parabola of loss in log N; its minimum is N_opt(C).

    `budget[i]` is the FLOP budget of point i (points sharing a value form one IsoFLOP
    profile). Under c_convention="6ND", D_opt = C / (6 N_opt); under "exact", `tokens` is
    required and D_opt comes from a linear fit of log D on log N within the budget. A parabola
    that opens downward is left out of the power laws (IdentifiabilityWarning); one whose
    minimum lies outside the sampled N also warns but is kept.
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
    rows, excluded = [], []
    for c in np.unique(budget):
        at = budget == c
        log_n = np.log(N[at])
        if np.unique(log_n).size < 3:
            raise ValueError(f"budget {c:.4g} has {np.unique(log_n).size} distinct N values; a "
                             "parabola in log N needs at least 3")
        center = log_n.mean()
        p2, p1, p0 = np.polyfit(log_n - center, loss[at], 2)
        if p2 <= 0:
            warnings.warn(f"budget {c:.4g}: the parabola in log N opens downward (curvature "
                          f"{p2:.3g}); it has no minimum and is left out", IdentifiabilityWarning,
                          stacklevel=2)
            excluded.append(float(c))
            continue
        x = -p1 / (2 * p2)
        if not log_n.min() <= x + center <= log_n.max():
            warnings.warn(f"budget {c:.4g}: the parabola's minimum N={np.exp(x + center):.3g} "
                          f"lies outside the sampled N in [{N[at].min():.3g}, {N[at].max():.3g}]",
                          IdentifiabilityWarning, stacklevel=2)
        if c_convention == "6ND":
            log_d = np.log(c / 6.0) - (x + center)
        else:
            slope, intercept = np.polyfit(log_n - center, np.log(tokens[at]), 1)
            log_d = intercept + slope * x
        rows.append((c, np.exp(x + center), np.exp(log_d), p0 - p1 ** 2 / (4 * p2)))
    if len(rows) < 2:
        raise ValueError(f"budget: {len(rows)} usable IsoFLOP budget(s); the power laws need at "
                         "least 2")
    budgets, n_opt, d_opt, loss_opt = (np.array(column) for column in zip(*rows))
    n_coef, a = fit_power_law(budgets, n_opt)
    d_coef, b = fit_power_law(budgets, d_opt)
    return Approach2Fit("approach2", n_convention, c_convention,
                        int(np.isin(budget, budgets).sum()), a, n_coef, b, d_coef, budgets,
                        n_opt, d_opt, loss_opt, tuple(excluded))


# ---------------------------------------------------------------- approach 3

def start_grid(*, a: Sequence[float] = (0, 5, 10, 15, 20, 25),
               b: Sequence[float] = (0, 5, 10, 15, 20, 25),
               e: Sequence[float] = (-1, -0.5, 0, 0.5, 1),
               alpha: Sequence[float] = (0, 0.5, 1, 1.5, 2),
               beta: Sequence[float] = (0, 0.5, 1, 1.5, 2)) -> np.ndarray:
    """Starting points for approach 3, rows (a, b, e, alpha, beta) with A = e^a, B = e^b, E = e^e.

    The defaults are Hoffmann et al. (2022, appendix D.2): 6 * 6 * 5 * 5 * 5 = 4,500 starts.
    """
    return np.array(list(itertools.product(a, b, e, alpha, beta)), dtype=float)


_CHUNK = 256  # rows per block, keeping the (starts x points) temporaries in cache


def _lse_huber(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray,
               delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Objective and gradient for each row of theta = (a, b, e, alpha, beta).

    log L_hat = LSE(a - alpha log N, b - beta log D, e);
    objective = sum over points of Huber_delta(log L - log L_hat).
    """
    f = np.empty(theta.shape[0])
    grad = np.empty_like(theta)
    for lo in range(0, theta.shape[0], _CHUNK):
        a, b, e, alpha, beta = theta[lo:lo + _CHUNK, :, None].transpose(1, 0, 2)
        t1, t2 = a - alpha * log_n, b - beta * log_d
        m = np.maximum(np.maximum(t1, t2), e)
        w1, w2, w3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
        total = w1 + w2 + w3
        r = log_loss - m - np.log(total)
        clipped = np.clip(r, -delta, delta)  # Huber'(r)
        f[lo:lo + _CHUNK] = np.sum(clipped * (r - 0.5 * clipped), axis=1)
        g = -clipped / total  # d objective / d log L_hat, times 1/total for the softmax weights
        g1, g2 = g * w1, g * w2
        grad[lo:lo + _CHUNK] = np.stack([g1.sum(1), g2.sum(1), (g * w3).sum(1),
                                         -np.einsum("kn,n->k", g1, log_n),  # no BLAS threads
                                         -np.einsum("kn,n->k", g2, log_d)], axis=1)
    return f, grad


def _batched_bfgs(fun: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], x0: np.ndarray, *,
                  max_iter: int = 200, gtol: float = 1e-10, ftol: float = 1e-8,
                  max_step: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Minimise `fun` from every row of x0 at once: BFGS with Armijo backtracking per row.

    `fun` maps (k, p) points to (k,) values and (k, p) gradients. A row stops when its
    gradient is below gtol, its decrease below ftol * |f|, or its line search fails.
    Returns the final points and values.
    """
    x = np.array(x0, dtype=float)
    k, p = x.shape
    eye = np.eye(p)
    f, g = fun(x)
    h = np.tile(eye, (k, 1, 1))
    scaled = np.zeros(k, dtype=bool)  # initial inverse Hessian rescaled after the first step
    active = np.flatnonzero(np.isfinite(f) & np.all(np.isfinite(g), axis=1))
    for _ in range(max_iter):
        if active.size == 0:
            break
        xa, fa, ga, ha = x[active], f[active], g[active], h[active]
        d = -np.einsum("kij,kj->ki", ha, ga)
        slope = np.einsum("ki,ki->k", ga, d)
        uphill = ~(slope < 0)
        if uphill.any():  # the inverse Hessian lost positive definiteness: steepest descent
            ha[uphill], d[uphill] = eye, -ga[uphill]
            slope[uphill] = -np.einsum("ki,ki->k", ga[uphill], ga[uphill])
        trial = np.minimum(1.0, max_step / np.abs(d).max(axis=1))[:, None]  # steps of `todo` rows
        accepted = np.zeros(active.size)
        f_new, g_new = fa.copy(), ga.copy()
        todo = np.arange(active.size)
        for _ in range(9):  # Armijo backtracking: the full step, then 4 halvings per call
            ft, gt = fun((xa[todo, None] + trial[..., None] * d[todo, None]).reshape(-1, p))
            ft, gt = ft.reshape(trial.shape), gt.reshape(trial.shape + (p,))
            ok = ft <= fa[todo, None] + 1e-4 * trial * slope[todo, None]
            hit = ok.any(axis=1)
            pick = ok.argmax(axis=1)[hit]  # the largest acceptable step
            rows = todo[hit]
            f_new[rows], g_new[rows] = ft[hit, pick], gt[hit, pick]
            accepted[rows] = trial[hit, pick]
            todo, trial = todo[~hit], trial[~hit, -1:] * 0.5 ** np.arange(1, 5)
            if todo.size == 0:
                break
        moved = accepted > 0
        s = accepted[:, None] * d
        y = g_new - ga
        sy, yy = np.einsum("ki,ki->k", s, y), np.einsum("ki,ki->k", y, y)
        update = moved & (sy > 1e-10 * np.sqrt(np.einsum("ki,ki->k", s, s) * yy))
        first = update & ~scaled[active]
        ha[first] = (sy[first] / yy[first])[:, None, None] * eye
        rho = np.where(update, 1.0 / np.where(update, sy, 1.0), 0.0)[:, None, None]
        v = eye - rho * np.einsum("ki,kj->kij", s, y)
        ha = np.where(update[:, None, None],
                      np.einsum("kij,kjl,kml->kim", v, ha, v) + rho * np.einsum("ki,kj->kij", s, s),
                      ha)
        scaled[active[update]] = True
        x[active], f[active], g[active], h[active] = xa + s, f_new, g_new, ha
        done = (~moved | (np.abs(g_new).max(axis=1) <= gtol)
                | (fa - f_new <= ftol * np.abs(f_new)))
        active = active[~done]
    return x, f


def _minimise_lse(log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray, delta: float,
                  starts: np.ndarray) -> tuple[np.ndarray, float]:
    """Best (theta, objective): batched BFGS from every start, then scipy L-BFGS-B from the best."""
    def fun(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _lse_huber(theta, log_n, log_d, log_loss, delta)

    x, f = _batched_bfgs(fun, starts)
    result = minimize(lambda t: tuple(v[0] for v in fun(t[None])), x[np.nanargmin(f)], jac=True,
                      method="L-BFGS-B", options={"maxiter": 10_000, "ftol": 1e-12, "gtol": 1e-10})
    return result.x, float(result.fun)


def _warn_design(N: np.ndarray, D: np.ndarray) -> None:
    """IdentifiabilityWarning when the (N, D) design cannot identify E + A/N^alpha + B/D^beta."""
    problems = []
    if N.size < 5:
        problems.append(f"{N.size} points for 5 parameters")
    for name, values, term in (("N", N, "A/N^alpha"), ("D", D, "B/D^beta")):
        distinct = np.unique(values).size
        if distinct < 3:
            problems.append(f"{distinct} distinct {name} value(s); separating {term} from E "
                            "needs at least 3")
    log_n, log_d = np.log(N), np.log(D)
    if np.ptp(log_n) > 0 and np.ptp(log_d) > 0:
        ratio = log_d - log_n
        if np.ptp(ratio) <= 1e-3:
            problems.append(f"every point has the same D/N ratio ({np.exp(ratio.mean()):.4g}), "
                            "so the N and D terms can trade places and alpha, beta, a, b are not "
                            "identified")
        else:
            corr = np.corrcoef(log_n, log_d)[0, 1]
            if corr > 1 - 1e-9:
                slope = np.polyfit(log_n, log_d, 1)[0]
                problems.append(f"log D is an increasing linear function of log N (slope "
                                f"{slope:.3g}), so the N and D terms can trade places")
    if problems:
        warnings.warn("approach 3 design: " + "; ".join(problems), IdentifiabilityWarning,
                      stacklevel=3)


def fit_approach3(N: ArrayLike, D: ArrayLike, loss: ArrayLike, *, n_convention: str,
                  c_convention: str, delta: float = 1e-3,
                  starts: ArrayLike | None = None) -> Approach3Fit:
    """Approach 3: fit L = E + A/N^alpha + B/D^beta by minimising the SUM of Huber losses.

    Works in the log-sum-exp form log L_hat = LSE(a - alpha log N, b - beta log D, e) with
    A = e^a, B = e^b, E = e^e, residuals log L - log L_hat, Huber threshold `delta`. From every
    row of `starts` (columns a, b, e, alpha, beta; default `start_grid()`, the paper's 4,500)
    a vectorised BFGS runs all starts together, and scipy's L-BFGS-B polishes the best end
    point (the same optimum as L-BFGS-B from every start, in seconds rather than minutes).
    a, b and G describe the allocation under C = 6ND (`laws.compute_optimal`), whatever
    c_convention the data used. Warns with IdentifiabilityWarning when the design cannot
    identify the law: fewer than 5 points, fewer than 3 distinct N or D, or log N and log D
    moving together (every point at one D/N ratio).
    """
    check_conventions(n_convention, c_convention)
    N, D, loss = positive_array("N", N), positive_array("D", D), positive_array("loss", loss)
    n = same_length(N=N, D=D, loss=loss)
    if not delta > 0:
        raise ValueError(f"delta must be > 0; got {delta}")
    starts = start_grid() if starts is None else np.asarray(starts, dtype=float)
    if starts.ndim != 2 or starts.shape[1] != 5 or starts.shape[0] == 0 \
            or not np.all(np.isfinite(starts)):
        raise ValueError("starts must be a finite (k, 5) array of (a, b, e, alpha, beta) rows "
                         f"with k >= 1; got shape {starts.shape}")
    _warn_design(N, D)
    theta, objective = _minimise_lse(np.log(N), np.log(D), np.log(loss), delta, starts)
    a_log, b_log, e_log, alpha, beta = (float(v) for v in theta)
    A, B, E = np.exp(a_log), np.exp(b_log), np.exp(e_log)
    try:
        a, b = allocation_exponents(alpha, beta)
        G = allocation_coefficient(A=A, B=B, alpha=alpha, beta=beta)
    except ValueError as error:
        warnings.warn(f"approach 3: no compute-optimal allocation ({error})",
                      IdentifiabilityWarning, stacklevel=2)
        a = b = G = float("nan")
    return Approach3Fit("approach3", n_convention, c_convention, n, float(E), float(A),
                        float(B), alpha, beta, a, b, G, objective, float(delta), starts.shape[0])


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


def predict(result: Approach3Fit | BootstrapResult, N: ArrayLike,
            D: ArrayLike) -> np.ndarray | Interval:
    """Loss at (N, D) from an approach-3 fit; from an approach-3 bootstrap, an Interval."""
    if isinstance(result, Approach3Fit):
        return chinchilla_loss(N, D, E=result.E, A=result.A, B=result.B, alpha=result.alpha,
                               beta=result.beta)
    from lm.scaling.bootstrap import BootstrapResult, prediction_interval  # imports this module
    if isinstance(result, BootstrapResult):
        return prediction_interval(result, N, D)
    raise TypeError("result must be an Approach3Fit or a bootstrap of one (approaches 1 and 2 "
                    f"estimate allocations, not losses); got {type(result).__name__}")
