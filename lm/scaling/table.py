"""Scaling-law data as numpy arrays: any CSV by column name, a sweep workdir by convention.

A sweep workdir DIR holds `DIR/results.csv` (one row per run, `RESULTS_COLUMNS`) and
`DIR/curves.csv` (one row per logged train step, `CURVES_COLUMNS`); only runs with status
"done" are read. Which columns give N and C follows the fit's conventions (`sweep_columns`).
Also here: the subsets of points the Kaplan fits use (`lowest_loss_per`, `frontier`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lm.scaling.chinchilla import TrainingRun
from lm.scaling.design import DEFAULT_RTOL, group_close
from lm.scaling.laws import check_conventions

RESULTS_COLUMNS = ("run", "status", "kind", "budget", "d_model", "num_layers", "num_heads",
                   "num_kv_heads", "d_ff", "vocab_size", "seq_len", "batch_size", "steps",
                   "n_total", "n_non_embedding", "tokens", "flops_6n_total",
                   "flops_6n_non_embedding", "flops_exact", "final_train_loss", "heldout_loss")
CURVES_COLUMNS = ("run", "step", "tokens", "flops_6n_total", "flops_6n_non_embedding",
                  "flops_exact", "train_loss", "heldout_loss")
LOSS_KINDS = ("heldout", "train")


class TableError(ValueError):
    """A data file is missing, lacks a column or holds a bad value; the message names it."""


@dataclass(frozen=True)
class Points:
    """One point per run: N parameters, D tokens, C FLOPs, loss, and the IsoFLOP budget
    (nan where the point belongs to none). `notes` say how any column was derived."""

    N: np.ndarray
    D: np.ndarray
    C: np.ndarray
    loss: np.ndarray
    budget: np.ndarray
    columns: dict[str, str | None]  # role ("N", "D", "C", "loss", "budget") -> column read
    notes: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # where each point came from: "FILE line 7", "run NAME"

    def __len__(self) -> int:
        return int(self.N.size)

    def subset(self, keep: np.ndarray) -> Points:
        """The points selected by the boolean mask or index array `keep`."""
        labels = tuple(np.array(self.labels, dtype=object)[keep]) if self.labels else ()
        return replace(self, N=self.N[keep], D=self.D[keep], C=self.C[keep],
                       loss=self.loss[keep], budget=self.budget[keep], labels=labels)


# ---------------------------------------------------------------- reading CSV files

def read_rows(path: str | Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """The data rows of CSV `path` as dicts; TableError if it is missing, lacks a column of
    `required`, or has no data rows."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path} does not exist or is not a file")
    with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM is not part of the header
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise TableError(f"{path} lacks column(s) {missing}; its columns are {header}")
            rows = list(reader)
        except UnicodeDecodeError as err:
            raise TableError(f"{path} is not a UTF-8 text file (byte "
                             f"{err.object[err.start]:#04x} cannot be decoded); give a CSV "
                             "text file") from None
        except csv.Error as err:
            raise TableError(f"{path} line {reader.line_num}: not a CSV text line ({err})") \
                from None
    if not rows:
        raise TableError(f"{path} has a header but no data rows")
    return rows


def float_column(path: str | Path, rows: list[dict[str, str]], name: str, *,
                 optional: bool = False) -> np.ndarray:
    """Column `name` of `rows` as floats, each finite and > 0; TableError naming the file, line
    and value otherwise. With `optional`, empty cells are allowed and read as nan."""
    values = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        text = (row.get(name) or "").strip()
        if optional and not text:
            continue
        try:
            values[i] = float(text)
        except ValueError:
            pass
        if not (np.isfinite(values[i]) and values[i] > 0):
            empty = " (or empty)" if optional else ""
            raise TableError(f"{path} line {i + 2}: column {name!r} must be a number > 0"
                             f"{empty}; got {text!r}")
    return values


def csv_points(path: str | Path, *, n_col: str, loss_col: str, d_col: str | None = None,
               c_col: str | None = None, budget_col: str | None = None) -> Points:
    """Points from any CSV by column name. Needs D or C: a missing one is derived from
    C = 6ND, and `notes` say so (Epoch AI's Chinchilla extraction has N and C only)."""
    if d_col is None and c_col is None:
        raise TableError("give a token column (--d-col) or a FLOP column (--c-col); the "
                         "other is derived from C = 6ND")
    named = {"N": n_col, "D": d_col, "C": c_col, "loss": loss_col, "budget": budget_col}
    rows = read_rows(path, tuple(c for c in named.values() if c is not None))
    values = {role: float_column(path, rows, column)
              for role, column in named.items() if column is not None}
    N, notes = values["N"], []
    if d_col is None:
        values["D"] = values["C"] / (6.0 * N)
        notes.append(f"D derived as C / (6 N) from columns {c_col!r} and {n_col!r} (no token "
                     "column given)")
    if c_col is None:
        values["C"] = 6.0 * N * values["D"]
        notes.append(f"C computed as 6 N D from columns {n_col!r} and {d_col!r} (no FLOP "
                     "column given)")
    budget = values.get("budget", np.full(N.size, np.nan))
    labels = tuple(f"{path} line {i + 2}" for i in range(N.size))
    return Points(N, values["D"], values["C"], values["loss"], budget, named, tuple(notes),
                  labels)


