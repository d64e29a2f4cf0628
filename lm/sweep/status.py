"""`lm sweep status`'s report: one line per run with its status (and held-out loss, or
how far it got and why it failed or was interrupted), then the counts and the files
written. A tuned sweep groups its runs by point: each member with its tuned values, `*`
marking the point's best (results.csv's `best`), and a line per point naming the best
member's values."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path
from typing import Any, Sequence

from lm.sweep.plan import RunSpec, hparam_text
from lm.sweep.results import read_results, selection_loss
from lm.sweep.runner import (RUNS_DIR, RunStatus, count_text, load_plan, statuses, stderr_tail,
                             write_sweep_results)
from lm.sweep.tune import aliases
from lm.errors import PREEMPTED_EXIT


def _run_line(s: RunStatus, row: dict[str, Any], workdir: Path, width: int, values: str = "") -> str:
    line = f"{s.name.ljust(width)}  {s.status:<8}" + (f"  {values}" if values else "")
    if s.status == "done" and row["heldout_loss"] is not None:
        line += f"  held-out loss {row['heldout_loss']:.4f}"
    if s.status in ("started", "interrupted", "failed"):
        line += (f"  step {s.last_step or 0}/{s.steps} logged, checkpoint "
                 f"{s.checkpoint_step or 'none'}")
    if s.status == "started":
        line += " (running or interrupted)"
    if s.status == "interrupted":
        how = ("preempted, checkpoint saved" if s.returncode == PREEMPTED_EXIT
               else f"killed by {signal.Signals(-s.returncode).name}")
        line += f"  exit {s.returncode}: {how}; a rerun resumes it"
    if s.status == "failed":
        tail = stderr_tail(workdir / RUNS_DIR / s.name, lines=1)
        line += f"  exit {s.returncode}: {tail[0] if tail else 'no stderr'}"
    return line


def _tuned_lines(specs: Sequence[RunSpec], final: Sequence[RunStatus], rows: dict[str, dict],
                 tuned: Sequence[str], workdir: Path, width: int) -> list[str]:
    names = aliases(tuned)
    values = {spec.name: " ".join(f"{names[f]}={hparam_text(spec.hparams[f])}" for f in tuned)
              for spec in specs}
    value_width = max(map(len, values.values()))
    lines = []
    for point, group in itertools.groupby(zip(specs, final), key=lambda pair: pair[0].point):
        group = list(group)
        for spec, s in group:
            mark = "*" if rows[s.name]["best"] == 1 else " "
            run = _run_line(s, rows[s.name], workdir, width, values[s.name].ljust(value_width))
            lines.append(f"{mark} {run}")
        done = [rows[s.name] for _, s in group if s.status == "done"]
        count = f"{len(done)} of {len(group)} members done"
        best = next((row for row in done if row["best"] == 1), None)
        if best is None:
            lines.append(f"point {point}: no member done yet ({count})")
            continue
        loss = selection_loss(done)
        label = "held-out" if loss == "heldout_loss" else "final train"
        lines.append(f"point {point}: best {values[best['run']]} ({label} {best[loss]:.4f}; {count})")
    return lines


def status_report(workdir: Path) -> str:
    """The report on the sweep in `workdir`; writes its results.csv and curves.csv."""
    workdir = Path(workdir)
    record, specs = load_plan(workdir)
    final = statuses(workdir)
    results, curves = write_sweep_results(workdir, final)
    rows = {row["run"]: row for row in read_results(results)}
    width = max(len(s.name) for s in final)
    tuned = list(record["sweep"].get("tune", {}))
    if tuned:
        lines = _tuned_lines(specs, final, rows, tuned, workdir, width)
    else:
        lines = [_run_line(s, rows[s.name], workdir, width) for s in final]
    return "\n".join([*lines, f"{len(final)} runs: {count_text(final)}", f"results: {results}",
                      f"curves: {curves}"])
