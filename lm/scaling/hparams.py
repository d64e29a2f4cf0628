"""Learning-rate and batch-size laws: eta_opt(C) and B_opt(C), as DeepSeek LLM (2024, section
3.1) fitted them: per compute budget, the *near-optimal region* is every run whose loss is
within `tolerance` (0.25%) of the budget's best; eta_opt = lr_coef C^lr_exponent and
B_opt = batch_coef C^batch_exponent are least-squares lines in log-log space through the
points of every budget's region.

C is constant within a budget, so that fit equals a weighted fit through each budget's
*centre*, the geometric means of its region's learning rates and batch sizes, weighted by the
region's size; the centres are reported as each budget's fitted optimum (`lr_opt`,
`batch_opt`). The batch is counted in tokens (sequences x seq_len), as DeepSeek did.

Warnings (`IdentifiabilityWarning`) name a budget whose region reaches the edge of its sampled
learning rates or batch sizes (the optimum may lie beyond the grid: widen it), a budget whose
region holds one run, and a law fitted through two budgets. Pure numpy; the bootstrap
resamples runs within each budget and refits.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from lm.scaling.bootstrap import Interval, percentile_interval
from lm.scaling.chinchilla import fit_power_law, isoflop_profiles
from lm.scaling.design import DEFAULT_RTOL, IdentifiabilityWarning, check_loss_varies
from lm.scaling.laws import positive_array, same_length

NEAR_OPTIMAL = 0.0025  # DeepSeek LLM: within 0.25% of the budget's minimum loss
PARAMS = ("lr_opt_coef", "lr_opt_exponent", "batch_opt_coef", "batch_opt_exponent")
# DeepSeek LLM (2024): eta_opt = 0.3118 C^-0.1250, B_opt = 0.2920 C^0.3271 (B in tokens; their
# C is non-embedding FLOPs per token, attention included, times tokens).
DEEPSEEK = {"lr_opt_coef": 0.3118, "lr_opt_exponent": -0.1250, "batch_opt_coef": 0.2920,
            "batch_opt_exponent": 0.3271}


@dataclass(frozen=True)
class HparamFit:
    """eta_opt(C) = lr_opt_coef C^lr_opt_exponent, B_opt(C) = batch_opt_coef C^batch_opt_exponent
    (B in tokens), and per budget (ascending) its best run and near-optimal region."""

    c_convention: str
    tolerance: float
    n_points: int
    lr_opt_coef: float
    lr_opt_exponent: float
    batch_opt_coef: float
    batch_opt_exponent: float
    budgets: np.ndarray
    best_loss: np.ndarray  # the budget's lowest loss
    best_lr: np.ndarray  # the learning rate and batch of that run
    best_batch: np.ndarray
    lr_opt: np.ndarray  # the region's centre: geometric mean of its learning rates
    batch_opt: np.ndarray  # and of its batch sizes
    n_near: np.ndarray  # runs in the region
    n_runs: np.ndarray  # runs in the budget
    lr_range: np.ndarray  # (budgets, 2): the region's smallest and largest learning rate
    batch_range: np.ndarray
    near: np.ndarray  # bool per input point: in its budget's near-optimal region
    point_budget: np.ndarray  # per input point: its budget's C

    @property
    def params(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in PARAMS}

    def predict(self, flops: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(eta_opt, B_opt) at compute `flops`."""
        flops = positive_array("flops", flops)
        return (self.lr_opt_coef * flops ** self.lr_opt_exponent,
                self.batch_opt_coef * flops ** self.batch_opt_exponent)


def near_optimal(loss: np.ndarray, tolerance: float = NEAR_OPTIMAL) -> np.ndarray:
    """Mask of the losses within `tolerance` (relative) of the lowest."""
    return loss <= loss.min() * (1.0 + tolerance)


def _check(C, lr, batch, loss, tolerance: float) -> tuple[np.ndarray, ...]:
    arrays = tuple(positive_array(name, value) for name, value in
                   (("C", C), ("lr", lr), ("batch", batch), ("loss", loss)))
    same_length(C=arrays[0], lr=arrays[1], batch=arrays[2], loss=arrays[3])
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must lie in [0, 1) (0.0025: within 0.25% of the best); "
                         f"got {tolerance}")
    return arrays


def budgets_of(C: np.ndarray, group: np.ndarray | None,
               rtol: float) -> list[tuple[float, np.ndarray]]:
    """(budget, indices of its runs) by ascending budget: runs grouped by `group` (an IsoFLOP
    budget column; nan: by C) within `rtol`, each budget the geometric mean of its runs' C."""
    key = C if group is None else np.where(np.isfinite(group), group, C)
    return [(float(C[at][0] if np.all(C[at] == C[at][0]) else np.exp(np.log(C[at]).mean())),
             np.flatnonzero(at)) for _, at in isoflop_profiles(key, rtol)]