# ---------------------------------------------------------------- sweep workdirs

def sweep_columns(n_convention: str, c_convention: str, loss: str) -> dict[str, str]:
    """The results.csv column of each role: N, D, C and loss under the given conventions."""
    check_conventions(n_convention, c_convention)
    if loss not in LOSS_KINDS:
        raise TableError(f"loss must be one of {LOSS_KINDS}; got {loss!r}")
    n_column = f"n_{n_convention}"
    c_column = f"flops_6n_{n_convention}" if c_convention == "6ND" else "flops_exact"
    loss_column = "heldout_loss" if loss == "heldout" else "final_train_loss"
    return {"N": n_column, "D": "tokens", "C": c_column, "loss": loss_column}


def _done_rows(workdir: Path, members: str = "best") -> tuple[list[dict[str, str]],
                                                             tuple[str, ...]]:
    """The done runs of results.csv and a note on which were kept. In a tuned sweep (a
    `best` column) `members` picks them: "best" (each point's best member), "all", or
    "FIELD=VALUE" (the members whose hyperparameter column hp.FIELD equals VALUE)."""
    path = workdir / "results.csv"
    rows = read_rows(path, RESULTS_COLUMNS)
    done = [row for row in rows if row["status"].strip() == "done"]
    if not done:
        statuses = sorted({row["status"] for row in rows})
        raise TableError(f"{path} has no runs with status 'done' (statuses: {statuses}); "
                         "wait for the sweep to finish some runs")
    if "best" not in rows[0] or members == "all":
        return done, ()
    points = len({row.get("point") or row["run"] for row in done})
    if members == "best":
        kept = [row for row in done if (row["best"] or "").strip() == "1"]
        how = "the best member of each point by held-out loss"
    else:
        field, _, value = members.partition("=")
        column = field if field.startswith("hp.") else f"hp.{field}"
        if not value or column not in rows[0]:
            known = sorted(c.removeprefix("hp.") for c in rows[0] if c.startswith("hp."))
            raise TableError(f"--members {members!r}: give best, all or FIELD=VALUE with FIELD "
                             f"one of {known} ({path}'s hp.* columns)")
        kept = [row for row in done if _same(row[column], value)]
        if not kept:
            seen = sorted({row[column] for row in done})
            raise TableError(f"--members {members!r}: no done run of {path} has {column} = "
                             f"{value}; it holds {seen}")
        how = f"the members with {column} = {value}"
    return kept, (f"tuned sweep: {len(kept)} of {len(done)} done runs fitted at {points} "
                  f"points, {how} (--members chooses)",)


def _same(cell: str, value: str) -> bool:
    """A results.csv cell equals a command-line value, as numbers where both are."""
    try:
        return float(cell) == float(value)
    except ValueError:
        return cell.strip() == value.strip()


def sweep_points(workdir: str | Path, *, n_convention: str, c_convention: str,
                 loss: str = "heldout", members: str = "best") -> Points:
    """The final point of every done run in `workdir`/results.csv (in a tuned sweep, of the
    members `members` picks: see `_done_rows`)."""
    workdir = Path(workdir)
    columns = sweep_columns(n_convention, c_convention, loss)
    rows, notes = _done_rows(workdir, members)
    path = workdir / "results.csv"
    values = {role: float_column(path, rows, column) for role, column in columns.items()}
    budget = float_column(path, rows, "budget", optional=True)
    return Points(values["N"], values["D"], values["C"], values["loss"], budget,
                  {**columns, "budget": "budget"}, notes,
                  tuple(f"run {row['run']}" for row in rows))


