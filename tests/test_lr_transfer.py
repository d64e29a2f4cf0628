"""Learning-rate transfer across widths (lm/scaling/lr_transfer.py, `lm mup transfer`)."""

import csv
import json
import math

import numpy as np
import pytest

from lm.cli import main
from lm.scaling.lr_transfer import WidthCurve, read_sweep, transfer_report

LRS = [1.25e-3 * 2**k for k in range(7)]
WIDTHS = [32, 64, 128, 256]


def loss_at(lr: float, best: float) -> float:
    """A parabola in log2(lr) with its vertex at `best`."""
    return 3.5 + 0.05 * (math.log2(lr) - math.log2(best)) ** 2


def write_results(path, optima: dict[str, list[float]], extra_rows=()):
    """A width sweep's results.csv: SP's and muP's optimum per width as given."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "status", "d_model", "hp.model.parametrization", "hp.train.lr",
                         "heldout_loss", "final_train_loss"])
        for p, best in optima.items():
            for width, opt in zip(WIDTHS, best):
                for lr in LRS:
                    loss = loss_at(lr, opt)
                    writer.writerow([f"d{width}_{p}_{lr}", "done", width, p, lr, loss, loss + 0.01])
        writer.writerows(extra_rows)
    return path


def test_the_shift_of_each_parametrization_in_grid_steps(tmp_path):
    # SP's optimum halves at every doubling (3 grid steps over 8x); muP's stays, off-grid
    optima = {"sp": [0.02, 0.01, 0.005, 0.0025], "mup": [0.007, 0.007, 0.007, 0.007]}
    results = write_results(tmp_path / "results.csv", optima,
                            [["failed_run", "failed", 64, "sp", 0.001, "", ""]])
    report = transfer_report(read_sweep(results))
    assert report["sp"]["grid_best_lr"] == [0.02, 0.01, 0.005, 0.0025]
    assert report["sp"]["shift_grid_steps"] == pytest.approx(-3.0)
    assert report["sp"]["grid_factor"] == pytest.approx(2.0)
    assert report["mup"]["shift_grid_steps"] == 0.0 and report["mup"]["spread_grid_steps"] == 0.0
    # the parabola through the grid's best and its neighbours finds the off-grid vertex
    np.testing.assert_allclose(report["mup"]["refined_best_lr"], [0.007] * 4, rtol=1e-9)
    assert report["mup"]["shift_refined_steps"] == pytest.approx(0.0, abs=1e-9)


def test_two_sweeps_pool_their_runs(tmp_path, capsys):
    """A grid extended by a second sweep (one more learning rate) reads as one grid."""
    write_results(tmp_path / "all.csv", {"sp": [0.02, 0.01, 0.005, 0.0025], "mup": [0.01] * 4})
    rows = list(csv.reader(open(tmp_path / "all.csv")))
    for name, keep in (("a", lambda lr: lr > LRS[0]), ("b", lambda lr: lr == LRS[0])):
        (tmp_path / name).mkdir()
        with open(tmp_path / name / "results.csv", "w", newline="") as f:
            csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if keep(float(r[4]))])
    assert main(["mup", "transfer", "--sweep", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    report = json.loads(capsys.readouterr().out)["parametrizations"]
    assert report["sp"]["grid_best_lr"] == [0.02, 0.01, 0.005, 0.0025]
    only_a = transfer_report(read_sweep(tmp_path / "a" / "results.csv"))
    assert only_a["sp"]["on_grid_edge"] == [False, False, False, True]  # 0.0025 is a's lowest rate
    assert read_sweep([tmp_path / "a" / "results.csv", tmp_path / "b" / "results.csv"])["sp"][0].lrs == tuple(LRS)


def test_an_optimum_on_the_grid_edge_is_flagged_and_not_extrapolated():
    curve = WidthCurve(64, tuple(LRS), tuple(loss_at(lr, 1e-4) for lr in LRS))
    assert curve.on_edge and curve.grid_best_lr == LRS[0]
    assert curve.refined_log2_lr == math.log2(LRS[0])


def test_the_cli_writes_the_report_and_the_plot(tmp_path, capsys):
    write_results(tmp_path / "results.csv", {"sp": [0.02, 0.01, 0.01, 0.005],
                                             "mup": [0.01, 0.01, 0.01, 0.01]})
    assert main(["mup", "transfer", "--sweep", str(tmp_path), "--out", str(tmp_path / "t")]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "t" / "lr_transfer.json").read_text())
    assert printed == saved
    assert saved["parametrizations"]["sp"]["shift_grid_steps"] == pytest.approx(-2.0)
    assert (tmp_path / "t" / "lr_transfer.png").stat().st_size > 10_000


@pytest.mark.parametrize("rows, message", [
    ([["run", "d_model", "heldout_loss"], ["a", "32", "3.0"]],
     "has no column ['hp.model.parametrization', 'hp.train.lr']: a width sweep tuned over "
     "model.parametrization and train.lr writes them"),
    ([["run", "d_model", "hp.model.parametrization", "hp.train.lr", "heldout_loss"],
      ["a", "32", "sp", "fast", "3.0"]],
     "line 2: d_model, hp.train.lr and heldout_loss must be numbers"),
    ([["run", "d_model", "hp.model.parametrization", "hp.train.lr", "heldout_loss"],
      ["a", "32", "sp", "0.01", "3.0"], ["b", "32", "sp", "0.02", "3.1"]],
     ": parametrization 'sp' has finished grids at fewer than two widths; nothing to compare yet"),
])
def test_bad_results_are_named(tmp_path, capsys, rows, message):
    with open(tmp_path / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    assert main(["mup", "transfer", "--sweep", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"lm mup: error: {tmp_path / 'results.csv'} {message}".replace(
        "results.csv :", "results.csv:")
