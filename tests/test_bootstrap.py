"""Bootstrap intervals cover the true law, shrink with more data, and are reproducible."""

import numpy as np
import pytest

from lm.scaling.bootstrap import (REFIT_STARTS, BootstrapResult, Interval, bootstrap_approach1,
                                  bootstrap_approach2, bootstrap_approach3, percentile_interval,
                                  predict, prediction_interval)
from lm.scaling.chinchilla import fit_approach3, start_grid
from lm.scaling.laws import chinchilla_loss
from tests.test_chinchilla import (A_TRUE, B_TRUE, CONV, GRID_1, SMALL_GRID, TRUE,
                                   isoflop_design, training_runs, true_optimum)

AT = np.array([1e20, 1e22])


def width(interval: Interval) -> np.ndarray:
    return np.asarray(interval.upper) - np.asarray(interval.lower)


def contains(interval: Interval, value) -> bool:
    return bool(np.all((interval.lower <= value) & (value <= interval.upper)))


def test_percentile_interval():
    samples = np.arange(101.0)
    interval = percentile_interval(50.0, samples, 0.95)
    assert (interval.estimate, interval.lower, interval.upper) == pytest.approx((50.0, 2.5, 97.5))
    per_budget = percentile_interval(np.zeros(2), np.stack([samples, 2 * samples], axis=1), 0.9)
    np.testing.assert_allclose(per_budget.lower, [5.0, 10.0])
    np.testing.assert_allclose(per_budget.upper, [95.0, 190.0])


@pytest.fixture(scope="module")
def approach3_pair():
    """Bootstraps of the same IsoFLOP design at 30 and 120 points (sigma of log L = 0.002)."""
    pair = []
    for budgets, per_budget in ((5, 6), (10, 12)):
        N, D, _, loss = isoflop_design(np.logspace(18, 21, budgets), per_budget, 0.002)
        pair.append(bootstrap_approach3(N, D, loss, at_flops=AT, n_resamples=30, seed=1,
                                        starts=SMALL_GRID, **CONV))
    return pair


def test_approach3_intervals_cover_the_truth_and_shrink(approach3_pair):
    small, large = approach3_pair
    assert (small.fit.n_points, large.fit.n_points) == (30, 120)
    assert (large.unit, large.n_resamples, large.level) == ("point", 30, 0.95)
    truth = {**TRUE, "a": A_TRUE, "b": B_TRUE}
    for name in ("E", "alpha", "beta", "a", "b"):
        assert contains(large.intervals[name], truth[name]), name
        assert width(large.intervals[name]) < width(small.intervals[name]), name
    N_opt, D_opt = true_optimum(AT)
    assert contains(large.intervals["N_opt"], N_opt)
    assert contains(large.intervals["D_opt"], D_opt)
    assert contains(large.intervals["tokens_per_parameter"], D_opt / N_opt)
    assert np.all(width(large.intervals["N_opt"]) < width(small.intervals["N_opt"]))
    assert large.intervals["alpha"].estimate == large.fit.alpha
    assert large.samples["N_opt"].shape == (30, 2) and large.samples["E"].shape == (30,)


def test_prediction_interval_for_a_held_out_point(approach3_pair):
    small, large = approach3_pair
    truth = chinchilla_loss(1e10, 2e11, **TRUE)  # beyond the largest budget, 1.2e22 FLOPs
    for boot in (small, large):
        interval = predict(boot, 1e10, 2e11)
        assert interval == prediction_interval(boot, 1e10, 2e11)
        assert contains(interval, truth)
        assert interval.estimate == pytest.approx(predict(boot.fit, 1e10, 2e11))
    assert width(predict(large, 1e10, 2e11)) < width(predict(small, 1e10, 2e11))
    grid = predict(large, [[1e9], [1e10]], [1e10, 1e11, 1e12])
    assert np.shape(grid.lower) == (2, 3) and np.all(grid.lower <= grid.upper)


