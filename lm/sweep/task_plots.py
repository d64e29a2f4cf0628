"""Task metrics of a sweep (task_results.csv, lm.sweep.task_eval) against compute and against
held-out loss, a discontinuous metric beside a continuous one, and where the first jumps.

For each task the discontinuous metric is `acc` (multiple choice) or `exact_match`
(generation); the continuous one is the Brier score of the softmax over the choices
(multiple choice: it scores the same decision as acc, where the log-probability of the
correct choice mostly scores how well the model knows the choice's text; drawn with its
axis reversed, better up) or `logprob`, the log-probability of the answer (generation, nats).
`plot_task_metrics` draws one row per task: discontinuous and continuous metric
against compute (log x), then both against held-out loss; one line per run, through its
kept checkpoints, coloured by model size. Drawn off-screen (matplotlib's Agg canvas).

`largest_jumps` reads "emergence" off the table. For each task it finds the checkpoint
interval of one run across which the discontinuous metric rose most lastingly: the lowest
value from that interval's end on, minus the highest value up to its start (noise that
rises and falls back does not count). It gives that rise as a share of the metric's range
over the whole sweep, beside the continuous metric's change over the same interval as a
share of its own range. A jump is a lasting rise of at least JUMP_SHARE of the range and of
2 standard errors, while the continuous metric moves less than half that share there:
then only the discontinuous metric looks sudden.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from lm.files import atomic_write

DISCONTINUOUS = ("acc", "exact_match")  # the first a task has
CONTINUOUS = {"acc": "brier", "exact_match": "logprob"}  # beside each
LOWER_IS_BETTER = ("brier",)
COMPUTE = "flops_exact"
JUMP_SHARE = 0.3
LABELS = {"acc": "accuracy", "exact_match": "exact match", "logprob": "log p(answer), nats",
          "brier": "Brier score (reversed)",
          "flops_exact": "training FLOPs (exact count)", "flops_6n_total": "training FLOPs (6ND, total N)",
          "flops_6n_non_embedding": "training FLOPs (6ND, non-embedding N)", "heldout_loss": "held-out loss"}


def metric_pair(rows: Sequence[dict[str, Any]], task: str) -> tuple[str, str]:
    """(discontinuous, continuous) metric names of `task` in the rows."""
    have = {r["metric"] for r in rows if r["task"] == task}
    discrete = next((m for m in DISCONTINUOUS if m in have), None)
    if discrete is None or CONTINUOUS[discrete] not in have:
        pairs = " or ".join(f"{d} and {c}" for d, c in CONTINUOUS.items())
        raise ValueError(f"task {task} has no {pairs} rows (it has {', '.join(sorted(have)) or 'none'})")
    return discrete, CONTINUOUS[discrete]


def curves(rows: Sequence[dict[str, Any]], task: str, metric: str) -> dict[str, list[dict[str, Any]]]:
    """The rows of one task and metric, per run (in first-seen order), sorted by step."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["task"] == task and r["metric"] == metric:
            out.setdefault(r["run"], []).append(r)
    return {run: sorted(points, key=lambda r: r["step"]) for run, points in out.items()}


def tasks_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["task"] for r in rows))


@dataclasses.dataclass(frozen=True)
class Jump:
    """The largest lasting one-interval rise of a task's discontinuous metric (see the module)."""

    task: str
    discrete: str
    continuous: str
    run: str
    from_step: int
    to_step: int
    before: float  # the discontinuous metric at from_step and at to_step
    after: float
    rise: float  # lasting: min over to_step and later - max over from_step and earlier
    share: float  # rise / the discontinuous metric's range over the whole sweep
    stderr: float  # of the difference at the interval, sqrt(se_before^2 + se_after^2)
    continuous_before: float
    continuous_after: float
    continuous_share: float  # |change over the interval| / its range over the whole sweep
    low: float  # the discontinuous metric's range over the sweep
    high: float

    @property
    def is_jump(self) -> bool:
        return (self.share >= JUMP_SHARE and self.rise >= 2 * self.stderr
                and self.continuous_share < self.share / 2)

    def text(self) -> str:
        if self.rise <= 0:
            return (f"{self.task}: no jump; {self.discrete} never rose for good from one kept checkpoint "
                    f"to the next (all values in [{self.low:.3f}, {self.high:.3f}])")
        verdict = "a jump" if self.is_jump else "no jump"
        return (f"{self.task}: {verdict}; {self.discrete} rose most lastingly in {self.run} from step "
                f"{self.from_step} to {self.to_step}, {self.before:.3f} -> {self.after:.3f}, by {self.rise:.3f} "
                f"for good ({self.share:.0%} of its range over the sweep; stderr {self.stderr:.3f}), while "
                f"{self.continuous} went {self.continuous_before:.3f} -> {self.continuous_after:.3f} "
                f"({self.continuous_share:.0%} of its range)")


