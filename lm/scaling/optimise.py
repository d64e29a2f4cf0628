"""The approach-3 objective and its minimiser: a Huber loss on log-loss residuals of the
log-sum-exp form, minimised from many starts at once by a vectorised BFGS, then polished by
scipy's L-BFGS-B from the best end point.

Pure numpy on whatever coordinates the caller passes (`lm.scaling.approach3` passes loss, N
and D divided by their geometric means, so the optimiser never sees the data's units).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize

_CHUNK = 256  # rows per block, keeping the (starts x points) temporaries in cache


def lse_huber(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray,
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


def batched_bfgs(fun: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], x0: np.ndarray, *,
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
        longest = np.maximum(np.abs(d).max(axis=1), 1e-300)  # d = 0 at a stationary start
        trial = np.minimum(1.0, max_step / longest)[:, None]  # steps of `todo` rows
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


def minimise_lse(log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray, delta: float,
                  starts: np.ndarray) -> tuple[np.ndarray, float]:
    """Best (theta, objective): batched BFGS from every start, then scipy L-BFGS-B from the best."""
    def fun(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return lse_huber(theta, log_n, log_d, log_loss, delta)

    x, f = batched_bfgs(fun, starts)
    result = minimize(lambda t: tuple(v[0] for v in fun(t[None])), x[np.nanargmin(f)], jac=True,
                      method="L-BFGS-B", options={"maxiter": 10_000, "ftol": 1e-12, "gtol": 1e-10})
    return result.x, float(result.fun)