def test_refit_starts_match_the_full_grid_on_resamples():
    N, D, _, loss = isoflop_design(np.logspace(18, 21, 5), 6, 0.01)
    boot = bootstrap_approach3(N, D, loss, at_flops=AT, n_resamples=3, seed=4,
                               starts=SMALL_GRID, **CONV)
    rng = np.random.default_rng(4)
    for k in range(3):
        draw = rng.integers(0, N.size, N.size)
        full = fit_approach3(N[draw], D[draw], loss[draw], starts=SMALL_GRID, **CONV)
        assert boot.samples["alpha"][k] == pytest.approx(full.alpha, abs=1e-4)
    assert REFIT_STARTS.shape == (32, 5)
    assert {tuple(row) for row in REFIT_STARTS} <= {tuple(row) for row in start_grid()}


def test_approach2_budget_bootstrap():
    runs = {}
    for budgets in (5, 15):
        N, _, C, loss = isoflop_design(np.logspace(18, 21, budgets), 9, 0.01)
        runs[budgets] = bootstrap_approach2(N, loss, C, at_flops=AT, n_resamples=200, seed=0,
                                            **CONV)
    small, large = runs[5], runs[15]
    assert large.unit == "budget+residual" and large.fit.method == "approach2"
    for name, value in (("a", A_TRUE), ("b", B_TRUE)):
        assert contains(large.intervals[name], value) and contains(small.intervals[name], value)
        # three times the budgets: about 1/sqrt(3) the width, with the noise of 200 resamples
        assert width(large.intervals[name]) < 0.75 * width(small.intervals[name])
    assert contains(large.intervals["N_opt"], true_optimum(AT)[0])
    # under 6ND the two exponents move together: a + b = 1 in every resample
    np.testing.assert_allclose(large.samples["a"] + large.samples["b"], 1.0)
    again = bootstrap_approach2(N, loss, C, at_flops=AT, n_resamples=200, seed=0, **CONV)
    np.testing.assert_array_equal(again.samples["a"], large.samples["a"])
    other = bootstrap_approach2(N, loss, C, at_flops=AT, n_resamples=200, seed=1, **CONV)
    assert not np.array_equal(other.samples["a"], large.samples["a"])


def test_approach1_run_bootstrap():
    boot = bootstrap_approach1(training_runs(0.002), at_flops=AT, n_resamples=40, seed=0,
                               flops_grid=GRID_1, **CONV)
    assert boot.unit == "run" and boot.fit.method == "approach1"
    assert contains(boot.intervals["a"], A_TRUE) and contains(boot.intervals["b"], B_TRUE)
    assert width(boot.intervals["a"]) < 0.1
    assert boot.intervals["a"].lower <= boot.fit.a <= boot.intervals["a"].upper


def test_bad_arguments():
    N, _, C, loss = isoflop_design(np.logspace(18, 21, 3), 5, 0.0)
    with pytest.raises(ValueError, match="level must lie in \\(0, 1\\)"):
        bootstrap_approach2(N, loss, C, at_flops=AT, level=95, **CONV)
    with pytest.raises(ValueError, match="n_resamples must be an integer >= 2"):
        bootstrap_approach2(N, loss, C, at_flops=AT, n_resamples=1, **CONV)
    with pytest.raises(ValueError, match="at_flops must be finite and > 0"):
        bootstrap_approach2(N, loss, C, at_flops=[1e20, -1.0], **CONV)
    with pytest.raises(ValueError, match="c_convention must be one of"):
        bootstrap_approach2(N, loss, C, at_flops=AT, n_convention="total", c_convention="?")
    boot = bootstrap_approach2(N, loss, C, at_flops=AT, n_resamples=5, **CONV)
    assert isinstance(boot, BootstrapResult)
    with pytest.raises(TypeError, match="approach-3 bootstrap; got one of approach2"):
        predict(boot, 1e9, 1e10)
