"""Kaplan et al. (2020) laws for `lm fit --method km`: L(N), L(D), L(C) and L(N, D), as far
as the points allow, with point-bootstrap intervals and the L(N, D) allocation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lm.scaling import plots
from lm.scaling.bootstrap import percentile_interval
from lm.scaling.fit_km import KMFit, fit_km_c, fit_km_d, fit_km_n, fit_km_nd
from lm.scaling.laws import km_loss_nd
from lm.scaling.reports import LEVEL, Options, draw
from lm.scaling.table import Points, frontier, lowest_loss_per


def km_allocation(params: dict[str, float], at_flops: np.ndarray) -> dict[str, np.ndarray]:
    """Minimum of KM's L(N, D) under C = 6ND: N_opt = (r Nc^r C / (6 Dc))^a with
    r = alpha_N / alpha_D and a = alpha_D / (alpha_N + alpha_D); D_opt = C / (6 N_opt)."""
    r = params["alpha_N"] / params["alpha_D"]
    a = 1.0 / (1.0 + r)
    n_opt = (r * params["Nc"] ** r * at_flops / (6.0 * params["Dc"])) ** a
    d_opt = at_flops / (6.0 * n_opt)
    return {"a": a, "b": 1.0 - a, "N_opt": n_opt, "D_opt": d_opt,
            "tokens_per_parameter": d_opt / n_opt}


def _km_laws(points: Points) -> dict[str, tuple[Callable[..., KMFit], tuple, str]]:
    """Each KM law: its fitter, the arrays it fits and which points those are."""
    by_n = lowest_loss_per(points.N, points.loss)
    by_d = lowest_loss_per(points.D, points.loss)
    by_c = frontier(points.C, points.loss)
    return {
        "km_n": (fit_km_n, (points.N[by_n], points.loss[by_n]),
                 "the lowest loss at each distinct N"),
        "km_d": (fit_km_d, (points.D[by_d], points.loss[by_d]),
                 "the lowest loss at each distinct D"),
        "km_c": (fit_km_c, (points.C[by_c], points.loss[by_c]),
                 "the compute-efficient frontier: points with a lower loss than any with "
                 "less compute"),
        "km_nd": (fit_km_nd, (points.N, points.D, points.loss), "every point"),
    }


def _km_values(fit: KMFit, at_flops: np.ndarray) -> dict:
    """The parameters of a KM fit, and for L(N, D) its compute-optimal allocation."""
    if fit.method == "km_nd":
        return {**fit.params, **km_allocation(fit.params, at_flops)}
    return dict(fit.params)


def _km_bootstrap(fitter: Callable[..., KMFit], arrays: tuple, conv: dict, fit: KMFit,
                  at_flops: np.ndarray, options: Options) -> dict:
    """Percentile intervals from refits to points resampled with replacement; a draw the law
    cannot be fitted to (say, one with a single distinct N) is redrawn, up to 10 K draws."""
    rng = np.random.default_rng(options.seed)
    size = arrays[0].size
    rows: list[dict] = []
    for _ in range(10 * options.bootstrap):
        draw = rng.integers(0, size, size)
        try:
            rows.append(_km_values(fitter(*(a[draw] for a in arrays), **conv), at_flops))
        except (ValueError, RuntimeError):
            continue
        if len(rows) == options.bootstrap:
            break
    else:
        raise ValueError(f"{fit.method}: only {len(rows)} of {10 * options.bootstrap} bootstrap "
                       "draws could be fitted; too few points for intervals")
    intervals = {}
    for name, estimate in _km_values(fit, at_flops).items():
        i = percentile_interval(estimate, np.array([row[name] for row in rows]), LEVEL)
        intervals[name] = {"estimate": i.estimate, "lower": i.lower, "upper": i.upper}
    return {"n_resamples": options.bootstrap, "seed": options.seed, "level": LEVEL, "unit": "point",
            "intervals": intervals}


def km(points: Points, options: Options, at_flops: np.ndarray) -> dict:
    """Every KM law the points allow, with intervals under options.bootstrap."""
    conv, out = options.conv, options.out
    laws, skipped, drawings = {}, {}, {}
    for name, (fitter, arrays, selection) in _km_laws(points).items():
        try:
            fit = fitter(*arrays, **conv)
        except (ValueError, RuntimeError) as err:
            skipped[name] = str(err)
            continue
        law = {"params": fit.params, "rms_log_residual": fit.rms_log_residual,
               "n_points": fit.n_points, "points": selection}
        if name == "km_nd":
            law["derived"] = {"at_flops": at_flops, **km_allocation(fit.params, at_flops)}
            drawings["km_nd_residuals.png"] = lambda path, fit=fit: plots.residuals(
                points.C, points.loss, km_loss_nd(points.N, points.D, **fit.params),
                x_label=plots.C_LABEL[fit.c_convention], title="loss against KM L(N, D)",
                path=path)
        else:
            drawings[f"{name}.png"] = lambda path, fit=fit, arrays=arrays: plots.power_law(
                fit, *arrays, path=path)
        if options.bootstrap:
            law["bootstrap"] = _km_bootstrap(fitter, arrays, conv, fit, at_flops, options)
        laws[name] = law
    if not laws:
        raise ValueError("no KM law could be fitted: " + "; ".join(
            f"{name}: {reason}" for name, reason in skipped.items()))
    report = {"n_points": len(points), "laws": laws, "skipped": skipped}
    if out is not None:
        report["plots"] = draw(out, drawings)
    return report
