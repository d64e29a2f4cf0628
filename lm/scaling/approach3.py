"""Chinchilla approach 3: L(N, D) = E + A/N^alpha + B/D^beta fitted with a Huber loss on log L,
as Hoffmann et al. (2022) did and Besiroglu et al. (2024, Epoch AI) replicated.

The fit does not depend on units. Loss, N and D are divided by their geometric means
(`Scales`) before the search, so loss in bits or x 1000, or N in millions, gives the same
alpha and beta, and E, A, B scale as they should. The starting grid (`start_grid`) is the
paper's shape, 6 x 6 x 5 x 5 x 5 = 4,500 starts, laid out in those normalised units: a term
A'/N'^alpha at the geometric-mean model size is e^a' of the geometric-mean loss.
`paper_start_grid` is the paper's own grid in its raw units, for literal reproductions.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from lm.scaling.design import (DEFAULT_RTOL, IdentifiabilityWarning, approach3_problems,
                               check_loss_varies)
from lm.scaling.laws import (allocation_coefficient, allocation_exponents, check_conventions,
                             positive_array, same_length)
from lm.scaling.optimise import minimise_lse

E_FLOOR = 1e-3  # E below this fraction of the smallest loss is at its bound, 0


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


@dataclass(frozen=True)
class Scales:
    """Geometric means of loss, N and D: the units approach 3 searches in."""

    loss: float
    N: float
    D: float

    @classmethod
    def of(cls, N: np.ndarray, D: np.ndarray, loss: np.ndarray) -> Scales:
        return cls(*(float(np.exp(np.mean(np.log(v)))) for v in (loss, N, D)))

    def to_normalised(self, theta: ArrayLike) -> np.ndarray:
        """Rows (a, b, e, alpha, beta) of the raw-unit law in normalised units."""
        a, b, e, alpha, beta = np.array(theta, dtype=float).T
        log_l, log_n, log_d = np.log(self.loss), np.log(self.N), np.log(self.D)
        return np.stack([a - log_l - alpha * log_n, b - log_l - beta * log_d, e - log_l,
                         alpha, beta], axis=-1)

    def to_raw(self, theta: ArrayLike) -> np.ndarray:
        """Rows (a, b, e, alpha, beta) in normalised units back in the data's units."""
        a, b, e, alpha, beta = np.array(theta, dtype=float).T
        log_l, log_n, log_d = np.log(self.loss), np.log(self.N), np.log(self.D)
        return np.stack([a + log_l + alpha * log_n, b + log_l + beta * log_d, e + log_l,
                         alpha, beta], axis=-1)


def start_grid(*, a: Sequence[float] = (-5, -4, -3, -2, -1, 0),
               b: Sequence[float] = (-5, -4, -3, -2, -1, 0),
               e: Sequence[float] = (-2, -1.5, -1, -0.5, 0),
               alpha: Sequence[float] = (0, 0.5, 1, 1.5, 2),
               beta: Sequence[float] = (0, 0.5, 1, 1.5, 2)) -> np.ndarray:
    """Starts in normalised units, rows (a, b, e, alpha, beta): 4,500 by default.

    With loss, N and D divided by their geometric means, e^a and e^b are the N and D terms
    and e^e the floor E as fractions of the typical loss: 0.7% to 100% for the terms, 14% to
    100% for E. The exponents are the paper's values.
    """
    return np.array(list(itertools.product(a, b, e, alpha, beta)), dtype=float)


def paper_start_grid() -> np.ndarray:
    """Hoffmann et al. (2022, appendix D.2)'s 4,500 starts in raw units (nats, parameters,
    tokens): a, b in {0, 5, ..., 25}, e in {-1, -0.5, ..., 1}, alpha, beta in {0, 0.5, ..., 2}."""
    return start_grid(a=(0, 5, 10, 15, 20, 25), b=(0, 5, 10, 15, 20, 25),
                      e=(-1, -0.5, 0, 0.5, 1))


def _check_starts(starts: ArrayLike | None) -> np.ndarray:
    starts = start_grid() if starts is None else np.asarray(starts, dtype=float)
    if starts.ndim != 2 or starts.shape[1] != 5 or starts.shape[0] == 0 \
            or not np.all(np.isfinite(starts)):
        raise ValueError("starts must be a finite (k, 5) array of (a, b, e, alpha, beta) rows "
                         f"with k >= 1; got shape {starts.shape}")
    return starts


def fit_approach3(N: ArrayLike, D: ArrayLike, loss: ArrayLike, *, n_convention: str,
                  c_convention: str, delta: float = 1e-3, starts: ArrayLike | None = None,
                  scales: Scales | None = None, C: ArrayLike | None = None,
                  rtol: float = DEFAULT_RTOL) -> Approach3Fit:
    """Approach 3: fit L = E + A/N^alpha + B/D^beta by minimising the SUM of Huber losses.

    Works in the log-sum-exp form log L_hat = LSE(a - alpha log N, b - beta log D, e) with
    A = e^a, B = e^b, E = e^e, residuals log L - log L_hat, Huber threshold `delta`, on loss,
    N and D divided by `scales` (default: their geometric means, `Scales.of`). From every row
    of `starts` (normalised units; default `start_grid()`) a vectorised BFGS runs all starts
    together, and scipy's L-BFGS-B polishes the best end point. a, b and G describe the
    allocation under C = 6ND (`laws.compute_optimal`), whatever c_convention the data used.

    Warns with IdentifiabilityWarning when the design cannot identify the law (fewer than 5
    points or 3 distinct N or D, a single compute budget `C` (default 6ND; values within
    `rtol` are one budget), one D/N ratio, log D linear in log N, one curve through (N, D)),
    and when E ends at its bound 0. Raises ValueError when every loss is equal.
    """
    check_conventions(n_convention, c_convention)
    N, D, loss = positive_array("N", N), positive_array("D", D), positive_array("loss", loss)
    n = same_length(N=N, D=D, loss=loss)
    C = 6.0 * N * D if C is None else positive_array("C", C)
    if not delta > 0:
        raise ValueError(f"delta must be > 0; got {delta}")
    starts = _check_starts(starts)
    check_loss_varies(loss, "approach 3")
    problems = approach3_problems(N, D, C, rtol)
    if problems:
        warnings.warn("approach 3 design: " + "; ".join(problems), IdentifiabilityWarning,
                      stacklevel=2)
    scales = Scales.of(N, D, loss) if scales is None else scales
    theta, objective = minimise_lse(np.log(N / scales.N), np.log(D / scales.D),
                                    np.log(loss / scales.loss), delta, starts)
    a_log, b_log, e_log, alpha, beta = (float(v) for v in scales.to_raw(theta))
    A, B, E = np.exp(a_log), np.exp(b_log), np.exp(e_log)
    if E < E_FLOOR * loss.min():
        warnings.warn(f"approach 3: E = {E:.3g} is at its bound 0 (below {E_FLOOR:g} x the "
                      f"smallest loss, {loss.min():.4g}): the data show no irreducible loss, so "
                      "E is not identified and A, B, alpha, beta absorb it", IdentifiabilityWarning,
                      stacklevel=2)
    try:
        a, b = allocation_exponents(alpha, beta)
        G = allocation_coefficient(A=A, B=B, alpha=alpha, beta=beta)
    except ValueError as error:
        warnings.warn(f"approach 3: no compute-optimal allocation ({error})",
                      IdentifiabilityWarning, stacklevel=2)
        a = b = G = float("nan")
    return Approach3Fit("approach3", n_convention, c_convention, n, float(E), float(A),
                        float(B), alpha, beta, a, b, G, objective, float(delta), starts.shape[0])
