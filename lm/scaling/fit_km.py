"""Least-squares fits of the Kaplan et al. (2020) scaling laws in log space.

Every fit minimises sum (log L - log L_hat)^2 over the data. The one-variable
laws are linear in log-log space, so their fit is exact linear regression; the
two-variable laws start from those one-variable fits and are refined with
`scipy.optimize.least_squares` over (log scales, exponents), exponents kept > 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import least_squares

from lm.scaling.laws import check_conventions, positive_array, same_length


@dataclass(frozen=True)
class KMFit:
    """A fitted KM law; `params` are the keyword arguments of the matching `laws.km_loss_*`."""

    method: str  # "km_n", "km_d", "km_c", "km_nd" or "km_ns"
    params: dict[str, float]
    rms_log_residual: float  # root mean square of log L - log L_hat
    n_points: int
    n_convention: str
    c_convention: str


def _rms(residual: np.ndarray) -> float:
    return float(np.sqrt(np.mean(residual ** 2)))


def _log_linear(name: str, log_x: np.ndarray, log_loss: np.ndarray) -> tuple[float, float]:
    """(alpha, log Xc) of log L = alpha (log Xc - log X) by linear regression."""
    if np.ptp(log_x) == 0:
        raise ValueError(f"{name} takes a single value; a power law in {name} needs at least two")
    slope, intercept = np.polyfit(log_x, log_loss, 1)
    if slope >= 0:
        raise ValueError(f"loss does not fall with {name} (log-log slope {slope:.3g} >= 0); "
                         f"(Xc/{name})^alpha with alpha > 0 cannot fit it")
    return float(-slope), float(intercept / -slope)


def _one_variable(method: str, name: str, x: ArrayLike, loss: ArrayLike, n_convention: str,
                  c_convention: str) -> KMFit:
    check_conventions(n_convention, c_convention)
    x, loss = positive_array(name, x), positive_array("loss", loss)
    n = same_length(**{name: x, "loss": loss})
    if n < 2:
        raise ValueError(f"need at least 2 points to fit a power law in {name}; got {n}")
    log_x, log_loss = np.log(x), np.log(loss)
    alpha, log_scale = _log_linear(name, log_x, log_loss)
    residual = log_loss - alpha * (log_scale - log_x)
    params = {f"{name}c": float(np.exp(log_scale)), f"alpha_{name}": alpha}
    return KMFit(method, params, _rms(residual), n, n_convention, c_convention)


def fit_km_n(N: ArrayLike, loss: ArrayLike, *, n_convention: str, c_convention: str) -> KMFit:
    """Fit L(N) = (Nc/N)^alpha_N; params {"Nc", "alpha_N"}."""
    return _one_variable("km_n", "N", N, loss, n_convention, c_convention)


def fit_km_d(D: ArrayLike, loss: ArrayLike, *, n_convention: str, c_convention: str) -> KMFit:
    """Fit L(D) = (Dc/D)^alpha_D; params {"Dc", "alpha_D"}."""
    return _one_variable("km_d", "D", D, loss, n_convention, c_convention)


def fit_km_c(C: ArrayLike, loss: ArrayLike, *, n_convention: str, c_convention: str) -> KMFit:
    """Fit L(C) = (Cc/C)^alpha_C to compute-efficient frontier points; params {"Cc", "alpha_C"}."""
    return _one_variable("km_c", "C", C, loss, n_convention, c_convention)


def _two_variable_inputs(x_name: str, y_name: str, x: ArrayLike, y: ArrayLike, loss: ArrayLike,
                         n_convention: str, c_convention: str):
    check_conventions(n_convention, c_convention)
    x, y = positive_array(x_name, x), positive_array(y_name, y)
    loss = positive_array("loss", loss)
    n = same_length(**{x_name: x, y_name: y, "loss": loss})
    if n < 5:
        raise ValueError(f"need at least 5 points to fit 4 parameters; got {n}")
    return np.log(x), np.log(y), np.log(loss), n


def _refine(residual_and_jacobian, start: np.ndarray) -> np.ndarray:
    """Least squares over (log scale 1, log scale 2, exponent 1, exponent 2), exponents > 0."""
    result = least_squares(lambda p: residual_and_jacobian(p)[0], start,
                           jac=lambda p: residual_and_jacobian(p)[1],
                           bounds=([-np.inf, -np.inf, 0.0, 0.0], np.inf), x_scale="jac",
                           xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=10_000)
    if not result.success:
        raise RuntimeError(f"least_squares did not converge: {result.message}")
    return result.x


def fit_km_nd(N: ArrayLike, D: ArrayLike, loss: ArrayLike, *, n_convention: str,
              c_convention: str) -> KMFit:
    """Fit L(N, D) = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D.

    params {"Nc", "Dc", "alpha_N", "alpha_D"}.
    Starts from the one-variable fits of log L on log N and on log D.
    """
    log_n, log_d, log_loss, n = _two_variable_inputs("N", "D", N, D, loss, n_convention,
                                                     c_convention)

    def residual_and_jacobian(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_nc, log_dc, alpha_n, alpha_d = p
        u = alpha_n / alpha_d * (log_nc - log_n)
        v = log_dc - log_d
        m = np.logaddexp(u, v)
        w_u = np.exp(u - m)
        jacobian = -np.stack([alpha_n * w_u, alpha_d * (1.0 - w_u), w_u * (log_nc - log_n),
                              m - w_u * u], axis=1)
        return log_loss - alpha_d * m, jacobian

    alpha_n, log_nc = _log_linear("N", log_n, log_loss)
    alpha_d, log_dc = _log_linear("D", log_d, log_loss)
    p = _refine(residual_and_jacobian, np.array([log_nc, log_dc, alpha_n, alpha_d]))
    params = {"Nc": float(np.exp(p[0])), "Dc": float(np.exp(p[1])), "alpha_N": float(p[2]),
              "alpha_D": float(p[3])}
    return KMFit("km_nd", params, _rms(residual_and_jacobian(p)[0]), n, n_convention,
                 c_convention)


def fit_km_ns(N: ArrayLike, S: ArrayLike, loss: ArrayLike, *, n_convention: str,
              c_convention: str) -> KMFit:
    """Fit L(N, S) = (Nc/N)^alpha_N + (Sc/S)^alpha_S; params {"Nc", "Sc", "alpha_N", "alpha_S"}.

    Starts from the one-variable fits of log L on log N and on log S.
    """
    log_n, log_s, log_loss, n = _two_variable_inputs("N", "S", N, S, loss, n_convention,
                                                     c_convention)

    def residual_and_jacobian(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_nc, log_sc, alpha_n, alpha_s = p
        u, v = alpha_n * (log_nc - log_n), alpha_s * (log_sc - log_s)
        m = np.logaddexp(u, v)
        w_u = np.exp(u - m)
        w_v = 1.0 - w_u
        jacobian = -np.stack([alpha_n * w_u, alpha_s * w_v, w_u * (log_nc - log_n),
                              w_v * (log_sc - log_s)], axis=1)
        return log_loss - m, jacobian

    alpha_n, log_nc = _log_linear("N", log_n, log_loss)
    alpha_s, log_sc = _log_linear("S", log_s, log_loss)
    p = _refine(residual_and_jacobian, np.array([log_nc, log_sc, alpha_n, alpha_s]))
    params = {"Nc": float(np.exp(p[0])), "Sc": float(np.exp(p[1])), "alpha_N": float(p[2]),
              "alpha_S": float(p[3])}
    return KMFit("km_ns", params, _rms(residual_and_jacobian(p)[0]), n, n_convention,
                 c_convention)
