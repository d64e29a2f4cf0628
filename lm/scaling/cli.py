"""`lm fit`: fit Kaplan (KM) or Chinchilla scaling laws to a CSV file or a sweep workdir.

    lm fit --csv points.csv --n-col N --d-col D --loss-col loss --method approach3
    lm fit --sweep runs/sweep --method approach2 --bootstrap 200 --at-flops 1e21 --out plots/

Methods: km (L(N), L(D), L(C) and L(N, D), as far as the data allows), approach1 (loss
envelope of training curves), approach2 (IsoFLOP parabolas), approach3 (parametric
E + A/N^alpha + B/D^beta). Prints one JSON document on stdout; with --out, writes the plots
there. Bad input exits with status 2 and one line naming the file, column or argument.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lm.scaling import plots
from lm.scaling.bootstrap import (BootstrapResult, bootstrap_approach1, bootstrap_approach2,
                                  bootstrap_approach3, percentile_interval)
from lm.scaling.chinchilla import (Approach1Fit, Approach2Fit, Approach3Fit,
                                   IdentifiabilityWarning, allocate, fit_approach1, fit_approach2,
                                   fit_approach3, predict)
from lm.scaling.fit_km import KMFit, fit_km_c, fit_km_d, fit_km_n, fit_km_nd
from lm.scaling.laws import C_CONVENTIONS, N_CONVENTIONS, check_conventions, km_loss_nd
from lm.scaling.table import (LOSS_KINDS, Points, csv_points, csv_runs,
                              drop_highest_loss, frontier, lowest_loss_per, sweep_points,
                              sweep_runs)

METHODS = ("km", "approach1", "approach2", "approach3")
LEVEL = 0.95  # bootstrap interval coverage
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
    parser.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    parser.add_argument("--n-col", metavar="COL", help="--csv: parameter count column")
    parser.add_argument("--d-col", metavar="COL", help="--csv: token column; without it "
                        "D = C / (6N)")
    parser.add_argument("--c-col", metavar="COL", help="--csv: FLOP column; without it "
                        "C = 6ND")
    parser.add_argument("--loss-col", metavar="COL", help="--csv: loss column (nats/token)")
    parser.add_argument("--budget-col", metavar="COL", help="--csv, approach2: IsoFLOP "
                        "budget column; without it points with equal C form a profile")
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
                        "budgets for N_opt and D_opt (default: the largest C in the data)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="write PNG plots here")
    parser.set_defaults(run=run)


def _check_args(args: argparse.Namespace) -> None:
    if args.method not in METHODS:
        raise FitError(f"--method must be one of {', '.join(METHODS)}; got {args.method!r}")
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
    if args.at_flops is not None and not all(c > 0 for c in args.at_flops):
        raise FitError(f"--at-flops must all be > 0; got {args.at_flops}")
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
    missing = [f"--{name.replace('_', '-')}" for name in ("n_col", "loss_col")
               if getattr(args, name) is None]
    if missing:
        raise FitError(f"--csv needs {' and '.join(missing)}")
    if args.c_convention == "exact" and (args.c_col is None or args.d_col is None):
        raise FitError("--c-convention exact needs both --c-col and --d-col (deriving one from "
                       "the other assumes C = 6ND)")


# ---------------------------------------------------------------- data

def _points(args: argparse.Namespace) -> Points:
    if args.csv is not None:
        points = csv_points(args.csv, n_col=args.n_col, loss_col=args.loss_col,
                            d_col=args.d_col, c_col=args.c_col, budget_col=args.budget_col)
    else:
        points = sweep_points(args.sweep, n_convention=args.n_convention,
                              c_convention=args.c_convention, loss=_loss(args))
    return drop_highest_loss(points, args.drop_highest_loss)


def _loss(args: argparse.Namespace) -> str:
    """Which sweep loss to fit: --loss, heldout by default."""
    return args.loss or "heldout"


def _source(args: argparse.Namespace, points: Points | None) -> dict:
    if args.csv is not None:
        return {"csv": str(args.csv), "columns": points.columns}
    source = {"sweep": str(args.sweep), "loss": _loss(args)}
    if points is not None:
        source["columns"] = points.columns
    return source


def _six_nd_note(args: argparse.Namespace) -> list[str]:
    """The caveat for allocations derived in closed form from a law fitted to exact FLOPs."""
    if args.c_convention != "exact":
        return []
    return ["N_opt and D_opt minimise the fitted law subject to C = 6ND, although the data's C "
            "counts exact FLOPs"]


def _at_flops(args: argparse.Namespace, largest: float) -> np.ndarray:
    return np.array(args.at_flops if args.at_flops is not None else [largest], dtype=float)


def _flops_range(low: float, high: float, at_flops: np.ndarray) -> np.ndarray:
    return np.geomspace(min(low, at_flops.min()), max(high, at_flops.max()), 100)


# ---------------------------------------------------------------- JSON pieces

def _jsonable(value):
    """Floats, lists and dicts for json.dumps: arrays become lists, non-finite numbers null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _draw(out: Path, drawings: dict[str, Callable[[Path], object]]) -> list[str]:
    """Call each drawing with its path under `out`; the paths written."""
    for name, draw in drawings.items():
        draw(out / name)
    return [str(out / name) for name in drawings]


