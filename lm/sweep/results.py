"""A sweep's results: DIR/results.csv (one row per run) and DIR/curves.csv (one row per
logged train step of every done run), the inputs of the Kaplan and Chinchilla fits.

results.csv: the run's plan (shape, counts, tokens = steps * batch_size * seq_len, compute
as 6 N D with the total and the non-embedding N, and the exact Chinchilla appendix-F count)
for every run, and its losses for done runs: final_train_loss is the mean train loss over
the last 10% of logged steps (at least one), heldout_loss the last evaluation's loss
(nats per token). `budget` is the IsoFLOP budget, empty for other kinds. Then:

    point          the sweep point the run belongs to: the run's own name, unless the sweep
                   tunes, when a point's members share it (lm.sweep.grid)
    best           for done runs, 1 for the member of its point with the lowest held-out loss
                   (the lowest final_train_loss where some done member of the point has no
                   held-out loss; ties go to the first in plan order), 0 for the others; empty
                   for runs not done. Untuned sweeps: 1 for every done run.
    hp.train.lr, hp.train.warmup_steps   the run's values, tuned or not
    hp.SECTION.FIELD   one column for each other field the sweep's rules or tune set, after
                   these (except train.batch_size and data.seq_len, which have their own
                   columns); an epochs sweep adds hp.data.unique_tokens, the unique tokens U
                   each run repeats (tokens / U epochs)

Files written before tuning existed (the first 21 columns) still read.

curves.csv: tokens and compute up to each logged step, the train loss there, and the
held-out loss at evaluation steps (empty elsewhere); for Chinchilla approach 1.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from lm.config import apply_overrides, default_config
from lm.files import atomic_write
from lm.scaling.counts import train_flops_per_token
from lm.sweep.plan import RunSpec, field_value
from lm.train.metrics import METRICS_FILE, read_metrics

RESULTS_FILE = "results.csv"
CURVES_FILE = "curves.csv"
UNTUNED_RESULT_COLUMNS = ("run", "status", "kind", "budget", "d_model", "num_layers", "num_heads",
                          "num_kv_heads", "d_ff", "vocab_size", "seq_len", "batch_size", "steps",
                          "n_total", "n_non_embedding", "tokens", "flops_6n_total",
                          "flops_6n_non_embedding", "flops_exact", "final_train_loss",
                          "heldout_loss")  # results.csv before tuned sweeps
HPARAM_PREFIX = "hp."
_HPARAMS = ("train.lr", "train.warmup_steps")  # always written
_HAVE_COLUMNS = ("train.batch_size", "data.seq_len")  # as batch_size and seq_len
RESULT_COLUMNS = (*UNTUNED_RESULT_COLUMNS, "point", "best", *(HPARAM_PREFIX + f for f in _HPARAMS))
CURVE_COLUMNS = ("run", "step", "tokens", "flops_6n_total", "flops_6n_non_embedding", "flops_exact",
                 "train_loss", "heldout_loss")
_INT_COLUMNS = {"d_model", "num_layers", "num_heads", "num_kv_heads", "d_ff", "vocab_size", "seq_len",
                "batch_size", "steps", "n_total", "n_non_embedding", "tokens", "step", "best"}
_STR_COLUMNS = {"run", "status", "kind", "point"}
FINAL_FRACTION = 0.1  # final_train_loss averages this fraction of the logged steps


def final_train_loss(losses: Sequence[float]) -> float:
    """Mean of the last 10% of `losses` (at least the last one)."""
    count = max(1, int(len(losses) * FINAL_FRACTION))
    return sum(losses[-count:]) / count


def flops_per_token(spec: RunSpec) -> dict[str, float]:
    """Training FLOPs per token of a run in the three conventions of the flops_* columns."""
    cfg = spec.config()
    return {"flops_6n_total": 6.0 * spec.n_total, "flops_6n_non_embedding": 6.0 * spec.n_non_embedding,
            "flops_exact": train_flops_per_token(cfg.model, cfg.data.seq_len)}


def hparam_fields(fields: Iterable[str]) -> tuple[str, ...]:
    """The fields with an hp.* column in results.csv when a sweep's rules and tune set
    `fields`: train.lr and train.warmup_steps always, then every other field of `fields`
    that has no column of its own, in order."""
    return (*_HPARAMS, *dict.fromkeys(f for f in fields if f not in _HPARAMS + _HAVE_COLUMNS))


def result_columns(specs: Sequence[RunSpec]) -> tuple[str, ...]:
    """results.csv's columns for a sweep's runs: RESULT_COLUMNS, then an hp.* column for
    every other field their rules or tune set that has no column of its own."""
    fields = hparam_fields(f for spec in specs for f in spec.hparams)
    return (*UNTUNED_RESULT_COLUMNS, "point", "best", *(HPARAM_PREFIX + f for f in fields))


def selection_loss(rows: Sequence[dict[str, Any]]) -> str:
    """The loss column that picks the best of a point's done members (`rows`): heldout_loss
    when every one has it, else final_train_loss."""
    return "heldout_loss" if all(row["heldout_loss"] is not None for row in rows) else "final_train_loss"


def _mark_best(rows: Sequence[dict[str, Any]]) -> None:
    """Set `best` in result rows (in plan order); see the module docstring."""
    points: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["status"] == "done":
            points.setdefault(row["point"], []).append(row)
    for done in points.values():
        loss = selection_loss(done)
        winner = min(done, key=lambda r: r[loss] if math.isfinite(r[loss]) else math.inf)
        for row in done:
            row["best"] = int(row is winner)


def _rows(kind: str, runs: Sequence[tuple[RunSpec, str, Path]],
          columns: Sequence[str]) -> tuple[list[dict], list[dict]]:
    results, curves = [], []
    hparams = [c for c in columns if c.startswith(HPARAM_PREFIX)]
    for spec, status, run_dir in runs:
        cfg = spec.config()
        m, seq_len, batch = cfg.model, cfg.data.seq_len, cfg.train.batch_size
        per_token = flops_per_token(spec)
        row = {"run": spec.name, "status": status, "kind": kind,
               "budget": spec.budget, "d_model": m.d_model, "num_layers": m.num_layers,
               "num_heads": m.num_heads, "num_kv_heads": m.num_kv_heads, "d_ff": m.d_ff,
               "vocab_size": m.vocab_size, "seq_len": seq_len, "batch_size": batch,
               "steps": cfg.train.steps, "n_total": spec.n_total,
               "n_non_embedding": spec.n_non_embedding, "tokens": spec.tokens,
               **{k: v * spec.tokens for k, v in per_token.items()},
               "final_train_loss": None, "heldout_loss": None, "point": spec.point, "best": None,
               **{c: field_value(cfg, c.removeprefix(HPARAM_PREFIX)) for c in hparams}}
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
    _mark_best(results)
    return results, curves


def _cell(value: Any) -> Any:
    """A CSV cell: floats exact, tuples (of tuple config fields) as "a,b" like the command line."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