def largest_jumps(rows: Sequence[dict[str, Any]]) -> list[Jump]:
    """One Jump per task that some run has two or more checkpoints of (the others have none)."""
    jumps = []
    for task in tasks_of(rows):
        discrete, continuous = metric_pair(rows, task)
        d_curves, c_curves = curves(rows, task, discrete), curves(rows, task, continuous)
        d_values = [r["value"] for points in d_curves.values() for r in points]
        c_values = [r["value"] for points in c_curves.values() for r in points]
        d_range = (max(d_values) - min(d_values)) or math.inf
        c_range = (max(c_values) - min(c_values)) or math.inf
        best = None
        for run, points in d_curves.items():
            c_at = {r["step"]: r for r in c_curves.get(run, [])}
            for i in range(1, len(points)):
                a, b = points[i - 1], points[i]
                if a["step"] not in c_at or b["step"] not in c_at:
                    continue
                rise = min(p["value"] for p in points[i:]) - max(p["value"] for p in points[:i])
                if best is None or rise > best[0]:
                    best = (rise, run, a, b, c_at[a["step"]], c_at[b["step"]])
        if best is None:
            continue
        rise, run, a, b, ca, cb = best
        jumps.append(Jump(task, discrete, continuous, run, a["step"], b["step"], a["value"], b["value"],
                          rise, max(rise, 0.0) / d_range, math.hypot(a["stderr"] or 0.0, b["stderr"] or 0.0),
                          ca["value"], cb["value"], abs(cb["value"] - ca["value"]) / c_range,
                          min(d_values), max(d_values)))
    return jumps


def _colours(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    sizes = {r["run"]: r["n_non_embedding"] for r in rows}
    order = sorted(sizes, key=lambda run: sizes[run])
    cmap = colormaps["viridis"]
    return {run: cmap(i / max(1, len(order) - 1) * 0.9) for i, run in enumerate(order)}


def draw_task_metrics(fig: Figure, rows: Sequence[dict[str, Any]], *, compute: str = COMPUTE) -> Figure:
    """Draw the task grid (see the module docstring) on `fig`; returns it."""
    tasks = tasks_of(rows)
    if not tasks:
        raise ValueError("no task results to plot; run `lm sweep eval` first")
    colours = _colours(rows)
    axes = fig.subplots(len(tasks), 4, squeeze=False)
    for i, task in enumerate(tasks):
        pair = metric_pair(rows, task)
        for j, (x_name, metric) in enumerate([(compute, pair[0]), (compute, pair[1]),
                                              ("heldout_loss", pair[0]), ("heldout_loss", pair[1])]):
            ax = axes[i][j]
            for run, points in curves(rows, task, metric).items():
                points = [p for p in points if p[x_name] is not None]
                ax.plot([p[x_name] for p in points], [p["value"] for p in points], "o-",
                        color=colours[run], label=run, markersize=3, linewidth=1)
            if metric in DISCONTINUOUS:
                ax.set_ylim(-0.03, 1.03)  # the whole scale: a jump looks as big as it is
            if metric in LOWER_IS_BETTER:
                ax.invert_yaxis()
            if x_name == compute:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
            else:
                ax.invert_xaxis()  # lower loss to the right, as more compute
            ax.set_xlabel(LABELS.get(x_name, x_name), fontsize=8)
            ax.set_ylabel(LABELS.get(metric, metric), fontsize=8)
            ax.set_title(f"{task}: {metric}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig


def plot_task_metrics(rows: Sequence[dict[str, Any]], out_path: Path, *, compute: str = COMPUTE,
                      dpi: int = 80) -> Path:
    """Write the task grid as a PNG to `out_path` (atomically); returns it."""
    tasks = tasks_of(rows)
    fig = Figure(figsize=(13, 2.8 * max(1, len(tasks))), dpi=dpi)
    FigureCanvasAgg(fig)
    draw_task_metrics(fig, rows, compute=compute)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_path) as f:
        fig.savefig(f, format="png")
    return out_path
