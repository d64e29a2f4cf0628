"""Plots of training runs, drawn off-screen with matplotlib's Agg canvas."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lm.files import atomic_write
from lm.train.metrics import LOSS, read_metrics


def _loss_points(records: list[dict]) -> tuple[list[int], list[float]]:
    """(steps, losses) for records with a finite loss."""
    points = [(r["step"], float(r[LOSS])) for r in records if LOSS in r and math.isfinite(r[LOSS])]
    return [s for s, _ in points], [v for _, v in points]


def plot_loss(metrics_path: Path, out_path: Path) -> Path:
    """Write a PNG of train loss (line), eval loss (dots) and loss spikes (crosses) against
    step; return out_path.

    The y axis is logarithmic when the plotted losses span more than one
    decade. The title is the run directory (the metrics file's parent) name.
    """
    metrics_path, out_path = Path(metrics_path), Path(out_path)
    records = read_metrics(metrics_path, kind=None)
    train_steps, train_loss = _loss_points([r for r in records if r["kind"] == "train"])
    eval_steps, eval_loss = _loss_points([r for r in records if r["kind"] == "eval"])
    if not train_loss:
        raise ValueError(
            f"{metrics_path} has no finite train {LOSS!r} values to plot; log some training steps first"
        )

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(train_steps, train_loss, label="train", linewidth=1)
    if eval_loss:
        ax.plot(eval_steps, eval_loss, "o", label="eval", markersize=4)
    spikes = [(r["step"], r["value"]) for r in records  # lm.train.anomaly's loss spikes
              if r["kind"] == "anomaly" and r.get("metric") == LOSS and math.isfinite(r["value"])]
    if spikes:
        ax.plot(*zip(*spikes), "x", color="tab:red", label="loss spike", markersize=7)
    losses = train_loss + eval_loss
    if min(losses) > 0 and max(losses) / min(losses) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(metrics_path.resolve().parent.name)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_path) as f:
        fig.savefig(f, format="png")
    return out_path
