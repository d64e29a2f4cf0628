"""Loss predictions at a compute budget: approach 3's minimum along the IsoFLOP line, the
compute frontier of approaches 1 and 2, and derived.loss_opt in `lm fit`'s JSON."""

import numpy as np
import pytest

from lm.scaling.chinchilla import fit_approach2, fit_approach3
from lm.scaling.design import IdentifiabilityWarning
from lm.scaling.laws import chinchilla_loss, compute_optimal
from lm.scaling.prediction import (SIX_ND, FlopsRatio, approach3_loss_opt, fit_flops_ratio,
                                   fit_frontier, frontier_of, predict_loss_opt)
from tests.test_chinchilla import CONV, SMALL_GRID, TRUE, isoflop_design
from tests.test_fit_cli import fit, write_csv


def true_loss_opt(C):
    n, d = compute_optimal(C, A=TRUE["A"], B=TRUE["B"], alpha=TRUE["alpha"], beta=TRUE["beta"])
    return chinchilla_loss(n, d, **TRUE)


def test_frontier_recovers_its_law():
    C = np.logspace(18, 22, 7)
    f = fit_frontier(C, 1.7 + 30 * C ** -0.1)
    assert (f.E, f.k, f.gamma) == pytest.approx((1.7, 30, 0.1), rel=1e-6)
    assert f.free_E and f.n_points == 7 and f.rms_log_residual < 1e-8
    assert f.loss(1e23) == pytest.approx(1.7 + 30 * 1e23 ** -0.1, rel=1e-6)


def test_frontier_from_three_points_and_from_two():
    C = np.logspace(18, 20, 3)
    with pytest.warns(IdentifiabilityWarning, match="compute frontier: 3 points for the 3 "
                                                    "parameters of E \\+ k C\\^-gamma: it passes "
                                                    "through them exactly"):
        f = fit_frontier(C, 1.7 + 30 * C ** -0.1)
    assert (f.E, f.k, f.gamma) == pytest.approx((1.7, 30, 0.1), rel=1e-5) and f.free_E
    with pytest.warns(IdentifiabilityWarning, match="compute frontier: 2 points for E \\+ k "
                                                    "C\\^-gamma; E fixed at 0"):
        f = fit_frontier(C[:2], 5.0 * C[:2] ** -0.05)
    assert (f.E, f.k, f.gamma, f.free_E) == (0.0, pytest.approx(5.0), pytest.approx(0.05), False)
    with pytest.raises(ValueError, match="needs at least 2 distinct C; got 1"):
        fit_frontier([1e18, 1e18], [3.0, 2.9])


def test_approach3_loss_opt_is_the_minimum_along_the_isoflop_line():
    for C in (1e18, 1e21, 1e24):
        assert approach3_loss_opt(*(TRUE[k] for k in ("E", "A", "B", "alpha", "beta")), C) == \
            pytest.approx(float(true_loss_opt(C)), rel=1e-9)
    ratio = FlopsRatio(40.0, -0.2)  # exact FLOPs per parameter-token falling with N
    N = np.geomspace(1e6, 1e12, 200_001)
    brute = chinchilla_loss(N, 1e21 / (ratio(N) * N), **TRUE).min()
    assert approach3_loss_opt(*(TRUE[k] for k in ("E", "A", "B", "alpha", "beta")), 1e21,
                              ratio) == pytest.approx(brute, rel=1e-7)


def test_flops_ratio_is_fitted_from_the_data():
    N = np.logspace(4, 6, 9)
    D = np.full(9, 1e7)
    C = 40.0 * N ** -0.2 * N * D
    ratio = fit_flops_ratio(N, D, C)
    assert (ratio.coef, ratio.power) == pytest.approx((40.0, -0.2))
    six = fit_flops_ratio(N, D, 6 * N * D)
    assert (six.coef, six.power) == pytest.approx((SIX_ND.coef, SIX_ND.power), abs=1e-12)


def test_fits_predict_the_true_frontier():
    N, D, C, loss = isoflop_design(np.logspace(18, 21, 7), 9, 0.0)
    target = np.array([1e21, 1e22])
    a3 = fit_approach3(N, D, loss, starts=SMALL_GRID, **CONV)
    np.testing.assert_allclose(predict_loss_opt(a3, target), true_loss_opt(target), rtol=1e-6)
    a2 = fit_approach2(N, loss, C, **CONV)
    # parabolas in log N slightly misjudge each minimum, and the frontier extrapolates
    np.testing.assert_allclose(predict_loss_opt(a2, target, frontier=frontier_of(a2)),
                               true_loss_opt(target), rtol=0.01)
    with pytest.raises(ValueError, match="approach2 predicts loss through its compute frontier"):
        predict_loss_opt(a2, target)


def test_loss_opt_in_the_report(tmp_path, capsys):
    N, D, C, loss = isoflop_design(np.logspace(18, 21, 5), 7, 0.003)
    path = write_csv(tmp_path / "p.csv", {"N": N, "D": D, "C": C, "loss": loss})
    common = ("--csv", path, "--n-col", "N", "--d-col", "D", "--c-col", "C", "--loss-col",
              "loss", "--at-flops", "1e21", "1e22")
    for method in ("approach2", "approach3"):
        report = fit(capsys, *common, "--method", method, "--bootstrap", "20")
        d = report["derived"]
        assert d["loss_opt"] == pytest.approx(list(true_loss_opt(np.array([1e21, 1e22]))),
                                              rel=0.01)
        interval = d["loss_opt_interval"]
        assert all(lo <= est <= hi for lo, est, hi in zip(interval["lower"], d["loss_opt"],
                                                          interval["upper"]))
        assert report["bootstrap"]["intervals"]["loss_opt"]["estimate"] == d["loss_opt"]
    assert "frontier" in fit(capsys, *common, "--method", "approach2")["derived"]
    plain = fit(capsys, *common, "--method", "approach3")
    assert "loss_opt_interval" not in plain["derived"]


def test_a_law_without_a_finite_loss_predicts_nan():
    """A bootstrap draw can end on a law that is nan everywhere on the IsoFLOP line; its
    prediction is nan (and left out of the interval), not an error."""
    assert np.isnan(approach3_loss_opt(np.nan, 1.0, 1.0, 0.3, 0.3, 1e20))
    from lm.scaling.bootstrap import percentile_interval
    samples = np.array([[1.0, np.nan], [2.0, np.nan], [np.nan, np.nan], [3.0, np.nan]])
    interval = percentile_interval(np.array([2.0, 1.0]), samples, 0.5)
    assert interval.lower[0] == pytest.approx(1.5) and interval.upper[0] == pytest.approx(2.5)
    assert np.isnan(interval.lower[1]) and np.isnan(interval.upper[1])
