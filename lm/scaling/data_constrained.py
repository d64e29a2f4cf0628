"""Data-constrained scaling: Muennighoff et al. (2023), "Scaling Data-Constrained Language
Models", on top of the Chinchilla form. With U unique tokens and D tokens trained on,

    U_D = min(U, D),   R_D = D / U_D - 1             (repeated epochs beyond the first)
    U_N = min(N, N_opt(U_D)),   R_N = N / U_N - 1    (parameters beyond compute-optimal for U_D)
    D' = U_D + U_D R*_D (1 - exp(-R_D / R*_D))
    N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N))
    L  = E + A / N'^alpha + B / D'^beta

where N_opt(D) = G (D G)^(beta/alpha), G = (alpha A / (beta B))^(1/(alpha+beta)), is the
Chinchilla compute-optimal size for D tokens (`lm.scaling.laws`). A repeated token is worth
less each epoch: the k-th repetition adds about exp(-k / R*_D) of a fresh epoch's worth (1/e
after R*_D of them), and D' never exceeds U_D (1 + R*_D). The formula, U_N's definition and
the authors' fit (R*_D = 15.39, R*_N = 5.31 on C4) are in the authors' repository,
huggingface/datablations (README, "Parametric Fit").

Two ways to get the Chinchilla constants (E, A, B, alpha, beta):
- fixed, from a prior fit (`constants=`): only R*_D (and R*_N) are fitted;
- fitted here: approach 3 on the runs that saw each token once (R_D = 0) gives the start,
  then all seven parameters are fitted jointly (a Huber loss on log loss, L-BFGS-B, N, D, U
  and loss divided by their geometric means so units do not matter).
R*_N is fitted only where the design identifies it: at least 3 runs with R_N > 0 at two or
more distinct R_N (under the start's constants); elsewhere N' = N and `R_N_star` is None.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

from lm.scaling.approach3 import E_FLOOR, fit_approach3, start_grid
from lm.scaling.bootstrap import Interval, percentile_interval
from lm.scaling.design import DEFAULT_RTOL, IdentifiabilityWarning, check_loss_varies, group_close
from lm.scaling.laws import allocation_coefficient, positive_array, same_length

CONSTANTS = ("E", "A", "B", "alpha", "beta")
PAPER = {"R_D_star": 15.387756, "R_N_star": 5.309743}  # huggingface/datablations README (C4)
R_BOUNDS = (1e-2, 1e4)  # R* outside these is reported with a warning: the data do not bound it
DELTA = 1e-3  # Huber delta on log loss, as approach 3


def effective(N: ArrayLike, D: ArrayLike, U: ArrayLike, *, A: float, B: float, alpha: float,
              beta: float, R_D_star: float, R_N_star: float | None) -> tuple[np.ndarray, ...]:
    """(N', D', R_N, R_D) of the module doc; R_N_star None leaves N' = N."""
    N, D, U = (np.asarray(v, dtype=float) for v in (N, D, U))
    unique = np.minimum(U, D)
    r_d = D / unique - 1.0
    d_eff = unique * (1.0 + R_D_star * -np.expm1(-r_d / R_D_star))
    G = allocation_coefficient(A=A, B=B, alpha=alpha, beta=beta)
    u_n = np.minimum(N, G * (unique * G) ** (beta / alpha))
    r_n = N / u_n - 1.0
    n_eff = N if R_N_star is None else u_n * (1.0 + R_N_star * -np.expm1(-r_n / R_N_star))
    return n_eff, d_eff, r_n, r_d


def data_constrained_loss(N: ArrayLike, D: ArrayLike, U: ArrayLike, *, E: float, A: float,
                          B: float, alpha: float, beta: float, R_D_star: float,
                          R_N_star: float | None = None) -> np.ndarray:
    """L = E + A/N'^alpha + B/D'^beta (module doc); keyword names match the fit's params."""
    n_eff, d_eff, _, _ = effective(N, D, U, A=A, B=B, alpha=alpha, beta=beta,
                                   R_D_star=R_D_star, R_N_star=R_N_star)
    return E + A / n_eff ** alpha + B / d_eff ** beta