def _csv_bytes(columns: Sequence[str], rows: Sequence[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    return out.getvalue().encode("utf-8")


def write_results(workdir: Path, kind: str,
                  runs: Sequence[tuple[RunSpec, str, Path]]) -> tuple[Path, Path]:
    """Write DIR/results.csv and DIR/curves.csv atomically for a sweep of `kind` from its
    runs as (spec, status, run workdir), in plan order. Returns both paths."""
    workdir = Path(workdir)
    columns = result_columns([spec for spec, _, _ in runs])
    results, curves = _rows(kind, runs, columns)
    paths = workdir / RESULTS_FILE, workdir / CURVES_FILE
    for path, header, rows in zip(paths, (columns, CURVE_COLUMNS), (results, curves)):
        with atomic_write(path) as f:
            f.write(_csv_bytes(header, rows))
    return paths


def _parse(column: str, raw: str, defaults: Any) -> Any:
    if column in _STR_COLUMNS:
        return raw
    if raw == "":
        return None
    if column.startswith(HPARAM_PREFIX):  # typed as its config field, via a config override
        field = column.removeprefix(HPARAM_PREFIX)
        return field_value(apply_overrides(defaults, [f"--config.{field}={raw}"]), field)
    return int(raw) if column in _INT_COLUMNS else float(raw)


def _known_header(header: tuple[str, ...]) -> bool:
    tuned = header[:len(RESULT_COLUMNS)] == RESULT_COLUMNS and all(
        c.startswith(HPARAM_PREFIX) for c in header[len(RESULT_COLUMNS):])
    return tuned or header in (UNTUNED_RESULT_COLUMNS, CURVE_COLUMNS)


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a results.csv or curves.csv with typed values: counts, steps and best as
    int, budget, FLOPs and losses as float, hp.* columns as their config field's type, empty
    cells as None. Raises ValueError naming the file (and line) when the header or a value
    is not what `write_results` writes."""
    path = Path(path)
    defaults = default_config()
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if not _known_header(header):
            raise ValueError(f"{path}: header {','.join(header)!r} is neither results.csv's "
                             f"({','.join(RESULT_COLUMNS)}[,{HPARAM_PREFIX}SECTION.FIELD...]; "
                             f"before tuned sweeps up to heldout_loss) nor curves.csv's "
                             f"({','.join(CURVE_COLUMNS)}); write it with `lm sweep status`")
        rows = []
        for line, values in enumerate(reader, start=2):
            if len(values) != len(header):
                raise ValueError(f"{path}:{line}: {len(values)} values for {len(header)} columns")
            try:
                rows.append({c: _parse(c, v, defaults) for c, v in zip(header, values)})
            except ValueError as err:
                raise ValueError(f"{path}:{line}: {err}") from None
    return rows
