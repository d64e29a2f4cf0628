"""Backtests: fit on all but the largest budgets, predict the held-out ones (library and
`lm fit --holdout-largest K`, alone and with --method all)."""

import numpy as np
import pytest

from lm.scaling.backtest import actual_loss, backtest_rows, split_largest
from lm.scaling.cli import main
from tests.test_chinchilla import isoflop_design
from tests.test_fit_cli import fails, fit, write_sweep
from tests.test_prediction import true_loss_opt


def test_split_holds_out_the_largest_budgets_and_everything_above_the_fit():
    budget = np.array([1e18, 1e18, 1e19, 1e19, 1.001e20, 1e20, np.nan, np.nan])
    C = np.array([1e18, 1e18, 1e19, 1e19, 1.001e20, 1e20, 5e18, 3e20])
    split = split_largest(budget, C, 1)
    assert split.budgets == pytest.approx([np.sqrt(1.001) * 1e20])  # within 1%: one budget
    assert [at.tolist() for at in split.held] == [[False] * 4 + [True, True, False, False]]
    # a run outside every budget is fitted when it has less compute than the held-out budget
    assert split.train.tolist() == [True] * 4 + [False, False, True, False]
    assert split.fitted_budgets.tolist() == [1e18, 1e19]
    with pytest.raises(ValueError, match="--holdout-largest 2: the data have 3 budget\\(s\\) "
                                         "\\(values within 1% are one\\); holding out 2 must "
                                         "leave at least 2 to fit, so K must lie in \\[1, 1\\]"):
        split_largest(budget, C, 2)
    # without IsoFLOP budgets every point's compute is its budget
    split = split_largest(np.full(8, np.nan), C, 2)
    assert split.budgets == pytest.approx([np.sqrt(1.001) * 1e20, 3e20])
    assert split.train.tolist() == [True] * 4 + [False, False, True, False]
    assert split.fitted_budgets.tolist() == [1e18, 5e18, 1e19]


def test_actual_loss_is_the_parabola_minimum_when_bracketed():
    N = np.logspace(8, 10, 7)
    loss = 3.0 + 0.1 * (np.log(N) - np.log(1e9)) ** 2
    assert actual_loss(N, loss) == (pytest.approx(3.0), "parabola minimum")
    assert actual_loss(N[:3], loss[:3]) == (pytest.approx(loss[2]), "best observed loss")
    assert actual_loss(N[:2], loss[:2]) == (loss[1], "best observed loss")


def test_rows():
    N, _, C, loss = isoflop_design([1e18, 1e19, 1e20], 7, 0.0)
    split = split_largest(C, C, 1)
    actual, source = actual_loss(N[C == 1e20], loss[C == 1e20])
    rows = backtest_rows(split, N, loss, np.array([1.01 * actual]),
                         np.array([actual - 0.1]), np.array([actual + 0.1]))
    assert rows == [{"budget": 1e20, "n_points": 7, "predicted": pytest.approx(1.01 * actual),
                     "actual": actual, "actual_from": "parabola minimum",
                     "relative_error": pytest.approx(0.01),
                     "interval": [pytest.approx(actual - 0.1), pytest.approx(actual + 0.1)],
                     "covered": True}]
    missed = backtest_rows(split, N, loss, np.array([1.01 * actual]),
                           np.array([actual + 0.001]), np.array([actual + 0.1]))
    assert missed[0]["covered"] is False
    assert "covered" not in backtest_rows(split, N, loss, np.array([3.0]))[0]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("sweep"), sigma=0.002)


def test_holdout_largest_predicts_the_held_out_budget(sweep, capsys):
    report = fit(capsys, "--sweep", sweep, "--method", "approach3", "--holdout-largest", "1",
                 "--bootstrap", "20")
    test = report["backtest"]
    assert test["held_out_largest"] == 1
    assert test["fitted_budgets"] == [1e15, 3e15, 1e16, 3e16]
    assert report["n_points"] == test["n_fitted_points"] == 30  # 4 budgets x 7 + 2 grid runs
    (row,) = test["rows"]
    assert row["budget"] == 1e17 and row["actual_from"] == "parabola minimum"
    assert row["predicted"] == pytest.approx(float(true_loss_opt(np.array([1e17]))[0]),
                                             rel=0.005)
    assert abs(row["relative_error"]) < 0.005
    assert row["interval"][0] < row["predicted"] < row["interval"][1]
    assert isinstance(row["covered"], bool)
    assert report["derived"]["at_flops"] == [3e16]


def test_holdout_with_every_method_prints_one_table(sweep, tmp_path, capsys):
    assert main(["fit", "--sweep", str(sweep), "--method", "all", "--holdout-largest", "2",
                 "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    import json
    report = json.loads(captured.out)
    assert set(report["methods"]) == {"approach1", "approach2", "approach3"}
    assert report["skipped"] == {}
    for name, body in report["methods"].items():
        rows = body["backtest"]["rows"]
        assert [row["budget"] for row in rows] == [3e16, 1e17]
        assert all(abs(row["relative_error"]) < 0.02 for row in rows), (name, rows)
    table = captured.err[captured.err.index("lm fit: backtest"):].splitlines()
    assert table[1].split() == ["method", "budget", "fitted", "on", "predicted", "95%",
                                "interval", "actual", "actual", "from", "error", "covered"]
    assert sum(line.startswith("approach") for line in table) == 6
    assert report["plots"] == [str(tmp_path / "compare.png")]
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "approach2" / "isoflop.png").exists()


def test_method_all_without_a_holdout_compares_the_methods(sweep, capsys):
    assert main(["fit", "--sweep", str(sweep), "--method", "all", "--at-flops", "1e18"]) == 0
    captured = capsys.readouterr()
    assert "lm fit: methods side by side" in captured.err
    import json
    methods = json.loads(captured.out)["methods"]
    for body in methods.values():
        assert body["derived"]["at_flops"] == [1e18]
        assert body["derived"]["loss_opt"][0] == pytest.approx(
            float(true_loss_opt(np.array([1e18]))[0]), rel=0.02)


def test_method_all_says_why_a_method_is_skipped(tmp_path, capsys):
    from tests.test_fit_cli import write_csv
    N, D, C, loss = isoflop_design([1e18, 1e19, 1e20], 7, 0.003)
    path = write_csv(tmp_path / "p.csv", {"N": N, "D": D, "loss": loss})
    report = fit(capsys, "--csv", path, "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--method", "all")
    assert set(report["methods"]) == {"approach2", "approach3"}
    assert report["skipped"]["approach1"].startswith("runs[0] needs at least 2 evaluations")


def test_backtest_errors(sweep, capsys):
    assert fails(capsys, "--sweep", sweep, "--method", "km", "--holdout-largest", "1") == (
        "lm fit: error: --holdout-largest backtests approach1, approach2, approach3 or all; km "
        "predicts no compute-optimal loss")
    assert "--holdout-largest 6: the data have 5 budget(s)" in fails(
        capsys, "--sweep", sweep, "--method", "approach2", "--holdout-largest", "6")
    assert fails(capsys, "--sweep", sweep, "--method", "approach2", "--holdout-largest",
                 "-1") == "lm fit: error: --holdout-largest must be >= 1 (0: no backtest); got -1"
