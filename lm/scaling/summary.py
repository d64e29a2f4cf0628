"""Plain-text tables of `lm fit` results for a terminal: methods side by side, backtests."""

from __future__ import annotations

from collections.abc import Mapping


def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def _interval(body: Mapping, name: str, i: int | None = None) -> str:
    interval = body.get("bootstrap", {}).get("intervals", {}).get(name)
    if interval is None:
        return ""
    lower, upper = interval["lower"], interval["upper"]
    if i is not None:
        lower, upper = lower[i], upper[i]
    return "" if lower is None else f"[{lower:.4g}, {upper:.4g}]"


def methods_table(methods: Mapping[str, Mapping]) -> str:
    """a, b, N_opt and loss_opt of each method at its first reporting budget."""
    rows = [["method", "a", "95% interval", "b", "at C", "N_opt", "loss_opt", "95% interval"]]
    for name, body in methods.items():
        d = body.get("derived") or {}
        if not d:
            rows.append([name, "(no compute-optimal allocation)"] + [""] * 6)
            continue
        rows.append([name, f"{d['a']:.4f}", _interval(body, "a"), f"{d['b']:.4f}",
                     f"{d['at_flops'][0]:.3g}", f"{d['N_opt'][0]:.4g}",
                     f"{d['loss_opt'][0]:.4f}", _interval(body, "loss_opt", 0)])
    return "lm fit: methods side by side\n" + _aligned(rows)


def backtest_table(methods: Mapping[str, Mapping]) -> str:
    """Each method's prediction for each held-out budget against what the runs reached."""
    rows = [["method", "budget", "fitted on", "predicted", "95% interval", "actual",
             "actual from", "error", "covered"]]
    for name, body in methods.items():
        test = body.get("backtest")
        if test is None:
            continue
        fitted = f"{len(test['fitted_budgets'])} budgets <= {test['fitted_budgets'][-1]:.3g}"
        for row in test["rows"]:
            interval = row.get("interval")
            rows.append([name, f"{row['budget']:.3g}", fitted, f"{row['predicted']:.4f}",
                         "" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]",
                         f"{row['actual']:.4f}", row["actual_from"],
                         f"{100 * row['relative_error']:+.2f}%",
                         {True: "yes", False: "no"}.get(row.get("covered"), "")])
    return "lm fit: backtest (the largest budgets held out)\n" + _aligned(rows)
