"""The coordinate-check figure: activation RMS against width, one line per step, SP beside muP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lm.files import atomic_write

PANELS = (("embedding", ("embedding",)), ("attention branches", (".attn",)),
          ("MLP branches", (".mlp",)), ("residual stream", (".residual",)), ("logits", ("logits",)))


def panel_values(rms: dict[str, list[dict[str, float]]], width: int, step: int,
                 suffixes: tuple[str, ...]) -> float:
    """The mean RMS over the activations of one panel, at one width and step."""
    row = rms[str(width)][step]
    values = [v for k, v in row.items() if any(k.endswith(s) for s in suffixes)]
    return sum(values) / len(values)


def plot_coord_check(report: dict[str, Any], out_path: Path) -> Path:
    """Write the PNG: rows SP and muP, columns the activation groups, x = width (log)."""
    widths, steps = report["widths"], report["steps"]
    fig = Figure(figsize=(3.2 * len(PANELS), 6.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(PANELS), squeeze=False)
    for row, p in enumerate(("sp", "mup")):
        for col, (title, suffixes) in enumerate(PANELS):
            ax = axes[row][col]
            for step in range(steps):
                ys = [panel_values(report["rms"][p], w, step, suffixes) for w in widths]
                ax.plot(widths, ys, marker="o", markersize=3, label=f"step {step}",
                        color=(step / max(steps - 1, 1), 0.2, 1 - step / max(steps - 1, 1)))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{p.upper() if p == 'sp' else 'muP'}: {title}", fontsize=9)
            ax.tick_params(labelsize=7)
            if row == 1:
                ax.set_xlabel("width (d_model)", fontsize=8)
            if col == 0:
                ax.set_ylabel("activation RMS", fontsize=8)
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(f"coordinate check: lr {report['lr']:g}, proxy width {report['base_width']}, "
                 f"{report['seeds']} seed(s)", fontsize=10)
    fig.tight_layout()
    with atomic_write(Path(out_path)) as f:
        fig.savefig(f, format="png")
    return Path(out_path)