def fit_hparams(C: ArrayLike, lr: ArrayLike, batch: ArrayLike, loss: ArrayLike, *,
                c_convention: str, tolerance: float = NEAR_OPTIMAL, rtol: float = DEFAULT_RTOL,
                budget: ArrayLike | None = None, warn: bool = True) -> HparamFit:
    """The laws eta_opt(C) and B_opt(C) from runs at several compute budgets (module doc).

    `C[i]` is run i's compute, `lr[i]` its peak learning rate, `batch[i]` its batch in tokens,
    `loss[i]` its held-out loss. Runs with `budget` values (default: C) within `rtol` are one
    budget, whose C is the geometric mean of theirs. Needs 2 budgets; ValueError otherwise.
    """
    C, lr, batch, loss = _check(C, lr, batch, loss, tolerance)
    group = None if budget is None else np.asarray(budget, dtype=float)
    check_loss_varies(loss, "hparams")
    profiles = budgets_of(C, group, rtol)
    if len(profiles) < 2:
        raise ValueError(f"C: all {C.size} runs share one compute budget ({profiles[0][0]:.4g}, "
                         f"within {rtol:g}); learning-rate and batch laws need at least 2 budgets")
    near = np.zeros(C.size, dtype=bool)
    at_budget = np.empty(C.size)
    rows = []
    for c, index in profiles:
        at_budget[index] = c
        region = index[near_optimal(loss[index], tolerance)]
        near[region] = True
        best = index[np.argmin(loss[index])]
        rows.append((c, loss[best], lr[best], batch[best], np.exp(np.log(lr[region]).mean()),
                     np.exp(np.log(batch[region]).mean()), region.size, index.size,
                     (lr[region].min(), lr[region].max()),
                     (batch[region].min(), batch[region].max())))
        if warn:
            _warn_edges(c, region, index, lr, batch)
    for name, values in (("learning rate", lr), ("batch size", batch)) if warn else ():
        if np.unique(values).size == 1:
            warnings.warn(f"every run has the same {name} ({values[0]:.4g}), so its law is not "
                          "identified (a flat line through it); tune it too", IdentifiabilityWarning,
                          stacklevel=2)
    if warn and len(profiles) == 2:
        warnings.warn("2 budgets: each law is a line through two points, so nothing checks it; "
                      "add budgets", IdentifiabilityWarning, stacklevel=2)
    lr_coef, lr_exp = fit_power_law(at_budget[near], lr[near])
    batch_coef, batch_exp = fit_power_law(at_budget[near], batch[near])
    columns = [np.array(column) for column in zip(*rows)]
    budgets = np.array([c for c, _ in profiles])
    return HparamFit(c_convention, tolerance, int(C.size), lr_coef, lr_exp, batch_coef,
                     batch_exp, budgets, *columns[1:6], columns[6].astype(int),
                     columns[7].astype(int), columns[8], columns[9], near, at_budget)


def _warn_edges(c: float, region: np.ndarray, index: np.ndarray, lr: np.ndarray,
                batch: np.ndarray) -> None:
    """IdentifiabilityWarnings for a region of one run, or one at the edge of the grid."""
    if region.size == 1 and index.size > 1:
        warnings.warn(f"budget {c:.4g}: only its best run lies within the tolerance, so its "
                      "optimum is that run's grid point; a finer grid or a looser --near-optimal "
                      "widens the region", IdentifiabilityWarning, stacklevel=3)
    for name, values in (("learning rate", lr), ("batch size", batch)):
        sampled = np.unique(values[index])
        if sampled.size < 2:
            continue
        edges = [word for word, edge in (("smallest", sampled[0]), ("largest", sampled[-1]))
                 if np.any(values[region] == edge)]
        if edges:
            warnings.warn(f"budget {c:.4g}: the near-optimal region reaches the "
                          f"{' and '.join(edges)} {name} sampled ({', '.join(f'{v:.4g}' for v in sampled)}); the optimum "
                          "may lie beyond the grid: widen it", IdentifiabilityWarning, stacklevel=3)


@dataclass(frozen=True)
class HparamBootstrap:
    """A bootstrap of `fit`: runs resampled within each budget, `samples[name]` one row per
    resample ("lr_opt" and "batch_opt" at `at_flops`), `intervals[name]` percentile ones."""

    fit: HparamFit
    n_resamples: int
    seed: int
    level: float
    at_flops: np.ndarray
    samples: dict[str, np.ndarray]
    intervals: dict[str, Interval]
    unit: str = "run within budget"


def bootstrap_hparams(C: ArrayLike, lr: ArrayLike, batch: ArrayLike, loss: ArrayLike, *,
                      at_flops: ArrayLike, c_convention: str, tolerance: float = NEAR_OPTIMAL,
                      rtol: float = DEFAULT_RTOL, budget: ArrayLike | None = None,
                      n_resamples: int = 200, seed: int = 0,
                      level: float = 0.95) -> HparamBootstrap:
    """`fit_hparams` with percentile intervals: each resample draws every budget's runs with
    replacement (keeping its count), finds the regions again and refits both laws."""
    if not (isinstance(n_resamples, (int, np.integer)) and n_resamples >= 2):
        raise ValueError(f"n_resamples must be an integer >= 2; got {n_resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), e.g. 0.95; got {level!r}")
    at_flops = np.atleast_1d(positive_array("at_flops", at_flops))
    fit = fit_hparams(C, lr, batch, loss, c_convention=c_convention, tolerance=tolerance,
                      rtol=rtol, budget=budget)
    C, lr, batch, loss = _check(C, lr, batch, loss, tolerance)
    group = None if budget is None else np.asarray(budget, dtype=float)
    groups = [index for _, index in budgets_of(C, group, rtol)]
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_resamples):
        draw = np.concatenate([rng.choice(index, index.size) for index in groups])
        refit = fit_hparams(C[draw], lr[draw], batch[draw], loss[draw], c_convention=c_convention,
                            tolerance=tolerance, rtol=rtol, warn=False,
                            budget=None if group is None else group[draw])
        rows.append([*refit.params.values(), *np.concatenate(refit.predict(at_flops))])
    rows = np.array(rows)
    samples = dict(zip(PARAMS, rows[:, :4].T))
    k = at_flops.size
    samples["lr_opt"], samples["batch_opt"] = rows[:, 4:4 + k], rows[:, 4 + k:]
    estimates = {**fit.params, **dict(zip(("lr_opt", "batch_opt"), fit.predict(at_flops)))}
    intervals = {name: percentile_interval(estimates[name], values, level)
                 for name, values in samples.items()}
    return HparamBootstrap(fit, n_resamples, seed, level, at_flops, samples, intervals)