@dataclass(frozen=True)
class DataConstrainedFit:
    """The fitted law; `fixed` says whether E, A, B, alpha, beta came from a prior fit."""

    n_convention: str
    n_points: int
    n_repeated: int  # runs with R_D > 0
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    R_D_star: float
    R_N_star: float | None  # None: not identified by the design, N' = N
    fixed: bool
    objective: float  # the sum of Huber losses at the fit
    R_N: np.ndarray  # per point, under the fitted constants
    R_D: np.ndarray
    solver_point: np.ndarray  # the optimiser's coordinates at the fit (bootstrap refits start here)

    @property
    def params(self) -> dict[str, float | None]:
        return {"R_D_star": self.R_D_star, "R_N_star": self.R_N_star,
                **{name: getattr(self, name) for name in CONSTANTS}}

    def predict(self, N: ArrayLike, D: ArrayLike, U: ArrayLike) -> np.ndarray:
        return data_constrained_loss(N, D, U, **self.params)


def _log_gain(r_star: float, repeats: np.ndarray) -> np.ndarray:
    """log(1 + R* (1 - exp(-R / R*))): log D' - log U_D, or log N' - log U_N."""
    return np.log1p(r_star * -np.expm1(-repeats / r_star))


def _objective(theta: np.ndarray, log_n: np.ndarray, log_u: np.ndarray, r_d: np.ndarray,
               y: np.ndarray, fixed: np.ndarray | None, with_rn: bool) -> float:
    """Sum of Huber losses of y - log L_hat (y: log loss). theta is (log A, log B, log E,
    alpha, beta, log R*_D[, log R*_N]), without its first five entries when those are
    `fixed`; log_n and log_u (log U_D) in the units the constants are in."""
    a, b, e, alpha, beta = theta[:5] if fixed is None else fixed
    rest = np.exp(theta[5:] if fixed is None else theta)
    with np.errstate(all="ignore"):
        log_d = log_u + _log_gain(rest[0], r_d)
        if with_rn:
            log_g = (np.log(alpha) + a - np.log(beta) - b) / (alpha + beta)
            log_un = np.minimum(log_n, log_g + beta / alpha * (log_u + log_g))
            log_n = log_un + _log_gain(rest[1], np.expm1(log_n - log_un))
        predicted = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
        residual = y - predicted
        clipped = np.clip(residual, -DELTA, DELTA)
        value = float(np.sum(clipped * (residual - 0.5 * clipped)))
    return value if np.isfinite(value) else 1e30


def _identifies_rn(r_n: np.ndarray, rtol: float) -> bool:
    return int((r_n > 1e-9).sum()) >= 3 and _distinct(r_n, rtol) >= 2