def _allocation(fit: Approach1Fit | Approach2Fit | Approach3Fit, at_flops: np.ndarray) -> dict:
    n_opt, d_opt = allocate(fit, at_flops)
    return {"a": fit.a, "b": fit.b, "at_flops": at_flops, "N_opt": n_opt, "D_opt": d_opt,
            "tokens_per_parameter": d_opt / n_opt}


def _intervals(result: BootstrapResult) -> dict:
    return {"n_resamples": result.n_resamples, "seed": result.seed, "level": result.level,
            "unit": result.unit,
            "intervals": {name: {"estimate": i.estimate, "lower": i.lower, "upper": i.upper}
                          for name, i in result.intervals.items()}}


# ---------------------------------------------------------------- Chinchilla approaches

def _approach1(args: argparse.Namespace, conv: dict, out: Path | None) -> dict:
    if args.csv is not None:
        points = _points(args)
        runs = csv_runs(points, args.c_convention)
    else:
        points = None
        runs = sweep_runs(args.sweep, loss=_loss(args), **conv)
    finals = [float(plots.run_flops(run)[-1]) for run in runs]
    at_flops = _at_flops(args, max(finals))
    result = None
    if args.bootstrap:
        result = bootstrap_approach1(runs, at_flops=at_flops, n_resamples=args.bootstrap,
                                     seed=args.seed, level=LEVEL, **conv)
        fit = result.fit
    else:
        fit = fit_approach1(runs, **conv)
    report = {"source": _source(args, points),
              "notes": list(points.notes) if points is not None else [],
              "n_points": fit.n_points, "n_runs": fit.n_runs,
              "params": {"a": fit.a, "n_coef": fit.n_coef, "b": fit.b, "d_coef": fit.d_coef},
              "derived": _allocation(fit, at_flops)}
    if result is not None:
        report["bootstrap"] = _intervals(result)
    if out is not None:
        report["plots"] = _draw(out, {
            "loss_vs_compute.png": lambda path: plots.loss_vs_compute(runs, fit, path=path),
            "allocation.png": lambda path: plots.allocation(
                {"approach 1": result or fit},
                _flops_range(min(finals), max(finals), at_flops), path=path),
            "residuals.png": lambda path: plots.residuals(
                fit.flops, fit.n_opt, allocate(fit, fit.flops)[0],
                x_label=plots.C_LABEL[fit.c_convention],
                title="envelope N_opt against its power law", path=path)})
    return report


def _approach2(args: argparse.Namespace, conv: dict, out: Path | None) -> dict:
    points = _points(args)
    notes = list(points.notes)
    if args.sweep is not None:
        points = points.subset(np.isfinite(points.budget))
        if not len(points):
            raise FitError(f"{args.sweep / 'results.csv'} has no done IsoFLOP runs (the budget "
                           "column is empty everywhere); approach2 needs them")
        budget = points.budget
    elif args.budget_col is None:
        budget = points.C
        notes.append(f"IsoFLOP profiles are points with equal values of C (column "
                     f"{points.columns['C']!r}; pass --budget-col to group otherwise)")
    else:
        budget = points.budget
    tokens = points.D if args.c_convention == "exact" else None
    at_flops = _at_flops(args, float(budget.max()))
    result = None
    if args.bootstrap:
        result = bootstrap_approach2(points.N, points.loss, budget, tokens=tokens,
                                     at_flops=at_flops, n_resamples=args.bootstrap,
                                     seed=args.seed, level=LEVEL, **conv)
        fit = result.fit
    else:
        fit = fit_approach2(points.N, points.loss, budget, tokens=tokens, **conv)
    report = {"source": _source(args, points), "notes": notes, "n_points": fit.n_points,
              "params": {"a": fit.a, "n_coef": fit.n_coef, "b": fit.b, "d_coef": fit.d_coef},
              "derived": _allocation(fit, at_flops),
              "profiles": {"budget": fit.budgets, "N_opt": fit.n_opt, "D_opt": fit.d_opt,
                           "loss_opt": fit.loss_opt, "excluded_budgets": fit.excluded_budgets}}
    if result is not None:
        report["bootstrap"] = _intervals(result)
    if out is not None:
        report["plots"] = _draw(out, {
            "isoflop.png": lambda path: plots.isoflop_profiles(points.N, points.loss, budget,
                                                               fit, path=path),
            "allocation.png": lambda path: plots.allocation(
                {"approach 2": result or fit},
                _flops_range(fit.budgets.min(), fit.budgets.max(), at_flops), path=path),
            "residuals.png": lambda path: plots.residuals(
                fit.budgets, fit.n_opt, allocate(fit, fit.budgets)[0],
                x_label=plots.C_LABEL[fit.c_convention],
                title="IsoFLOP minima against their power law", path=path)})
    return report


