"""`lm mup`: the coordinate check, and the learning-rate transfer of a width sweep.

    lm mup coord-check --config FILE --widths 64,128,256,512 [--steps K] [--seeds S] --out DIR
    lm mup transfer --sweep DIR [DIR ...] [--loss heldout|train] [--out DIR]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lm.errors import ConfigError


def register(commands: Any) -> None:
    mup = commands.add_parser("mup", help="muP tools: the coordinate check, learning-rate transfer")
    sub = mup.add_subparsers(dest="mup_command", required=True)
    check = sub.add_parser("coord-check", help="activation RMS over the first steps for each "
                           "width, under SP and muP (a plot and a JSON file)")
    check.add_argument("--config", help="experiment file with get_config(); defaults if omitted")
    check.add_argument("--widths", required=True, help="comma-separated d_model values, e.g. 64,128,256,512")
    check.add_argument("--steps", type=int, default=5, help="training steps to follow (default 5)")
    check.add_argument("--seeds", type=int, default=1, help="initialisations averaged per width")
    check.add_argument("--out", required=True, help="directory for coord_check.json and .png")
    check.set_defaults(run=_coord_check)
    transfer = sub.add_parser("transfer", help="each width's best learning rate under SP and muP, "
                              "from a width sweep (experiments/sweeps/mup_transfer_cpu.py)")
    transfer.add_argument("--sweep", required=True, nargs="+", help="the sweep's directory (its "
                          "results.csv); several pool their runs (a grid extended by a second sweep)")
    transfer.add_argument("--loss", default="heldout", help="heldout (default) or train")
    transfer.add_argument("--out", help="directory for lr_transfer.json and lr_transfer.png")
    transfer.set_defaults(run=_transfer)


def _coord_check(args: Any, overrides: list[str]) -> None:
    from lm.config import load_config
    from lm.train.coord_check import coord_check
    try:
        widths = [int(w) for w in args.widths.split(",") if w.strip()]
    except ValueError:
        raise ConfigError(f"--widths {args.widths!r} must be comma-separated integers") from None
    report = coord_check(load_config(args.config, overrides), widths, args.steps, Path(args.out),
                         seeds=args.seeds)
    summary = {p: {k: round(v, 3) for k, v in s.items() if k in ("embedding", "logits")
                   or k.endswith(".residual")} for p, s in report["final_step_slopes"].items()}
    print(json.dumps({"out": str(args.out), "final_step_slopes": summary}))


def _transfer(args: Any, overrides: list[str]) -> None:
    from lm.files import write_json_atomic
    from lm.scaling.lr_transfer import plot_transfer, read_sweep, transfer_report
    if overrides:
        raise ConfigError(f"--config.* overrides do not apply to lm mup transfer; got {overrides[0]}")
    try:
        curves = read_sweep([Path(d) / "results.csv" for d in args.sweep], args.loss)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    report = {"sweeps": args.sweep, "loss": args.loss, "parametrizations": transfer_report(curves)}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report["plot"] = str(plot_transfer(curves, out / "lr_transfer.png",
                                           f"learning-rate transfer: {', '.join(Path(d).name for d in args.sweep)}"))
        write_json_atomic(report, out / "lr_transfer.json")
    print(json.dumps(report, indent=1))