def sweep_runs(workdir: str | Path, *, n_convention: str, c_convention: str,
               loss: str = "heldout", members: str = "best") -> list[TrainingRun]:
    """The training curve of every done run, in results.csv order, from `workdir`/curves.csv.

    The heldout loss uses the eval steps (rows where it is not empty); the train loss every
    logged step. A step logged twice (a resumed run) keeps its last row. Under
    c_convention="exact" each run carries its `flops_exact`; under "6ND" FLOPs are 6 N D.
    """
    workdir = Path(workdir)
    n_column = sweep_columns(n_convention, c_convention, loss)["N"]
    results, _ = _done_rows(workdir, members)
    n_of = dict(zip((row["run"] for row in results),
                    float_column(workdir / "results.csv", results, n_column)))
    path = workdir / "curves.csv"
    loss_column = "heldout_loss" if loss == "heldout" else "train_loss"
    by_run: dict[str, dict[int, dict[str, str]]] = {name: {} for name in n_of}
    for row in read_rows(path, CURVES_COLUMNS):
        if row["run"] in by_run and (row[loss_column] or "").strip():
            by_run[row["run"]][int(row["step"])] = row
    runs = []
    for name, steps in by_run.items():
        rows = [steps[s] for s in sorted(steps)]
        if len(rows) < 2:
            hint = " (or pass loss='train' / --loss train)" if loss == "heldout" else ""
            raise TableError(f"{path}: run {name!r} has {len(rows)} row(s) with a "
                             f"{loss_column}; a training curve needs at least 2{hint}")
        flops = float_column(path, rows, "flops_exact") if c_convention == "exact" else None
        runs.append(TrainingRun(n_of[name], float_column(path, rows, "tokens"),
                                float_column(path, rows, loss_column), flops))
    return runs


def csv_runs(points: Points, c_convention: str) -> list[TrainingRun]:
    """Training curves from CSV points: the rows sharing an N value make one run, by tokens."""
    runs = []
    for n in np.unique(points.N):
        at = np.flatnonzero(points.N == n)
        at = at[np.argsort(points.D[at], kind="stable")]
        runs.append(TrainingRun(float(n), points.D[at], points.loss[at],
                                points.C[at] if c_convention == "exact" else None))
    return runs


# ---------------------------------------------------------------- any named columns

@dataclass(frozen=True)
class Columns:
    """Float columns by role ("lr", "U", ...), one row per run: `columns` names the column
    each role was read from, `labels` where each row came from."""

    values: dict[str, np.ndarray]
    columns: dict[str, str]
    labels: tuple[str, ...]
    notes: tuple[str, ...] = ()


def csv_columns(path: str | Path, named: dict[str, str | None]) -> Columns:
    """The columns `named` (role -> column; None: not given) of any CSV, each value > 0
    except in the optional "budget" column, where empty cells read as nan."""
    given = {role: column for role, column in named.items() if column is not None}
    rows = read_rows(path, tuple(given.values()))
    values = {role: float_column(path, rows, column, optional=role == "budget")
              for role, column in given.items()}
    return Columns(values, given, tuple(f"{path} line {i + 2}" for i in range(len(rows))))


def sweep_columns_of(workdir: str | Path, named: dict[str, str], *,
                     members: str = "all") -> Columns:
    """The columns `named` (role -> results.csv column) of a sweep's done runs (`members`
    as in `sweep_points`); "budget" may be empty (nan)."""
    workdir = Path(workdir)
    rows, notes = _done_rows(workdir, members)
    path = workdir / "results.csv"
    missing = [column for column in named.values() if column not in rows[0]]
    if missing:
        raise TableError(f"{path} lacks column(s) {missing}; its columns are {list(rows[0])}")
    values = {role: float_column(path, rows, column, optional=role == "budget")
              for role, column in named.items()}
    return Columns(values, dict(named), tuple(f"run {row['run']}" for row in rows), notes)


# ---------------------------------------------------------------- subsets for the KM laws

def drop_highest_loss(points: Points, k: int) -> Points:
    """`points` without its `k` highest losses, in their original order."""
    if not 0 <= k < len(points):
        raise TableError(f"drop_highest_loss must be in [0, {len(points)}) for {len(points)} "
                         f"points; got {k}")
    keep = np.sort(np.argsort(points.loss, kind="stable")[:len(points) - k])
    return points.subset(keep)


def lowest_loss_per(x: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of the lowest-loss point at each distinct value of `x`, by ascending x."""
    order = np.lexsort((loss, x))
    first = np.r_[True, np.diff(x[order]) != 0]
    return order[first]


def frontier(C: np.ndarray, loss: np.ndarray, *, rtol: float = DEFAULT_RTOL) -> np.ndarray:
    """Indices of the compute-efficient points, by ascending C: the lowest loss among C values
    within `rtol` of each other (an IsoFLOP budget's runs, `design.group_close`), kept when it
    is lower than every loss at less compute."""
    groups = group_close(C, rtol)
    keep, best = [], np.inf
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        winner = members[np.argmin(loss[members])]
        if loss[winner] < best:
            keep.append(winner)
            best = loss[winner]
    return np.array(keep, dtype=int)