def _start(N, D, U, loss, n_convention: str) -> dict[str, float]:
    """Chinchilla constants to start from: approach 3 (every 10th start of its grid) on the
    runs that saw each token once, or on all runs, repetition ignored, when those cannot
    identify it; its design warnings are passed on, naming the runs they are about."""
    once = D <= U * (1 + 1e-9)
    for keep, which in ((once, "the runs that saw each token once"),
                        (np.ones_like(once), "all runs, repetition ignored")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fit = fit_approach3(N[keep], D[keep], loss[keep], n_convention=n_convention,
                                    c_convention="6ND", starts=start_grid()[::10])
            except ValueError:
                continue
        if caught and keep is once and not once.all():
            continue  # try all runs before settling for a start the design cannot identify
        for w in caught:
            warnings.warn(f"start of the Chinchilla constants, approach 3 on {which}: "
                          f"{w.message}", w.category, stacklevel=3)
        return {name: getattr(fit, name) for name in CONSTANTS}
    raise ValueError("loss: approach 3 could not be fitted to start the Chinchilla constants; "
                     "fix them from a prior fit (constants= / --fix-from)")


def _check_constants(constants: dict) -> dict[str, float]:
    missing = [name for name in CONSTANTS if name not in constants]
    if missing:
        raise ValueError(f"constants lack {missing}; give E, A, B, alpha and beta (the params "
                         "of an approach-3 fit)")
    values = {name: float(constants[name]) for name in CONSTANTS}
    if not all(np.isfinite(v) and v > 0 for k, v in values.items() if k != "E") or values["E"] < 0:
        raise ValueError(f"constants must be finite, E >= 0 and the rest > 0; got {values}")
    return values


def fit_data_constrained(N: ArrayLike, D: ArrayLike, U: ArrayLike, loss: ArrayLike, *,
                         n_convention: str, constants: dict | None = None,
                         rtol: float = DEFAULT_RTOL, warn: bool = True,
                         start: DataConstrainedFit | None = None) -> DataConstrainedFit:
    """R*_D (and R*_N where identified) on top of the Chinchilla form (module doc). N are
    parameters, D tokens trained on, U unique tokens available, loss the held-out loss.
    `constants` fixes E, A, B, alpha, beta. `start`, a fit of the same kind (the bootstrap's
    full-data fit), replaces the start search by its optimum and its choice on R*_N."""
    N, D, U, loss = (positive_array(name, value) for name, value in
                     (("N", N), ("D", D), ("U", U), ("loss", loss)))
    same_length(N=N, D=D, U=U, loss=loss)
    check_loss_varies(loss, "data_constrained")
    repeated = D > U * (1 + 1e-9)
    if not repeated.any():
        raise ValueError(f"D, U: no run trains on more tokens than it has unique ones (D <= U in "
                         f"all {N.size}), so nothing identifies R*_D; add repeated-data runs")
    fixed = None if constants is None else _check_constants(constants)
    if start is None:
        base = fixed or _start(N, D, U, loss, n_convention)
        r_n = effective(N, D, U, **{k: base[k] for k in ("A", "B", "alpha", "beta")},
                        R_D_star=1.0, R_N_star=None)[2]
        with_rn = _identifies_rn(r_n, rtol)
    else:
        with_rn = start.R_N_star is not None
    r_d = D / np.minimum(U, D) - 1.0
    if fixed is None:  # the optimiser's units: N, D, U and loss over their geometric means
        scales = [float(np.exp(np.log(v).mean())) for v in (N, D, loss)]
    else:
        scales = [1.0, 1.0, 1.0]
    s_n, s_d, s_l = scales
    args = (np.log(N / s_n), np.log(np.minimum(U, D) / s_d), r_d, np.log(loss / s_l),
            None if fixed is None else np.array([np.log(fixed["A"]), np.log(fixed["B"]),
                                                 np.log(fixed["E"]) if fixed["E"] > 0 else -np.inf,
                                                 fixed["alpha"], fixed["beta"]]), with_rn)
    k = 2 if with_rn else 1
    if start is not None:
        starts = [start.solver_point]
    else:
        head = [] if fixed else [np.log(base["A"] / (s_l * s_n ** base["alpha"])),
                                 np.log(base["B"] / (s_l * s_d ** base["beta"])),
                                 np.log(max(base["E"], 1e-6 * s_l) / s_l), base["alpha"],
                                 base["beta"]]
        grid = np.log(np.array(np.meshgrid(*[[1.0, 3.0, 10.0, 30.0, 100.0]] * k)).reshape(k, -1).T)
        starts = sorted((np.array([*head, *row]) for row in grid),
                        key=lambda x0: _objective(x0, *args))[:3]
    bounds = (([] if fixed else [(None, None)] * 3 + [(1e-3, 3.0)] * 2)
              + [tuple(np.log(R_BOUNDS))] * k)
    best = min((minimize(_objective, x0, args=args, method="L-BFGS-B", bounds=bounds,
                         options={"maxiter": 5000, "ftol": 1e-13, "gtol": 1e-10})
                for x0 in starts), key=lambda r: r.fun)
    theta = best.x
    if fixed is None:
        values = {"A": np.exp(theta[0]) * s_l * s_n ** theta[3],
                  "B": np.exp(theta[1]) * s_l * s_d ** theta[4], "E": np.exp(theta[2]) * s_l,
                  "alpha": theta[3], "beta": theta[4]}
    else:
        values = dict(fixed)
    r_star = np.exp(theta[-k:])
    fit_rn = float(r_star[1]) if with_rn else None
    _, _, r_n, r_d = effective(N, D, U, **{c: values[c] for c in ("A", "B", "alpha", "beta")},
                               R_D_star=float(r_star[0]), R_N_star=fit_rn)
    fit = DataConstrainedFit(n_convention, int(N.size), int(repeated.sum()),
                             **{c: float(values[c]) for c in CONSTANTS},
                             R_D_star=float(r_star[0]), R_N_star=fit_rn, fixed=fixed is not None,
                             objective=float(best.fun), R_N=r_n, R_D=r_d, solver_point=theta)
    if warn:
        _warn(fit, rtol, float(loss.min()))
    return fit


def _distinct(values: np.ndarray, rtol: float) -> int:
    """How many distinct positive values (within rtol) `values` holds."""
    positive = values[values > 1e-9]
    return int(np.unique(group_close(positive, rtol)).size) if positive.size else 0


def _warn(fit: DataConstrainedFit, rtol: float, min_loss: float) -> None:
    if fit.R_N_star is None:
        warnings.warn(f"R*_N is not fitted: {int((fit.R_N > 1e-9).sum())} run(s) have more "
                      "parameters than compute-optimal for their unique tokens (R_N > 0), at "
                      f"{_distinct(fit.R_N, rtol)} distinct R_N; identifying it needs 3 or more "
                      "at 2 or more, so N' = N", IdentifiabilityWarning, stacklevel=3)
    for name in ("R_D_star", "R_N_star"):
        value = getattr(fit, name)
        if value is not None and not R_BOUNDS[0] * 1.01 < value < R_BOUNDS[1] / 1.01:
            warnings.warn(f"{name} = {value:.4g} is at the bound of its search {R_BOUNDS}: the "
                          "data do not bound it (at the top: repeated tokens or excess "
                          "parameters lose no measurable value here)", IdentifiabilityWarning,
                          stacklevel=3)
    if not fit.fixed and fit.E < E_FLOOR * min_loss:
        warnings.warn(f"E = {fit.E:.3g} is at its bound 0 (below {E_FLOOR:g} x the smallest loss, "
                      f"{min_loss:.4g}): the runs show no irreducible loss, so E is not "
                      "identified and A, B, alpha, beta absorb it; fixing the constants from a "
                      "prior fit (--fix-from) avoids this", IdentifiabilityWarning, stacklevel=3)
    if _distinct(fit.R_D, rtol) < 2:
        warnings.warn("the runs repeat data at only one number of epochs; R*_D then rests on a "
                      "single point of the decay curve", IdentifiabilityWarning, stacklevel=3)


@dataclass(frozen=True)
class DataConstrainedBootstrap:
    """Points resampled; `samples[name]` one row per resample, `intervals[name]` percentile."""

    fit: DataConstrainedFit
    n_resamples: int
    seed: int
    level: float
    samples: dict[str, np.ndarray]
    intervals: dict[str, Interval]
    unit: str = "point"


def bootstrap_data_constrained(N: ArrayLike, D: ArrayLike, U: ArrayLike, loss: ArrayLike, *,
                               n_convention: str, constants: dict | None = None,
                               rtol: float = DEFAULT_RTOL, n_resamples: int = 200, seed: int = 0,
                               level: float = 0.95) -> DataConstrainedBootstrap:
    """`fit_data_constrained` with percentile intervals: points resampled with replacement,
    each refit started from the full-data optimum."""
    if not (isinstance(n_resamples, (int, np.integer)) and n_resamples >= 2):
        raise ValueError(f"n_resamples must be an integer >= 2; got {n_resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), e.g. 0.95; got {level!r}")
    fit = fit_data_constrained(N, D, U, loss, n_convention=n_convention, constants=constants,
                               rtol=rtol)
    N, D, U, loss = (np.asarray(v, dtype=float) for v in (N, D, U, loss))
    rng = np.random.default_rng(seed)
    names = [name for name, value in fit.params.items()
             if value is not None and not (fit.fixed and name in CONSTANTS)]
    rows = []
    for _ in range(n_resamples):
        draw = rng.integers(0, N.size, N.size)
        try:
            refit = fit_data_constrained(N[draw], D[draw], U[draw], loss[draw],
                                         n_convention=n_convention, constants=constants, rtol=rtol,
                                         warn=False, start=fit)
        except ValueError:  # a draw without repeated runs, or of equal losses
            continue
        rows.append([refit.params[name] for name in names])
    samples = dict(zip(names, np.array(rows, dtype=float).T))
    intervals = {name: percentile_interval(fit.params[name], values, level)
                 for name, values in samples.items()}
    return DataConstrainedBootstrap(fit, n_resamples, seed, level, samples, intervals)
