"""DIR/task_results.csv, the tidy table of `lm sweep eval` (lm.sweep.task_eval): its columns,
writing and reading. Imports nothing heavy, so notebooks read it quickly.

One row per run x checkpoint step x task x metric: run, step, tokens (seen by that step),
n_total, n_non_embedding, flops_6n_total, flops_6n_non_embedding, flops_exact (training
compute up to that step, in results.csv's conventions), heldout_loss (the run's evaluation
at that step; empty where it logged none), task, kind (multiple_choice | generate),
num_fewshot, limit (empty: every example), examples, metric, value, stderr.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

TASK_RESULTS_FILE = "task_results.csv"
TASK_COLUMNS = ("run", "step", "tokens", "n_total", "n_non_embedding", "flops_6n_total",
                "flops_6n_non_embedding", "flops_exact", "heldout_loss", "task", "kind",
                "num_fewshot", "limit", "examples", "metric", "value", "stderr")
_INT_COLUMNS = {"step", "tokens", "n_total", "n_non_embedding", "num_fewshot", "limit", "examples"}
_STR_COLUMNS = {"run", "task", "kind", "metric"}


def cell(value: Any) -> Any:
    """A CSV cell: None empty, floats exact."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value


def csv_bytes(columns: Sequence[str], rows: Sequence[dict]) -> bytes:
    """`rows` (dicts) under a header of `columns`, as UTF-8 CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return out.getvalue().encode("utf-8")


def _parse(column: str, raw: str) -> Any:
    if column in _STR_COLUMNS:
        return raw
    if raw == "":
        return None
    return int(raw) if column in _INT_COLUMNS else float(raw)


def read_task_results(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a task_results.csv, typed (counts int, FLOPs, losses and values float,
    empty cells None). ValueError naming the file (and line) when it is not one."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if header != TASK_COLUMNS:
            raise ValueError(f"{path}: header {','.join(header)!r} is not task_results.csv's "
                             f"({','.join(TASK_COLUMNS)}); write it with `lm sweep eval`")
        rows = []
        for line, values in enumerate(reader, start=2):
            if len(values) != len(header):
                raise ValueError(f"{path}:{line}: {len(values)} values for {len(header)} columns")
            try:
                rows.append({c: _parse(c, v) for c, v in zip(header, values)})
            except ValueError as err:
                raise ValueError(f"{path}:{line}: {err}") from None
    return rows
