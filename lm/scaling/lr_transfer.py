"""Learning-rate transfer across widths: where each width's best learning rate lies, under each
parametrization, and how far it moves from the narrowest model to the widest.

Reads a tuned width sweep's results.csv (experiments/sweeps/mup_transfer_cpu.py): one row per
run with its d_model, hp.model.parametrization, hp.train.lr and loss. For every
(parametrization, width) the grid's best rate is the run with the lowest loss; the refined
optimum is the vertex of a parabola through that run and its two grid neighbours in log2(lr)
(the grid's best rate when it sits on the grid's edge). The shift of a parametrization is
log2(optimum at the widest / optimum at the narrowest width), in grid steps when the grid is
in factors of 2; its spread is the largest minus the smallest log2 optimum over all widths.
Yang et al. (2022) find SP's optimum moving by several factors of 2 over such a range and
muP's staying put.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

COLUMNS = {"width": "d_model", "parametrization": "hp.model.parametrization",
           "lr": "hp.train.lr"}
LOSSES = {"heldout": "heldout_loss", "train": "final_train_loss"}


@dataclasses.dataclass(frozen=True)
class WidthCurve:
    """One width's losses over the learning-rate grid, under one parametrization."""

    width: int
    lrs: tuple[float, ...]
    losses: tuple[float, ...]

    @property
    def best_index(self) -> int:
        return int(np.nanargmin(self.losses))

    @property
    def grid_best_lr(self) -> float:
        return self.lrs[self.best_index]

    @property
    def refined_log2_lr(self) -> float:
        """The parabola vertex in log2(lr) through the best run and its neighbours."""
        i, x, y = self.best_index, np.log2(self.lrs), np.asarray(self.losses)
        if i == 0 or i == len(x) - 1 or not np.all(np.isfinite(y[i - 1:i + 2])):
            return float(x[i])
        a, b, _ = np.polyfit(x[i - 1:i + 2], y[i - 1:i + 2], 2)
        return float(np.clip(-b / (2 * a), x[i - 1], x[i + 1])) if a > 0 else float(x[i])

    @property
    def on_edge(self) -> bool:
        return self.best_index in (0, len(self.lrs) - 1)


def read_sweep(results_csv: Path | Sequence[Path], loss: str = "heldout") -> dict[str, list[WidthCurve]]:
    """{parametrization: curves by width} from a sweep's results.csv, or from several (a grid
    extended by a second sweep); finished runs only."""
    if loss not in LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    paths = [Path(results_csv)] if isinstance(results_csv, (str, Path)) else [Path(p) for p in results_csv]
    points: dict[str, dict[int, dict[float, float]]] = {}
    for path in paths:
        _read_points(path, LOSSES[loss], points)
    where = ", ".join(str(p) for p in paths)
    curves = {}
    for p, by_width in sorted(points.items(), key=lambda item: (item[0] != "sp", item[0])):  # SP first
        curves[p] = [WidthCurve(w, tuple(sorted(by_lr)), tuple(by_lr[lr] for lr in sorted(by_lr)))
                     for w, by_lr in sorted(by_width.items()) if len(by_lr) >= 2]
        if len(curves[p]) < 2:
            raise ValueError(f"{where}: parametrization {p!r} has finished grids at fewer than two "
                             "widths; nothing to compare yet")
    return curves


def _read_points(path: Path, loss_column: str, points: dict[str, dict[int, dict[float, float]]]) -> None:
    """Add the finished runs of the results.csv at `path` to points[parametrization][width][lr]."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist; run `lm sweep run` (or `lm sweep status`) first")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    wanted = [*COLUMNS.values(), loss_column]
    missing = [c for c in wanted if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path} has no column {missing or wanted}: a width sweep tuned over "
                         "model.parametrization and train.lr writes them")
    for line, row in enumerate(rows, start=2):
        if row.get("status", "done") != "done" or not row[loss_column]:
            continue
        try:
            width, lr, value = int(float(row["d_model"])), float(row["hp.train.lr"]), float(row[loss_column])
        except ValueError:
            raise ValueError(f"{path} line {line}: d_model, hp.train.lr and {loss_column} must be "
                             "numbers") from None
        points.setdefault(row["hp.model.parametrization"], {}).setdefault(width, {})[lr] = value


def grid_step(curves: list[WidthCurve]) -> float:
    """The grid's factor between neighbouring learning rates, in log2 (1 for factors of 2)."""
    gaps = [b - a for c in curves for a, b in zip(np.log2(c.lrs), np.log2(c.lrs)[1:])]
    return float(np.median(gaps))


def transfer_report(curves: dict[str, list[WidthCurve]]) -> dict[str, Any]:
    """Per parametrization: each width's grid and refined optimum, the shift and spread."""
    report: dict[str, Any] = {}
    for p, by_width in curves.items():
        step = grid_step(by_width)
        grid = [math.log2(c.grid_best_lr) for c in by_width]
        refined = [c.refined_log2_lr for c in by_width]
        report[p] = {
            "widths": [c.width for c in by_width],
            "grid_best_lr": [c.grid_best_lr for c in by_width],
            "refined_best_lr": [2.0 ** r for r in refined],
            "best_loss": [min(c.losses) for c in by_width],
            "on_grid_edge": [c.on_edge for c in by_width],
            "grid_factor": 2.0 ** step,
            "shift_grid_steps": (grid[-1] - grid[0]) / step,
            "spread_grid_steps": (max(grid) - min(grid)) / step,
            "shift_refined_steps": (refined[-1] - refined[0]) / step,
        }
    return report


def plot_transfer(curves: dict[str, list[WidthCurve]], path: Path, title: str = "") -> Path:
    """Loss against learning rate, one line per width, a panel per parametrization."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lm.files import atomic_write

    fig = Figure(figsize=(5.2 * len(curves), 4.2), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(curves), squeeze=False, sharey=True)[0]
    finite = [v for cs in curves.values() for c in cs for v in c.losses if math.isfinite(v)]
    low, high = min(finite), min(max(finite), min(finite) + 1.5)
    for ax, (p, by_width) in zip(axes, curves.items()):
        for k, c in enumerate(by_width):
            color = (k / max(len(by_width) - 1, 1), 0.25, 1 - k / max(len(by_width) - 1, 1))
            ax.plot(c.lrs, c.losses, marker="o", markersize=3, color=color, label=f"width {c.width}")
            ax.plot([c.grid_best_lr], [min(c.losses)], marker="*", markersize=12, color=color)
        ax.set_xscale("log", base=2)
        ax.set_ylim(low - 0.05, high)
        ax.set_xlabel("learning rate")
        ax.set_title({"sp": "SP", "mup": "muP"}.get(p, p))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out loss")
    axes[-1].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_write(Path(path)) as f:
        fig.savefig(f, format="png")
    return Path(path)
