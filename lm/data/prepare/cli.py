"""`lm data`: prepare a recipe's data, reprint a finished run's report, or train a classifier for its steps.

    lm data prepare --config experiments/data/tiny_demo.py --output runs/data/tiny [--workers N] [--executor local|ray]
                    [--replan]
    lm data report runs/data/tiny
    lm data train-classifier --config experiments/data/toxicity_classifier.py --output toxicity.bin
                             [--backend lm|fasttext]

SIGTERM or SIGINT stops `lm data prepare` after the tasks in flight with exit status
75 (`lm.data.stop.PREEMPTED_EXIT`); the same command resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _prepare(args: argparse.Namespace, overrides: list[str]) -> None:
    from lm.config import ConfigError
    from lm.data.prepare.executor import prepare
    from lm.data.prepare.recipe import load_recipe
    from lm.data.stop import Preempted
    from lm.errors import PREEMPTED_EXIT

    if overrides:
        raise ConfigError("lm data prepare takes no --config.* overrides; edit the recipe file")
    try:
        rep = prepare(load_recipe(args.config), Path(args.output), workers=args.workers, executor=args.executor,
                      replan=args.replan)
    except Preempted as e:
        print(f"lm data: {e}", file=sys.stderr)
        raise SystemExit(PREEMPTED_EXIT) from None
    d = rep["documents"]
    skipped = rep["inputs"]["files_skipped"]
    not_read = f"{skipped} files not read (listed in the report); " if skipped else ""
    print(f"{d['read']} records read: {d['quarantined']} quarantined, {d['dropped']} dropped, {d['clean']} clean; "
          f"{not_read}report: {Path(args.output) / 'report.md'}")


def _report(args: argparse.Namespace, overrides: list[str]) -> None:
    path = Path(args.dir) / "report.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run lm data prepare --output {args.dir} first")
    print(path.read_text("utf-8"), end="")


def _train_classifier(args: argparse.Namespace, overrides: list[str]) -> None:
    import json

    from lm.config import ConfigError
    from lm.data.classify.train_command import summary_line, train_from_file

    if overrides:
        raise ConfigError("lm data train-classifier takes no --config.* overrides; edit the classifier file")
    report = train_from_file(args.config, args.output, args.backend)
    print(json.dumps(report, indent=2))
    print(summary_line(report))


def register(commands: argparse._SubParsersAction) -> None:
    """Add `lm data prepare`, `lm data report` and `lm data train-classifier`."""
    data = commands.add_parser("data", help="prepare pretraining data from a recipe; show its report; "
                                            "train a classifier for its steps")
    sub = data.add_subparsers(dest="data_command", required=True)
    prep = sub.add_parser("prepare", help="run a recipe (resumes the run in --output)")
    prep.add_argument("--config", required=True, help="recipe file with get_recipe()")
    prep.add_argument("--output", required=True, help="run directory; rerunning resumes")
    prep.add_argument("--workers", type=int, default=1, help="parallel processes (local) or Ray CPUs")
    prep.add_argument("--executor", choices=("local", "ray"), default="local")
    prep.add_argument("--replan", action="store_true",
                      help="discard the work in --output and plan again (after the inputs or the recipe changed)")
    prep.set_defaults(run=_prepare)
    rep = sub.add_parser("report", help="print a finished run's report.md")
    rep.add_argument("dir")
    rep.set_defaults(run=_report)
    train = sub.add_parser("train-classifier", help="train a quality or toxicity classifier (lm or fastText) "
                                                    "that the recipe steps load")
    train.add_argument("--config", required=True, help="classifier file with get_classifier()")
    train.add_argument("--output", required=True, help="model file: .npz (backend lm) or .bin (backend fasttext)")
    train.add_argument("--backend", choices=("lm", "fasttext"), default=None,
                       help="override the file's backend (default: the file's, else lm)")
    train.set_defaults(run=_train_classifier)