def _approach3(args: argparse.Namespace, conv: dict, out: Path | None) -> dict:
    points = _points(args)
    at_flops = _at_flops(args, float(points.C.max()))
    result = None
    if args.bootstrap:
        result = bootstrap_approach3(points.N, points.D, points.loss, at_flops=at_flops,
                                     n_resamples=args.bootstrap, seed=args.seed, level=LEVEL,
                                     **conv)
        fit = result.fit
    else:
        fit = fit_approach3(points.N, points.D, points.loss, **conv)
    derived = {"G": fit.G, **_allocation(fit, at_flops)} if np.isfinite(fit.G) else {}
    notes = list(points.notes) + _six_nd_note(args)
    report = {"source": _source(args, points), "notes": notes,
              "n_points": fit.n_points,
              "params": {"E": fit.E, "A": fit.A, "B": fit.B, "alpha": fit.alpha,
                         "beta": fit.beta},
              "derived": derived,
              "objective": {"sum_huber": fit.objective, "delta": fit.delta,
                            "n_starts": fit.n_starts}}
    if result is not None:
        report["bootstrap"] = _intervals(result)
    if out is not None:
        drawings = {
            "contours.png": lambda path: plots.approach3_contours(
                fit, points.N, points.D, points.loss, path=path),
            "residuals.png": lambda path: plots.residuals(
                points.N, points.loss, predict(fit, points.N, points.D),
                x_label=plots.N_LABEL[fit.n_convention],
                title="loss against the approach-3 fit", path=path)}
        if derived:
            drawings["allocation.png"] = lambda path: plots.allocation(
                {"approach 3": result or fit},
                _flops_range(points.C.min(), points.C.max(), at_flops), path=path)
        report["plots"] = _draw(out, drawings)
    return report


# ---------------------------------------------------------------- Kaplan laws

def km_allocation(params: dict[str, float], at_flops: np.ndarray) -> dict[str, np.ndarray]:
    """Minimum of KM's L(N, D) under C = 6ND: N_opt = (r Nc^r C / (6 Dc))^a with
    r = alpha_N / alpha_D and a = alpha_D / (alpha_N + alpha_D); D_opt = C / (6 N_opt)."""
    r = params["alpha_N"] / params["alpha_D"]
    a = 1.0 / (1.0 + r)
    n_opt = (r * params["Nc"] ** r * at_flops / (6.0 * params["Dc"])) ** a
    d_opt = at_flops / (6.0 * n_opt)
    return {"a": a, "b": 1.0 - a, "N_opt": n_opt, "D_opt": d_opt,
            "tokens_per_parameter": d_opt / n_opt}


def _km_laws(points: Points) -> dict[str, tuple[Callable[..., KMFit], tuple, str]]:
    """Each KM law: its fitter, the arrays it fits and which points those are."""
    by_n = lowest_loss_per(points.N, points.loss)
    by_d = lowest_loss_per(points.D, points.loss)
    by_c = frontier(points.C, points.loss)
    return {
        "km_n": (fit_km_n, (points.N[by_n], points.loss[by_n]),
                 "the lowest loss at each distinct N"),
        "km_d": (fit_km_d, (points.D[by_d], points.loss[by_d]),
                 "the lowest loss at each distinct D"),
        "km_c": (fit_km_c, (points.C[by_c], points.loss[by_c]),
                 "the compute-efficient frontier: points with a lower loss than any with "
                 "less compute"),
        "km_nd": (fit_km_nd, (points.N, points.D, points.loss), "every point"),
    }


def _km_values(fit: KMFit, at_flops: np.ndarray) -> dict:
    """The parameters of a KM fit, and for L(N, D) its compute-optimal allocation."""
    if fit.method == "km_nd":
        return {**fit.params, **km_allocation(fit.params, at_flops)}
    return dict(fit.params)


