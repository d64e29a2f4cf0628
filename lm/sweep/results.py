"""A sweep's results: DIR/results.csv (one row per run) and DIR/curves.csv (one row per
logged train step of every done run), the inputs of the Kaplan and Chinchilla fits.

results.csv: the run's plan (shape, counts, tokens = steps * batch_size * seq_len, compute
as 6 N D with the total and the non-embedding N, and the exact Chinchilla appendix-F count)
for every run, and its losses for done runs: final_train_loss is the mean train loss over
the last 10% of logged steps (at least one), heldout_loss the last evaluation's loss
(nats per token). `budget` is the IsoFLOP budget, empty for other kinds.

curves.csv: tokens and compute up to each logged step, the train loss there, and the
held-out loss at evaluation steps (empty elsewhere); for Chinchilla approach 1.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from lm.files import atomic_write
from lm.scaling.counts import train_flops_per_token
from lm.sweep.plan import RunSpec
from lm.train.metrics import METRICS_FILE, read_metrics

RESULTS_FILE = "results.csv"
CURVES_FILE = "curves.csv"
RESULT_COLUMNS = ("run", "status", "kind", "budget", "d_model", "num_layers", "num_heads",
                  "num_kv_heads", "d_ff", "vocab_size", "seq_len", "batch_size", "steps", "n_total",
                  "n_non_embedding", "tokens", "flops_6n_total", "flops_6n_non_embedding",
                  "flops_exact", "final_train_loss", "heldout_loss")
CURVE_COLUMNS = ("run", "step", "tokens", "flops_6n_total", "flops_6n_non_embedding", "flops_exact",
                 "train_loss", "heldout_loss")
_INT_COLUMNS = {"d_model", "num_layers", "num_heads", "num_kv_heads", "d_ff", "vocab_size", "seq_len",
                "batch_size", "steps", "n_total", "n_non_embedding", "tokens", "step"}
_STR_COLUMNS = {"run", "status", "kind"}
FINAL_FRACTION = 0.1  # final_train_loss averages this fraction of the logged steps


def final_train_loss(losses: Sequence[float]) -> float:
    """Mean of the last 10% of `losses` (at least the last one)."""
    count = max(1, int(len(losses) * FINAL_FRACTION))
    return sum(losses[-count:]) / count


def _rows(kind: str, runs: Sequence[tuple[RunSpec, str, Path]]) -> tuple[list[dict], list[dict]]:
    results, curves = [], []
    for spec, status, run_dir in runs:
        cfg = spec.config()
        m, seq_len, batch = cfg.model, cfg.data.seq_len, cfg.train.batch_size
        per_token = {"flops_6n_total": 6.0 * spec.n_total,
                     "flops_6n_non_embedding": 6.0 * spec.n_non_embedding,
                     "flops_exact": train_flops_per_token(m, seq_len)}
        row = {"run": spec.name, "status": status, "kind": kind,
               "budget": spec.budget, "d_model": m.d_model, "num_layers": m.num_layers,
               "num_heads": m.num_heads, "num_kv_heads": m.num_kv_heads, "d_ff": m.d_ff,
               "vocab_size": m.vocab_size, "seq_len": seq_len, "batch_size": batch,
               "steps": cfg.train.steps, "n_total": spec.n_total,
               "n_non_embedding": spec.n_non_embedding, "tokens": spec.tokens,
               **{k: v * spec.tokens for k, v in per_token.items()},
               "final_train_loss": None, "heldout_loss": None}
        if status == "done":
            metrics = Path(run_dir) / METRICS_FILE
            train = [r for r in read_metrics(metrics) if r["step"] <= cfg.train.steps]
            evals = {r["step"]: r["loss"] for r in read_metrics(metrics, kind="eval")}
            row["final_train_loss"] = final_train_loss([r["loss"] for r in train])
            row["heldout_loss"] = evals[max(evals)] if evals else None
            for r in train:
                tokens = r["step"] * batch * seq_len
                curves.append({"run": spec.name, "step": r["step"], "tokens": tokens,
                               **{k: v * tokens for k, v in per_token.items()},
                               "train_loss": r["loss"], "heldout_loss": evals.get(r["step"])})
        results.append(row)
    return results, curves


def _csv_bytes(columns: Sequence[str], rows: Sequence[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else repr(row[c]) if isinstance(row[c], float)
                         else row[c] for c in columns])
    return out.getvalue().encode("utf-8")


def write_results(workdir: Path, kind: str,
                  runs: Sequence[tuple[RunSpec, str, Path]]) -> tuple[Path, Path]:
    """Write DIR/results.csv and DIR/curves.csv atomically for a sweep of `kind` from its
    runs as (spec, status, run workdir), in plan order. Returns both paths."""
    workdir = Path(workdir)
    results, curves = _rows(kind, runs)
    paths = workdir / RESULTS_FILE, workdir / CURVES_FILE
    for path, columns, rows in zip(paths, (RESULT_COLUMNS, CURVE_COLUMNS), (results, curves)):
        with atomic_write(path) as f:
            f.write(_csv_bytes(columns, rows))
    return paths


def _parse(column: str, raw: str) -> Any:
    if column in _STR_COLUMNS:
        return raw
    if raw == "":
        return None
    return int(raw) if column in _INT_COLUMNS else float(raw)


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a results.csv or curves.csv with typed values: counts and steps as int,
    budget, FLOPs and losses as float, empty cells as None. Raises ValueError naming the
    file (and line) when the header or a value is not what `write_results` writes."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if header not in (RESULT_COLUMNS, CURVE_COLUMNS):
            raise ValueError(f"{path}: header {','.join(header)!r} is neither results.csv's "
                             f"({','.join(RESULT_COLUMNS)}) nor curves.csv's "
                             f"({','.join(CURVE_COLUMNS)}); write it with `lm sweep status`")
        rows = []
        for line, values in enumerate(reader, start=2):
            if len(values) != len(header):
                raise ValueError(f"{path}:{line}: {len(values)} values for {len(header)} columns")
            try:
                rows.append({c: _parse(c, v) for c, v in zip(header, values)})
            except ValueError as err:
                raise ValueError(f"{path}:{line}: {err}") from None
    return rows
