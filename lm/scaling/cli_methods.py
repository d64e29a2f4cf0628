"""The `lm fit` methods beyond the KM and Chinchilla laws: their flags' checks, their data and
their reports.

    lm fit --sweep DIR --method hparams [--near-optimal 0.0025] [--bootstrap K] [--out DIR]
    lm fit --csv F --method hparams --c-col C --lr-col LR --batch-col B --loss-col L
    lm fit --sweep DIR --method data_constrained [--fix-from FIT.json] [--bootstrap K]
    lm fit --csv F --method data_constrained --n-col N --d-col D --unique-col U --loss-col L

hparams (`lm.scaling.hparams`): eta_opt(C) and B_opt(C) through each budget's near-optimal
region; from a sweep, every member of a tuned sweep (lr from hp.train.lr, the batch in tokens
as batch_size x seq_len, grouped by the IsoFLOP budget column). data_constrained
(`lm.scaling.data_constrained`): R*_D (and R*_N) of Muennighoff et al. (2023); from a sweep,
an epochs sweep's runs (U from hp.data.unique_tokens, D from tokens).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from lm.scaling import reports
from lm.scaling.data_constrained import CONSTANTS
from lm.scaling.design import check_loss_varies
from lm.scaling.hparams import NEAR_OPTIMAL
from lm.scaling.reports import Options
from lm.scaling.table import (Columns, LOSS_KINDS, TableError, csv_columns, sweep_columns,
                              sweep_columns_of)

METHODS = ("hparams", "data_constrained")
CSV_COLUMNS = {"hparams": {"C": "c_col", "lr": "lr_col", "batch": "batch_col", "loss": "loss_col",
                           "budget": "budget_col"},
               "data_constrained": {"N": "n_col", "D": "d_col", "U": "unique_col",
                                    "loss": "loss_col"}}
OWN_FLAGS = {"hparams": ("lr_col", "batch_col", "near_optimal"),
             "data_constrained": ("unique_col", "fix_from")}
_OPTIONAL = {"budget"}


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def check_args(args: argparse.Namespace) -> None:
    """ValueError naming the flag that does not fit `args.method` (one of METHODS, or any
    other method given these methods' own flags)."""
    for method, flags in OWN_FLAGS.items():
        given = [_flag(f) for f in flags if getattr(args, f) is not None]
        if given and method != args.method:
            raise ValueError(f"{', '.join(given)} apply to --method {method} only; got --method "
                             f"{args.method}")
    if args.method not in METHODS:
        return
    for flag, value in (("--holdout-largest", args.holdout_largest),
                        ("--drop-highest-loss", args.drop_highest_loss)):
        if value:
            raise ValueError(f"{flag} applies to the KM and Chinchilla methods, not --method "
                             f"{args.method}")
    if args.method == "data_constrained" and args.at_flops is not None:
        raise ValueError("--at-flops applies to budgets; --method data_constrained reports "
                         "R*_D and R*_N, not an allocation")
    if args.near_optimal is not None and not 0 <= args.near_optimal < 1:
        raise ValueError(f"--near-optimal must lie in [0, 1) (0.0025: within 0.25% of a budget's "
                         f"best loss); got {args.near_optimal}")
    columns = CSV_COLUMNS[args.method]
    if args.sweep is not None:
        given = [_flag(f) for f in columns.values() if getattr(args, f) is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to --csv; with --sweep the columns "
                             "follow --n-convention, --c-convention and --loss")
        if args.loss is not None and args.loss not in LOSS_KINDS:
            raise ValueError(f"--loss must be one of {LOSS_KINDS}; got {args.loss!r}")
        if args.method == "hparams" and args.members == "best":
            raise ValueError("--method hparams fits every member of a tuned sweep (its regions "
                             "are made of them); drop --members best")
        return
    if args.loss is not None or args.members is not None:
        raise ValueError("--loss and --members apply to --sweep; with --csv name the loss "
                         "column with --loss-col")
    unused = [_flag(f) for f in ("n_col", "d_col", "c_col", "budget_col")
              if f not in columns.values() and getattr(args, f) is not None]
    if unused:
        raise ValueError(f"{', '.join(unused)} do not apply to --method {args.method}; it reads "
                         f"{', '.join(_flag(f) for f in columns.values())}")
    missing = [_flag(f) for role, f in columns.items()
               if role not in _OPTIONAL and getattr(args, f) is None]
    if missing:
        raise ValueError(f"--csv with --method {args.method} needs {' and '.join(missing)}")


def _sweep_data(args: argparse.Namespace) -> Columns:
    loss = args.loss or "heldout"
    conv = sweep_columns(args.n_convention, args.c_convention, loss)
    if args.method == "hparams":
        named = {"C": conv["C"], "lr": "hp.train.lr", "batch": "batch_size", "seq_len": "seq_len",
                 "loss": conv["loss"], "budget": "budget"}
        data = sweep_columns_of(args.sweep, named, members=args.members or "all")
        v = data.values
        v["batch"] = v["batch"] * v.pop("seq_len")
        data.columns["batch"] = "batch_size x seq_len"
        del data.columns["seq_len"]
        return data
    named = {"N": conv["N"], "D": "tokens", "U": "hp.data.unique_tokens", "loss": conv["loss"]}
    try:
        return sweep_columns_of(args.sweep, named, members=args.members or "best")
    except TableError as err:
        if "hp.data.unique_tokens" in str(err):
            raise TableError(f"{err} (an epochs sweep, kind 'epochs', writes it: the unique "
                             "tokens each run repeats)") from None
        raise


def fixed_constants(path: Path, n_convention: str) -> dict[str, float]:
    """E, A, B, alpha, beta from `path`: an `lm fit` report (approach3, or all: its approach3)
    or any JSON object holding them, under "params" or at its top level."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--fix-from {path}: not a readable JSON file ({err})") from None
    if isinstance(doc, dict) and "approach3" in doc.get("methods", {}):
        doc = doc["methods"]["approach3"] | {"n_convention": doc.get("n_convention")}
    params = doc.get("params", doc) if isinstance(doc, dict) else {}
    missing = [name for name in CONSTANTS if not isinstance(params.get(name), (int, float))]
    if missing:
        raise ValueError(f"--fix-from {path} has no number for {missing} (give an `lm fit "
                         "--method approach3` report, or a JSON object with E, A, B, alpha, beta)")
    fitted_in = doc.get("n_convention")
    if fitted_in is not None and fitted_in != n_convention:
        raise ValueError(f"--fix-from {path} was fitted with N counting {fitted_in} parameters; "
                         f"this fit counts {n_convention} (--n-convention): A is in those units")
    return {name: float(params[name]) for name in CONSTANTS}


def run(args: argparse.Namespace, options: Options) -> tuple[dict, list[str], dict]:
    """(source, notes, body) of the report of args.method, one of METHODS."""
    if args.csv is not None:
        named = {role: getattr(args, flag) for role, flag in CSV_COLUMNS[args.method].items()}
        data = csv_columns(args.csv, named)
        source, file = {"csv": str(args.csv), "columns": data.columns}, args.csv
    else:
        data = _sweep_data(args)
        source = {"sweep": str(args.sweep), "loss": args.loss or "heldout",
                  "columns": data.columns}
        file = args.sweep / "results.csv"
    check_loss_varies(data.values["loss"], f"{file} column {data.columns['loss']!r}")
    notes = list(data.notes)
    if args.method == "hparams":
        at_flops = None if args.at_flops is None else np.array(args.at_flops, dtype=float)
        tolerance = NEAR_OPTIMAL if args.near_optimal is None else args.near_optimal
        return source, notes, reports.hparams(data, options, at_flops, tolerance)
    constants = None
    if args.fix_from is not None:
        constants = fixed_constants(args.fix_from, options.n_convention)
        notes.append(f"E, A, B, alpha, beta fixed from {args.fix_from}; only R*_D and R*_N fitted")
    else:
        notes.append("E, A, B, alpha, beta fitted jointly with R*_D (and R*_N), started from "
                     "approach 3 on the runs that saw each token once")
    return source, notes, reports.data_constrained(data, options, constants)


def _number(value) -> str:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "-" if missing else f"{value:.4g}"


def table(report: dict) -> str:
    """The stderr table of an hparams or data_constrained report."""
    intervals = report.get("bootstrap", {}).get("intervals", {})
    rows = [f"{'parameter':<20} {'estimate':>10} {'95% interval':>22}"]
    for name, value in report["params"].items():
        i = intervals.get(name)
        span = f"{_number(i['lower'])} - {_number(i['upper'])}" if i else ""
        rows.append(f"{name:<20} {_number(value):>10} {span:>22}")
    if report["method"] == "hparams":
        b = report["budgets"]
        rows += ["", f"{'budget':>10} {'runs':>5} {'near':>5} {'best loss':>10} {'lr_opt':>10} "
                 f"{'batch_opt':>10}"]
        rows += [f"{c:>10.4g} {n:>5} {k:>5} {loss:>10.4f} {lr:>10.4g} {batch:>10.4g}"
                 for c, n, k, loss, lr, batch in zip(b["budget"], b["n_runs"], b["n_near"],
                                                     b["best_loss"], b["lr_opt"], b["batch_opt"])]
    return "\n".join(rows)