def _km_bootstrap(fitter: Callable[..., KMFit], arrays: tuple, conv: dict, fit: KMFit,
                  at_flops: np.ndarray, args: argparse.Namespace) -> dict:
    """Percentile intervals from refits to points resampled with replacement; a draw the law
    cannot be fitted to (say, one with a single distinct N) is redrawn, up to 10 K draws."""
    rng = np.random.default_rng(args.seed)
    size = arrays[0].size
    rows: list[dict] = []
    for _ in range(10 * args.bootstrap):
        draw = rng.integers(0, size, size)
        try:
            rows.append(_km_values(fitter(*(a[draw] for a in arrays), **conv), at_flops))
        except (ValueError, RuntimeError):
            continue
        if len(rows) == args.bootstrap:
            break
    else:
        raise FitError(f"{fit.method}: only {len(rows)} of {10 * args.bootstrap} bootstrap "
                       "draws could be fitted; too few points for intervals")
    intervals = {}
    for name, estimate in _km_values(fit, at_flops).items():
        i = percentile_interval(estimate, np.array([row[name] for row in rows]), LEVEL)
        intervals[name] = {"estimate": i.estimate, "lower": i.lower, "upper": i.upper}
    return {"n_resamples": args.bootstrap, "seed": args.seed, "level": LEVEL, "unit": "point",
            "intervals": intervals}


def _km(args: argparse.Namespace, conv: dict, out: Path | None) -> dict:
    points = _points(args)
    at_flops = _at_flops(args, float(points.C.max()))
    laws, skipped, drawings = {}, {}, {}
    for name, (fitter, arrays, selection) in _km_laws(points).items():
        try:
            fit = fitter(*arrays, **conv)
        except (ValueError, RuntimeError) as err:
            skipped[name] = str(err)
            continue
        law = {"params": fit.params, "rms_log_residual": fit.rms_log_residual,
               "n_points": fit.n_points, "points": selection}
        if name == "km_nd":
            law["derived"] = {"at_flops": at_flops, **km_allocation(fit.params, at_flops)}
            drawings["km_nd_residuals.png"] = lambda path, fit=fit: plots.residuals(
                points.C, points.loss, km_loss_nd(points.N, points.D, **fit.params),
                x_label=plots.C_LABEL[fit.c_convention], title="loss against KM L(N, D)",
                path=path)
        else:
            drawings[f"{name}.png"] = lambda path, fit=fit, arrays=arrays: plots.power_law(
                fit, *arrays, path=path)
        if args.bootstrap:
            law["bootstrap"] = _km_bootstrap(fitter, arrays, conv, fit, at_flops, args)
        laws[name] = law
    if not laws:
        raise FitError("no KM law could be fitted: " + "; ".join(
            f"{name}: {reason}" for name, reason in skipped.items()))
    notes = list(points.notes) + (_six_nd_note(args) if "km_nd" in laws else [])
    report = {"source": _source(args, points), "notes": notes, "n_points": len(points),
              "laws": laws, "skipped": skipped}
    if out is not None:
        report["plots"] = _draw(out, drawings)
    return report


# ---------------------------------------------------------------- command

FITTERS = {"km": _km, "approach1": _approach1, "approach2": _approach2,
           "approach3": _approach3}


def _default_conventions(args: argparse.Namespace) -> None:
    """Fill unset conventions: a sweep's own (from DIR/sweep.json), else total N and 6ND."""
    planned = {}
    plan_path = args.sweep / "sweep.json" if args.sweep is not None else None
    if plan_path is not None and plan_path.exists():
        sweep = json.loads(plan_path.read_text()).get("sweep", {})
        planned = {"n": sweep.get("n_kind"), "c": {"exact": "exact", "6n": "6ND"}.get(sweep.get("flops"))}
    args.n_convention = args.n_convention or planned.get("n") or "total"
    args.c_convention = args.c_convention or planned.get("c") or "6ND"


def fit_report(args: argparse.Namespace) -> dict:
    """Run the fit `args` describe; the JSON-ready report (plots written when args.out)."""
    _default_conventions(args)
    _check_args(args)
    conv = {"n_convention": args.n_convention, "c_convention": args.c_convention}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IdentifiabilityWarning)
        body = FITTERS[args.method](args, conv, args.out)
    for warning in caught:
        if not issubclass(warning.category, IdentifiabilityWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    messages = [str(w.message) for w in caught if issubclass(w.category, IdentifiabilityWarning)]
    report = {"method": args.method, **conv, **body, "warnings": list(dict.fromkeys(messages))}
    return _jsonable(report)


def run(args: argparse.Namespace, overrides: Sequence[str] = ()) -> None:
    """Entry point set by `register`: print the report; on bad input one line, exit 2."""
    try:
        if overrides:
            raise FitError(f"--config.* overrides do not apply to lm fit; got {overrides[0]}")
        report = fit_report(args)
    except ValueError as err:  # TableError, FitError and the fitters' named argument checks
        print(f"lm fit: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
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
