"""What a set of scaling-law points can and cannot pin down, checked before any fit.

- `group_close` groups values equal up to a relative tolerance: IsoFLOP budgets recomputed as
  6ND from rounded token counts, or read off a figure, differ in their last digits but are
  one budget; model sizes read off a figure likewise.
- `check_loss_varies` refuses losses that are all equal: every exponent fitted to them
  would describe rounding noise.
- `duplicate_rows` names rows that repeat an earlier row exactly (a pasted block counts
  twice in every fit).
- `approach3_problems` says why a design cannot identify E + A/N^alpha + B/D^beta.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_RTOL = 0.01  # values within 1% of a group's smallest are one budget / one model size


class IdentifiabilityWarning(UserWarning):
    """The data cannot pin down (part of) the fitted law; the message names the problem."""


def group_close(values: np.ndarray, rtol: float = DEFAULT_RTOL) -> np.ndarray:
    """A group number per value, by ascending value: a value joins the current group while it
    is within `rtol` (relative) of the group's smallest member, else it starts the next."""
    if not rtol >= 0:
        raise ValueError(f"rtol must be >= 0; got {rtol}")
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    groups = np.empty(values.size, dtype=int)
    group, first = -1, -np.inf
    for i in order:
        if values[i] > first * (1 + rtol) or group < 0:
            group, first = group + 1, values[i]
        groups[i] = group
    return groups


def group_values(values: np.ndarray, rtol: float = DEFAULT_RTOL) -> np.ndarray:
    """Each value replaced by the geometric mean of its `group_close` group."""
    values = np.asarray(values, dtype=float)
    groups = group_close(values, rtol)
    log_means = np.bincount(groups, np.log(values)) / np.bincount(groups)
    return np.exp(log_means[groups])


def check_loss_varies(loss: np.ndarray, where: str) -> None:
    """ValueError naming `where` when every loss is the same number."""
    loss = np.asarray(loss, dtype=float)
    if loss.size and np.ptp(loss) <= 1e-12 * np.abs(loss).max():
        raise ValueError(f"{where}: all {loss.size} losses are {loss[0]:.6g}; a scaling law "
                         "fitted to a constant would describe rounding noise. Check the loss "
                         "column")


def duplicate_rows(columns: Mapping[str, np.ndarray], labels: Sequence[str]) -> list[str]:
    """One message per row equal in every column to an earlier row, naming both rows."""
    first: dict[tuple, str] = {}
    messages = []
    for i, label in enumerate(labels):
        key = tuple(float(column[i]) for column in columns.values())
        if key in first:
            messages.append(f"{label} repeats {first[key]} ({', '.join(columns)} all equal): "
                            "it counts twice in the fit; remove one if it is a copy")
        else:
            first[key] = label
    return messages


def _one_curve(log_n: np.ndarray, log_d: np.ndarray, rtol: float) -> bool:
    """True when every model size has one token count and D moves monotonically with N."""
    n_group = group_close(np.exp(log_n), rtol)
    d_group = group_close(np.exp(log_d), rtol)
    if any(np.unique(d_group[n_group == g]).size > 1 for g in np.unique(n_group)):
        return False
    steps = np.diff(np.bincount(n_group, log_d) / np.bincount(n_group))  # by ascending N
    return steps.size > 0 and (np.all(steps > 0) or np.all(steps < 0))


def approach3_problems(N: np.ndarray, D: np.ndarray, C: np.ndarray,
                       rtol: float = DEFAULT_RTOL) -> list[str]:
    """Why the (N, D) design cannot identify E + A/N^alpha + B/D^beta (empty when it can)."""
    problems = []
    if N.size < 5:
        problems.append(f"{N.size} points for 5 parameters")
    for name, values, term in (("N", N, "A/N^alpha"), ("D", D, "B/D^beta")):
        distinct = np.unique(group_close(values, rtol)).size
        if distinct < 3:
            problems.append(f"{distinct} distinct {name} value(s) (within {rtol:.0%}); "
                            f"separating {term} from E needs at least 3")
    if problems:
        return problems
    log_n, log_d = np.log(N), np.log(D)
    ratio = log_d - log_n
    budgets = np.unique(group_close(C, rtol)).size
    if budgets == 1:
        problems.append(f"every point has the same compute C = {np.exp(np.log(C).mean()):.4g} "
                        f"(within {rtol:.0%}): one IsoFLOP profile, along which N and D move "
                        "together, so the N and D terms trade places and alpha, beta, a, b are "
                        "not identified; add budgets")
    elif np.ptp(ratio) <= 1e-3:
        problems.append(f"every point has the same D/N ratio ({np.exp(ratio.mean()):.4g}), "
                        "so the N and D terms can trade places and alpha, beta, a, b are not "
                        "identified")
    elif abs(np.corrcoef(log_n, log_d)[0, 1]) > 1 - 1e-9:
        slope = np.polyfit(log_n, log_d, 1)[0]
        problems.append(f"log D is a linear function of log N (slope {slope:.3g}), so the N "
                        "and D terms can trade places")
    elif _one_curve(log_n, log_d, rtol):
        problems.append("every model size has a single token count and D moves monotonically "
                        "with N: the points trace one curve through the (N, D) plane, along "
                        "which the N and D terms trade places; train some sizes for two or "
                        "more token counts")
    return problems
