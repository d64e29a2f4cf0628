"""`lm fit`: fit Kaplan (KM) or Chinchilla scaling laws to a CSV file or a sweep workdir.

    lm fit --csv points.csv --n-col N --d-col D --loss-col loss --method approach3
    lm fit --sweep runs/sweep --method approach2 --bootstrap 200 --at-flops 1e21 --out plots/
    lm fit --sweep runs/sweep --method all --holdout-largest 1 --bootstrap 200
    lm fit --sweep runs/tuned --method hparams --bootstrap 200 --out plots/
    lm fit --sweep runs/epochs --method data_constrained --fix-from approach3.json

Methods: km (L(N), L(D), L(C) and L(N, D), as far as the data allows), approach1 (loss
envelope of training curves), approach2 (IsoFLOP parabolas), approach3 (parametric
E + A/N^alpha + B/D^beta), all (approaches 1-3 side by side), hparams (learning-rate and
batch-size laws, eta_opt(C) and B_opt(C), through each budget's near-optimal runs, as DeepSeek
LLM 2024), data_constrained (R*_D and R*_N of Muennighoff et al. 2023 on top of the Chinchilla
form: runs that repeat their unique tokens; lm.scaling.cli_methods). Every Chinchilla approach
predicts the compute-optimal loss at --at-flops (derived.loss_opt). --holdout-largest K
fits on all but the K largest budgets and adds a backtest of those. Prints one JSON document
on stdout; warnings and tables go to stderr; with --out, writes the plots there. Bad input
exits with status 2 and one line naming the file, column or argument.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from lm.files import json_safe
from lm.scaling import cli_methods, km_report
from lm.scaling.compare_plot import comparison
from lm.scaling.design import (DEFAULT_RTOL, IdentifiabilityWarning, check_loss_varies,
                               duplicate_rows)
from lm.scaling.fit_job import CHINCHILLA, FitData, backtest, compare, largest_budget, method_report
from lm.scaling.laws import C_CONVENTIONS, N_CONVENTIONS, check_conventions
from lm.scaling.reports import Options
from lm.scaling.summary import backtest_table, methods_table
from lm.scaling.table import (LOSS_KINDS, Points, csv_points, drop_highest_loss, sweep_points,
                              sweep_runs)

METHODS = ("km", *CHINCHILLA, "all", *cli_methods.METHODS)
CSV_FLAGS = ("n_col", "d_col", "c_col", "loss_col", "budget_col")


class FitError(ValueError):
    """Arguments that cannot work together; the message names them and the fix."""


# ---------------------------------------------------------------- arguments

def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `fit` subcommand to the `lm` parser's subparsers."""
    parser = subparsers.add_parser(
        "fit", help="fit KM or Chinchilla scaling laws to a CSV file or a sweep workdir",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, metavar="FILE", help="a CSV of points, columns "
                        "named by --n-col, --d-col and/or --c-col, --loss-col")
    source.add_argument("--sweep", type=Path, metavar="DIR", help="a sweep workdir with "
                        "results.csv (and curves.csv for approach1); runs with status done")
    parser.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)} (all: "
                        "approaches 1-3 side by side)")
    parser.add_argument("--n-col", metavar="COL", help="--csv: parameter count column")
    parser.add_argument("--d-col", metavar="COL", help="--csv: token column; without it "
                        "D = C / (6N)")
    parser.add_argument("--c-col", metavar="COL", help="--csv: FLOP column; without it "
                        "C = 6ND")
    parser.add_argument("--loss-col", metavar="COL", help="--csv: loss column (nats/token)")
    parser.add_argument("--budget-col", metavar="COL", help="--csv: IsoFLOP budget column; "
                        "without it points with equal C (within --budget-rtol) form a profile")
    parser.add_argument("--lr-col", metavar="COL", help="--csv, hparams: peak learning rate")
    parser.add_argument("--batch-col", metavar="COL", help="--csv, hparams: batch, in tokens")
    parser.add_argument("--unique-col", metavar="COL", help="--csv, data_constrained: unique "
                        "tokens U each run repeats (D / U epochs)")
    parser.add_argument("--near-optimal", type=float, metavar="TOL", help="hparams: a budget's "
                        "near-optimal region holds its runs within TOL (relative) of its best "
                        "loss (default 0.0025, DeepSeek's 0.25%%)")
    parser.add_argument("--fix-from", type=Path, metavar="JSON", help="data_constrained: take "
                        "E, A, B, alpha, beta from this `lm fit --method approach3` report (its "
                        "params) and fit only R*_D and R*_N (default: fit all jointly)")
    parser.add_argument("--budget-rtol", type=float, default=DEFAULT_RTOL, metavar="R",
                        help="budgets (and model sizes) within this relative tolerance are one "
                        f"(default {DEFAULT_RTOL})")
    parser.add_argument("--keep-unbracketed", action="store_true", help="approach2: keep "
                        "budgets whose parabola minimum lies outside the sampled N (left out "
                        "by default: their minima are extrapolations)")
    parser.add_argument("--holdout-largest", type=int, default=0, metavar="K",
                        help="backtest: fit on all but the K largest budgets and predict "
                        "their compute-optimal loss")
    parser.add_argument("--members", metavar="WHICH", help="--sweep, a tuned sweep: best "
                        "(default: each point's best member by held-out loss), all, or "
                        "FIELD=VALUE (e.g. train.lr=0.003: the members with that value)")
    parser.add_argument("--loss", help="--sweep: heldout (default; heldout_loss) or train "
                        "(final_train_loss, and train_loss along curves)")
    parser.add_argument("--n-convention", help="N counts total or non_embedding parameters "
                        "(default: total; with --sweep, the convention the sweep was planned in)")
    parser.add_argument("--c-convention", help="C is 6ND or exact FLOPs (default: 6ND; with "
                        "--sweep, the convention the sweep sized its runs by)")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="K",
                        help="K > 0 adds 95%% bootstrap intervals from K resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                        help="leave out the K highest-loss points (Epoch AI drops 5)")
    parser.add_argument("--at-flops", type=float, nargs="+", metavar="C", help="compute "
                        "budgets for N_opt, D_opt and loss_opt (default: the largest budget "
                        "fitted)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="write PNG plots here")
    parser.set_defaults(run=run)


def _check_args(args: argparse.Namespace) -> None:
    if args.method not in METHODS:
        raise FitError(f"--method must be one of {', '.join(METHODS[:5])}; got {args.method!r} "
                       f"(or one of {', '.join(cli_methods.METHODS)})")
    try:
        check_conventions(args.n_convention, args.c_convention)
    except ValueError as err:
        raise FitError(f"--n-convention must be one of {N_CONVENTIONS} and --c-convention one "
                       f"of {C_CONVENTIONS}; got {args.n_convention!r}, "
                       f"{args.c_convention!r}") from err
    if args.bootstrap < 0 or args.bootstrap == 1:
        raise FitError(f"--bootstrap must be 0 (no intervals) or >= 2; got {args.bootstrap}")
    if args.drop_highest_loss < 0:
        raise FitError(f"--drop-highest-loss must be >= 0; got {args.drop_highest_loss}")
    if args.method == "approach1" and args.drop_highest_loss:
        raise FitError("--drop-highest-loss drops points; approach1 fits whole curves")
    if args.at_flops is not None and not all(math.isfinite(c) and c > 0 for c in args.at_flops):
        raise FitError(f"--at-flops must all be finite and > 0; got "
                       f"{' '.join(str(c) for c in args.at_flops)}")
    if not 0 <= args.budget_rtol < 1:
        raise FitError(f"--budget-rtol must lie in [0, 1); got {args.budget_rtol}")
    if args.holdout_largest < 0:
        raise FitError(f"--holdout-largest must be >= 1 (0: no backtest); got "
                       f"{args.holdout_largest}")
    if args.holdout_largest and args.method == "km":
        raise FitError("--holdout-largest backtests approach1, approach2, approach3 or all; km "
                       "predicts no compute-optimal loss")
    cli_methods.check_args(args)
    if args.method in cli_methods.METHODS:
        return
    if args.sweep is not None:
        given = [f"--{name.replace('_', '-')}" for name in CSV_FLAGS
                 if getattr(args, name) is not None]
        if given:
            raise FitError(f"{', '.join(given)} apply to --csv; with --sweep the columns follow "
                           "--n-convention, --c-convention and --loss")
        if args.loss is not None and args.loss not in LOSS_KINDS:
            raise FitError(f"--loss must be one of {LOSS_KINDS}; got {args.loss!r}")
        return
    if args.loss is not None:
        raise FitError("--loss applies to --sweep; with --csv name the column with --loss-col")
    if args.members is not None:
        raise FitError("--members applies to --sweep (a tuned sweep's members)")
    missing = [f"--{name.replace('_', '-')}" for name in ("n_col", "loss_col")
               if getattr(args, name) is None]
    if missing:
        raise FitError(f"--csv needs {' and '.join(missing)}")
    if args.c_convention == "exact" and (args.c_col is None or args.d_col is None):
        raise FitError("--c-convention exact needs both --c-col and --d-col (deriving one from "
                       "the other assumes C = 6ND)")


# ---------------------------------------------------------------- data

def _loss(args: argparse.Namespace) -> str:
    """Which sweep loss to fit: --loss, heldout by default."""
    return args.loss or "heldout"


def _data(args: argparse.Namespace) -> tuple[FitData, dict, list[str]]:
    """The points (and curves) to fit, where they came from, and notes on derived columns."""
    if args.csv is not None:
        points = csv_points(args.csv, n_col=args.n_col, loss_col=args.loss_col,
                            d_col=args.d_col, c_col=args.c_col, budget_col=args.budget_col)
        notes = list(points.notes)
        if args.budget_col is None and args.method in ("approach2", "all"):
            points = replace(points, budget=points.C)
            notes.append(f"IsoFLOP profiles are points with equal values of C (column "
                         f"{points.columns['C']!r}, within {args.budget_rtol:g}; pass "
                         "--budget-col to group otherwise)")
        points = drop_highest_loss(points, args.drop_highest_loss)
        source = {"csv": str(args.csv), "columns": points.columns}
        return FitData(points, curves_from_rows=True), source, notes
    conv = {"n_convention": args.n_convention, "c_convention": args.c_convention,
            "loss": _loss(args), "members": args.members or "best"}
    points = sweep_points(args.sweep, **conv)
    if args.method == "approach2" and not np.isfinite(points.budget).any():
        raise FitError(f"{args.sweep / 'results.csv'} has no done IsoFLOP runs (the budget "
                       "column is empty everywhere); approach2 needs them")
    runs = None
    if args.method == "approach1" or (args.method == "all" and not args.drop_highest_loss):
        try:
            runs = tuple(sweep_runs(args.sweep, **conv))
        except ValueError:  # no usable curves: "all" goes on without approach 1
            if args.method == "approach1":
                raise
    data = FitData(drop_highest_loss(points, args.drop_highest_loss), runs)
    source = {"sweep": str(args.sweep), "loss": _loss(args), "columns": points.columns}
    return data, source, list(points.notes)


def _warn_duplicates(points: Points) -> None:
    columns = {"N": points.N, "D": points.D, "C": points.C, "loss": points.loss}
    labels = points.labels or tuple(f"point {i}" for i in range(len(points)))
    for message in duplicate_rows(columns, labels):
        warnings.warn(message, IdentifiabilityWarning, stacklevel=2)


def _six_nd_note(args: argparse.Namespace) -> list[str]:
    """The caveat for allocations derived in closed form from a law fitted to exact FLOPs."""
    if args.c_convention != "exact" or args.method not in ("approach3", "km", "all"):
        return []
    return ["N_opt and D_opt minimise the fitted law subject to C = 6ND, although the data's C "
            "counts exact FLOPs (approach 3's loss_opt follows the data's FLOPs per parameter "
            "and token, derived.flops_ratio)"]


def _body(args: argparse.Namespace, data: FitData, options: Options) -> dict:
    at_flops = None if args.at_flops is None else np.array(args.at_flops, dtype=float)
    k = args.holdout_largest
    if args.method == "all":
        body = compare(data, options, k, at_flops)
        if options.out is not None:
            body["plots"] = [str(options.out / "compare.png")]
            comparison(data.points, body["methods"], rtol=options.rtol,
                       c_convention=options.c_convention, path=options.out / "compare.png")
        return body
    if args.method == "km":
        if at_flops is None:
            at_flops = np.array([float(data.points.C.max())])
        return km_report.km(data.points, options, at_flops)
    if k:
        body = backtest(args.method, data, options, k, at_flops)
        if options.out is not None:
            body["plots"].append(str(options.out / "backtest.png"))
            comparison(data.points, {args.method: body}, rtol=options.rtol,
                       c_convention=options.c_convention, path=options.out / "backtest.png")
        return body
    if at_flops is None:
        at_flops = np.array([largest_budget(data, args.method, options)])
    return method_report(args.method, data, options, at_flops)[0]


# ---------------------------------------------------------------- command

def _default_conventions(args: argparse.Namespace) -> None:
    """Fill unset conventions: a sweep's own (from DIR/sweep.json), else total N and 6ND."""
    planned = {}
    plan_path = args.sweep / "sweep.json" if args.sweep is not None else None
    if plan_path is not None and plan_path.exists():
        sweep = json.loads(plan_path.read_text()).get("sweep", {})
        planned = {"n": sweep.get("n_kind"),
                   "c": {"exact": "exact", "6n": "6ND"}.get(sweep.get("flops"))}
    args.n_convention = args.n_convention or planned.get("n") or "total"
    args.c_convention = args.c_convention or planned.get("c") or "6ND"


def fit_report(args: argparse.Namespace) -> dict:
    """Run the fit `args` describe; the JSON-ready report (plots written when args.out).
    Warnings (identifiability, and numerical ones) are collected into report["warnings"]."""
    _default_conventions(args)
    _check_args(args)
    options = Options(args.n_convention, args.c_convention, args.bootstrap, args.seed,
                      args.keep_unbracketed, args.budget_rtol, args.out)
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        if args.method in cli_methods.METHODS:
            source, notes, body = cli_methods.run(args, options)
        else:
            data, source, notes = _data(args)
            file = args.csv if args.csv is not None else args.sweep / "results.csv"
            check_loss_varies(data.points.loss, f"{file} column {source['columns']['loss']!r}")
            _warn_duplicates(data.points)
            body = _body(args, data, options)
    messages = [str(w.message) if issubclass(w.category, IdentifiabilityWarning)
                else f"{w.category.__name__}: {w.message}" for w in caught]
    report = {"method": args.method, **options.conv, "source": source,
              "notes": notes + _six_nd_note(args), **body,
              "warnings": list(dict.fromkeys(messages))}
    return json_safe(report)


def _tables(report: dict) -> str:
    """The human-readable tables for stderr: methods side by side, backtests."""
    if report["method"] in cli_methods.METHODS:
        return cli_methods.table(report)
    methods = report.get("methods") or ({report["method"]: report}
                                        if report["method"] in CHINCHILLA else {})
    text = []
    if report["method"] == "all":
        text.append(methods_table(methods))
    if any("backtest" in body for body in methods.values()):
        text.append(backtest_table(methods))
    return "\n".join(text)


def run(args: argparse.Namespace, overrides: Sequence[str] = ()) -> None:
    """Entry point set by `register`: print the report; on bad input one line, exit 2."""
    try:
        if overrides:
            raise FitError(f"--config.* overrides do not apply to lm fit; got {overrides[0]}")
        report = fit_report(args)
    except ValueError as err:  # TableError, FitError and the fitters' named argument checks
        print(f"lm fit: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    for message in report["warnings"]:
        print(f"lm fit: warning: {message}", file=sys.stderr)
    tables = _tables(report)
    if tables:
        print(tables, file=sys.stderr)
    print(json.dumps(report, indent=2, allow_nan=False))


def main(argv: Sequence[str] | None = None) -> int:
    """`lm fit ...` without the rest of the `lm` command: main(["fit", "--csv", ...])."""
    parser = argparse.ArgumentParser(prog="lm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.run(args, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
