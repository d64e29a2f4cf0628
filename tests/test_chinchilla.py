"""Chinchilla approaches 1-3: Epoch AI's replication on real data, recovery on synthetic data."""

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

from lm.scaling.chinchilla import (Approach3Fit, IdentifiabilityWarning, Scales, TrainingRun,
                                   allocate, fit_approach1, fit_approach2, fit_approach3,
                                   load_epoch_chinchilla_csv, paper_start_grid, predict,
                                   start_grid)
from lm.scaling.optimise import lse_huber as _lse_huber
from lm.scaling.optimise import minimise_lse as _minimise_lse
from lm.scaling.laws import allocation_exponents, chinchilla_loss, compute_optimal

EPOCH_CSV = (Path(__file__).parents[1] / ".." / "shared" / "data" / "scaling"
             / "chinchilla_fig4_epoch_extraction.csv")
CONV = dict(n_convention="total", c_convention="6ND")
# Hoffmann et al. (2022) approach-3 constants as the synthetic ground truth.
TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
A_TRUE, B_TRUE = allocation_exponents(0.34, 0.28)  # 0.4516, 0.5484
SMALL_GRID = start_grid(a=(-4, -2, 0), b=(-4, -2, 0), e=(-1.5, -0.75, 0), alpha=(0.5, 1.5),
                        beta=(0.5, 1.5))  # 108 starts, normalised units
TRUTH_RAW = np.array([[np.log(406.4), np.log(410.7), np.log(1.69), 0.34, 0.28]])


def at_truth(N, D, loss):
    """The true law as a single start, in the normalised units of (N, D, loss)."""
    return Scales.of(np.asarray(N, float), np.asarray(D, float),
                     np.asarray(loss, float)).to_normalised(TRUTH_RAW)


def true_optimum(C, flops_per_nd=6.0):
    return compute_optimal(C * 6.0 / flops_per_nd, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def isoflop_design(budgets, per_budget, sigma, seed=0, shift=0.1, flops_per_nd=6.0):
    """IsoFLOP profiles: per budget, N log-spaced over +-0.6 decades around (shifted from) N_opt."""
    rng = np.random.default_rng(seed)
    N = np.concatenate([true_optimum(C, flops_per_nd)[0]
                        * np.logspace(shift - 0.6, shift + 0.6, per_budget) for C in budgets])
    C = np.repeat(np.asarray(budgets, dtype=float), per_budget)
    D = C / (flops_per_nd * N)
    return N, D, C, chinchilla_loss(N, D, **TRUE) * np.exp(rng.normal(0, sigma, N.size))


def training_runs(sigma, seed=0, flops_per_nd=None):
    """25 runs from 1e7 to 1e10 parameters, each evaluated at 300 token counts up to 2e12."""
    rng = np.random.default_rng(seed)
    tokens = np.geomspace(1e7, 2e12, 300)
    return [TrainingRun(N, tokens, chinchilla_loss(N, tokens, **TRUE)
                        * np.exp(rng.normal(0, sigma, tokens.size)),
                        None if flops_per_nd is None else flops_per_nd * N * tokens)
            for N in np.logspace(7, 10, 25)]


GRID_1 = np.logspace(18, 21, 300)  # where N_opt stays well inside the runs' N range


# ---------------------------------------------------------------- Epoch AI data

@pytest.fixture(scope="module")
def epoch():
    if not EPOCH_CSV.exists():
        pytest.skip(f"Epoch AI extraction not found at {EPOCH_CSV.resolve()}")
    N, D, C, loss = load_epoch_chinchilla_csv(EPOCH_CSV, drop_highest_loss=5)
    start = time.perf_counter()
    fit = fit_approach3(N, D, loss, **CONV)
    seconds = time.perf_counter() - start
    print(f"\napproach 3 on Epoch data, {fit.n_starts} starts: {seconds:.2f} s; {fit}")
    return N, D, C, loss, fit


def test_loader():
    if not EPOCH_CSV.exists():
        pytest.skip(f"Epoch AI extraction not found at {EPOCH_CSV.resolve()}")
    N, D, C, loss = load_epoch_chinchilla_csv(EPOCH_CSV)
    assert N.size == D.size == C.size == loss.size == 245
    np.testing.assert_allclose(D, C / (6 * N))
    kept = load_epoch_chinchilla_csv(EPOCH_CSV, drop_highest_loss=5)[3]
    assert kept.size == 240
    assert kept.max() == pytest.approx(3.40593, abs=1e-5)
    np.testing.assert_array_equal(np.sort(loss)[:240], np.sort(kept))
    with pytest.raises(ValueError, match="drop_highest_loss must be in"):
        load_epoch_chinchilla_csv(EPOCH_CSV, drop_highest_loss=245)


def test_loader_names_missing_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Model Size,loss\n1e9,3.0\n")
    with pytest.raises(ValueError, match="lacks columns \\['Training FLOP'\\]"):
        load_epoch_chinchilla_csv(path)


def test_epoch_replication(epoch):
    *_, fit = epoch
    # Besiroglu et al. (2024): E = 1.82, A = 482, B = 2085, alpha = 0.348, beta = 0.366.
    assert fit.E == pytest.approx(1.82, abs=0.02)
    assert fit.alpha == pytest.approx(0.348, abs=0.01)
    assert fit.beta == pytest.approx(0.366, abs=0.01)
    assert fit.A == pytest.approx(482, rel=0.10)
    assert fit.B == pytest.approx(2085, rel=0.10)
    # what this implementation gets (see the report): 1.8172, 477.8, 2143.4, 0.34731, 0.36717
    assert (fit.E, fit.A, fit.B) == pytest.approx((1.8172, 477.8, 2143.4), rel=2e-4)
    assert (fit.alpha, fit.beta) == pytest.approx((0.34731, 0.36717), abs=2e-5)
    assert fit.objective == pytest.approx(1.018274e-3, rel=1e-6)
    assert (fit.n_points, fit.n_starts, fit.delta) == (240, 4500, 1e-3)
    assert (fit.a, fit.b) == pytest.approx((0.5139, 0.4861), abs=1e-4)
    N_opt, D_opt = allocate(fit, 5.76e23)  # Chinchilla's budget: ~73B parameters, ~18 tokens each
    assert N_opt == pytest.approx(7.32e10, rel=0.01)
    assert D_opt / N_opt == pytest.approx(17.9, abs=0.1)


@pytest.mark.slow
def test_epoch_batched_search_matches_scipy_from_every_start(epoch):
    """The paper's procedure done literally: scipy L-BFGS-B from each of the 4,500 starts."""
    N, D, _, loss, fit = epoch
    args = (np.log(N), np.log(D), np.log(loss), 1e-3)
    best = min(minimize(lambda t: tuple(v[0] for v in _lse_huber(t[None], *args)), x0,
                        jac=True, method="L-BFGS-B").fun for x0 in paper_start_grid())
    assert fit.objective <= best * (1 + 1e-9)


# ---------------------------------------------------------------- approach 3, synthetic

def test_batched_search_matches_scipy_per_start():
    N, D, _, loss = isoflop_design(np.logspace(18, 21, 5), 7, 0.01, seed=3)
    args = (np.log(N), np.log(D), np.log(loss), 1e-3)
    starts = paper_start_grid()[::150]  # raw units, as the optimiser sees them
    per_start = min(minimize(lambda t: tuple(v[0] for v in _lse_huber(t[None], *args)), x0,
                             jac=True, method="L-BFGS-B").fun for x0 in starts)
    _, batched = _minimise_lse(*args, starts)
    assert batched == pytest.approx(per_start, rel=1e-4)
    assert batched <= per_start * (1 + 1e-9)  # scipy's default tolerances stop a little earlier


def test_lse_gradient_matches_finite_differences():
    N, D, _, loss = isoflop_design(np.logspace(18, 21, 4), 5, 0.02)
    args = (np.log(N), np.log(D), np.log(loss), 1e-3)
    theta = np.array([[6.0, 6.5, 0.5, 0.36, 0.30], [3.0, 9.0, 0.2, 0.2, 0.5]])
    _, grad = _lse_huber(theta, *args)
    step = 1e-7
    for j in range(5):
        shift = np.zeros(5)
        shift[j] = step
        numeric = (_lse_huber(theta + shift, *args)[0]
                   - _lse_huber(theta - shift, *args)[0]) / (2 * step)
        np.testing.assert_allclose(grad[:, j], numeric, rtol=1e-4, atol=1e-9)


def test_approach3_recovers_the_law():
    N, D, _, loss = isoflop_design(np.logspace(18, 21, 7), 9, 0.0)
    exact = fit_approach3(N, D, loss, starts=SMALL_GRID, **CONV)
    for key, value in TRUE.items():
        assert getattr(exact, key) == pytest.approx(value, rel=1e-6)
    assert exact.objective < 1e-20
    N, D, _, loss = isoflop_design(np.logspace(18, 21, 7), 9, 0.002)
    fit = fit_approach3(N, D, loss, starts=SMALL_GRID, **CONV)
    assert fit.E == pytest.approx(1.69, abs=0.02)
    assert (fit.alpha, fit.beta) == pytest.approx((0.34, 0.28), abs=0.01)
    assert (fit.A, fit.B) == pytest.approx((406.4, 410.7), rel=0.1)
    assert (fit.a, fit.b) == pytest.approx((A_TRUE, B_TRUE), abs=0.01)
    G = (fit.alpha * fit.A / (fit.beta * fit.B)) ** (1 / (fit.alpha + fit.beta))
    assert fit.G == pytest.approx(G)
    assert (fit.method, fit.n_points, fit.n_starts) == ("approach3", 63, 108)
    assert (fit.n_convention, fit.c_convention) == ("total", "6ND")


def test_predict_and_allocate_use_the_fit():
    N, D, _, loss = isoflop_design(np.logspace(18, 21, 5), 7, 0.0)
    fit = fit_approach3(N, D, loss, starts=SMALL_GRID, **CONV)
    np.testing.assert_allclose(predict(fit, [1e9, 1e10], [2e10, 2e11]),
                               chinchilla_loss([1e9, 1e10], [2e10, 2e11], **TRUE), rtol=1e-8)
    N_opt, D_opt = allocate(fit, [1e20, 1e22])
    np.testing.assert_allclose(N_opt, true_optimum(np.array([1e20, 1e22]))[0], rtol=1e-6)
    np.testing.assert_allclose(6 * N_opt * D_opt, [1e20, 1e22])


def test_identifiability_warnings():
    N = np.logspace(8, 10, 12)
    loss = chinchilla_loss(N, 20 * N, **TRUE)
    with pytest.warns(IdentifiabilityWarning, match="same D/N ratio \\(20\\)"):
        fit_approach3(N, 20 * N, loss, starts=at_truth(N, 20 * N, loss), **CONV)
    N2 = np.repeat([1e8, 1e9], 6)
    D2 = np.tile(np.logspace(9, 11, 6), 2)
    loss2 = chinchilla_loss(N2, D2, **TRUE)
    with pytest.warns(IdentifiabilityWarning, match="2 distinct N value"):
        fit_approach3(N2, D2, loss2, starts=at_truth(N2, D2, loss2), **CONV)
    with pytest.warns(IdentifiabilityWarning, match="4 points for 5 parameters"):
        fit_approach3(N[:4], 20 * N[:4] * np.arange(1, 5), np.linspace(3.0, 2.5, 4),
                      starts=SMALL_GRID, **CONV)
    N, D, _, loss = isoflop_design(np.logspace(18, 21, 4), 5, 0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_approach3(N, D, loss, starts=at_truth(N, D, loss), **CONV)


def test_approach3_bad_inputs():
    N, D, _, loss = isoflop_design(np.logspace(18, 21, 3), 5, 0.01)
    with pytest.raises(ValueError, match="N must be finite and > 0"):
        fit_approach3(-N, D, loss, **CONV)
    with pytest.raises(ValueError, match="equal lengths"):
        fit_approach3(N, D[:-1], loss, **CONV)
    with pytest.raises(ValueError, match="c_convention must be one of"):
        fit_approach3(N, D, loss, n_convention="total", c_convention="6N")
    with pytest.raises(ValueError, match="starts must be a finite \\(k, 5\\) array"):
        fit_approach3(N, D, loss, starts=np.zeros((3, 4)), **CONV)
    with pytest.raises(ValueError, match="delta must be > 0"):
        fit_approach3(N, D, loss, delta=0.0, **CONV)


def test_start_grids():
    paper = paper_start_grid()
    assert paper.shape == (4500, 5)
    assert sorted(set(paper[:, 2])) == [-1, -0.5, 0, 0.5, 1]
    assert sorted(set(paper[:, 0])) == [0, 5, 10, 15, 20, 25]
    assert sorted(set(paper[:, 3])) == [0, 0.5, 1, 1.5, 2]
    grid = start_grid()  # the paper's shape in normalised units
    assert grid.shape == (4500, 5)
    assert sorted(set(grid[:, 0])) == [-5, -4, -3, -2, -1, 0]
    assert sorted(set(grid[:, 2])) == [-2, -1.5, -1, -0.5, 0]
    assert sorted(set(grid[:, 4])) == [0, 0.5, 1, 1.5, 2]


# ---------------------------------------------------------------- approach 2

def test_approach2_recovers_allocation_exponents():
    budgets = np.logspace(18, 21, 7)
    N, _, C, loss = isoflop_design(budgets, 9, 0.0)
    exact = fit_approach2(N, loss, C, **CONV)
    # windows sit at the same offset from N_opt in every budget, so the parabola's bias
    # is the same factor everywhere and the exponents come out exact
    assert (exact.a, exact.b) == pytest.approx((A_TRUE, B_TRUE), abs=1e-9)
    np.testing.assert_allclose(exact.d_opt, exact.budgets / (6 * exact.n_opt))
    np.testing.assert_allclose(exact.n_opt, true_optimum(budgets)[0], rtol=0.03)
    N, _, C, loss = isoflop_design(budgets, 9, 0.003)
    fit = fit_approach2(N, loss, C, **CONV)
    assert (fit.a, fit.b) == pytest.approx((A_TRUE, B_TRUE), abs=0.01)
    assert fit.n_coef * fit.d_coef == pytest.approx(1 / 6)
    assert (fit.method, fit.n_points, fit.excluded_budgets) == ("approach2", 63, ())
    np.testing.assert_allclose(allocate(fit, 1e22), (fit.n_coef * 1e22 ** fit.a,
                                                      fit.d_coef * 1e22 ** fit.b))


def test_approach2_exact_convention_uses_tokens():
    N, D, C, loss = isoflop_design(np.logspace(18, 21, 5), 7, 0.003, flops_per_nd=6.6)
    fit = fit_approach2(N, loss, C, tokens=D, n_convention="non_embedding", c_convention="exact")
    np.testing.assert_allclose(fit.d_opt, fit.budgets / (6.6 * fit.n_opt), rtol=1e-9)
    assert fit.a == pytest.approx(A_TRUE, abs=0.01)
    assert fit.c_convention == "exact" and fit.n_convention == "non_embedding"


def test_approach2_warnings():
    budgets = np.logspace(18, 21, 4)
    N, _, C, loss = isoflop_design(budgets, 5, 0.0)
    concave = loss.copy()
    concave[C == budgets[1]] = [3.0, 3.1, 3.15, 3.1, 3.0]
    with pytest.warns(IdentifiabilityWarning, match="budget 1e\\+19: the parabola in log N opens "
                                                   "downward"):
        fit = fit_approach2(N, concave, C, **CONV)
    assert fit.excluded_budgets == (pytest.approx(budgets[1]),)
    assert fit.budgets.size == 3 and fit.n_points == 15
    # the two largest budgets sample N only above their optimum: left out by default
    N, _, C, loss = isoflop_design(budgets, 5, 0.0)
    shifted = np.isin(C, budgets[2:])
    N[shifted] *= 10 ** 0.9
    loss = chinchilla_loss(N, C / (6 * N), **TRUE)
    with pytest.warns(IdentifiabilityWarning) as caught:
        fit = fit_approach2(N, loss, C, **CONV)
    messages = [str(w.message) for w in caught]
    assert messages[0].startswith("budget 1e+20: the parabola's minimum N=")
    assert messages[0].endswith(", an extrapolation, and is left out (keep it with "
                                "--keep-unbracketed / keep_unbracketed=True)")
    assert "lies outside the sampled N in [" in messages[0] and len(messages) == 2
    assert fit.excluded_budgets == (1e20, 1e21) and fit.exclusion_reasons == tuple(messages)
    assert fit.budgets.tolist() == [1e18, 1e19] and fit.n_points == 10
    assert fit.a == pytest.approx(A_TRUE, abs=0.01)  # only the bracketed minima
    with pytest.warns(IdentifiabilityWarning, match="; kept \\(--keep-unbracketed\\), an "
                                                    "extrapolation"):
        kept = fit_approach2(N, loss, C, keep_unbracketed=True, **CONV)
    assert kept.excluded_budgets == () and kept.budgets.size == 4
    assert abs(kept.a - A_TRUE) > 0.02  # the extrapolated minima pull the exponent away


def test_approach2_groups_budgets_within_a_tolerance():
    """6ND recomputed from rounded token counts differs in the last digits: one budget."""
    budgets = np.logspace(18, 21, 4)
    N, _, C, loss = isoflop_design(budgets, 5, 0.003)
    jittered = C * (1 + np.random.default_rng(0).uniform(-1e-12, 1e-12, C.size))
    exact = fit_approach2(N, loss, C, **CONV)
    fit = fit_approach2(N, loss, jittered, **CONV)
    assert fit.budgets == pytest.approx(budgets, rel=1e-11) and fit.a == pytest.approx(exact.a)
    with pytest.warns(IdentifiabilityWarning), pytest.raises(
            ValueError, match="budget: 0 usable IsoFLOP budget\\(s\\) of 20; the power laws need "
                              "at least 2 \\(left out: budget 1e\\+18 has 1 distinct N value\\(s\\); "
                              ".*; and 17 more\\)"):
        fit_approach2(N, loss, jittered, rtol=0.0, **CONV)
    spread = C * np.tile([0.996, 0.998, 1.0, 1.002, 1.004], 4)  # read off a figure
    assert fit_approach2(N, loss, spread, **CONV).budgets.size == 4
    with pytest.warns(IdentifiabilityWarning, match="budget 1e\\+18 \\(5 values within 1%\\) "
                                                    "has 1 distinct N value\\(s\\); a parabola in "
                                                    "log N needs at least 3, so it is left out"):
        with pytest.raises(ValueError, match="budget: 0 usable IsoFLOP budget"):
            fit_approach2(np.full(N.size, 1e9), loss, spread, **CONV)


def test_approach2_bad_inputs():
    N, D, C, loss = isoflop_design(np.logspace(18, 21, 3), 5, 0.0)
    with pytest.warns(IdentifiabilityWarning, match="budget 1e\\+18 has 2 distinct N value\\(s\\)"):
        thin = fit_approach2(N[3:], loss[3:], C[3:], **CONV)  # left out, the others fitted
    assert thin.excluded_budgets == (1e18,) and thin.budgets.size == 2
    with pytest.raises(ValueError, match="tokens is only used with c_convention='exact'"):
        fit_approach2(N, loss, C, tokens=D, **CONV)
    with pytest.raises(ValueError, match="tokens is required"):
        fit_approach2(N, loss, C, n_convention="total", c_convention="exact")
    with pytest.raises(ValueError, match="equal lengths"):
        fit_approach2(N, loss[:-1], C, **CONV)
    with pytest.raises(ValueError, match="budget must be finite"):
        fit_approach2(N, loss, -C, **CONV)
    with pytest.raises(ValueError, match="1 usable IsoFLOP budget"):
        fit_approach2(N[:5], loss[:5], C[:5], **CONV)
    with pytest.raises(ValueError, match="n_convention must be one of"):
        fit_approach2(N, loss, C, n_convention="nonembedding", c_convention="6ND")


# ---------------------------------------------------------------- approach 1

def test_approach1_recovers_allocation_exponents():
    exact = fit_approach1(training_runs(0.0), flops_grid=GRID_1, **CONV)
    assert (exact.a, exact.b) == pytest.approx((A_TRUE, B_TRUE), abs=0.005)
    np.testing.assert_allclose(exact.d_opt, exact.flops / (6 * exact.n_opt))
    np.testing.assert_allclose(allocate(exact, 1e20)[0], true_optimum(1e20)[0], rtol=0.15)
    assert (exact.method, exact.n_points, exact.n_runs) == ("approach1", 300, 25)
    fit = fit_approach1(training_runs(0.001), flops_grid=GRID_1, **CONV)
    assert (fit.a, fit.b) == pytest.approx((A_TRUE, B_TRUE), abs=0.02)
    assert np.all(np.diff(np.log(fit.flops)) > 0) and np.all(fit.loss_opt > 1.69)


def test_approach1_exact_convention_and_default_grid():
    runs = training_runs(0.0, flops_per_nd=6.6)
    fit = fit_approach1(runs, flops_grid=GRID_1, n_convention="total", c_convention="exact")
    np.testing.assert_allclose(fit.d_opt, fit.flops / (6.6 * fit.n_opt), rtol=1e-9)
    assert fit.a == pytest.approx(A_TRUE, abs=0.005)
    default = fit_approach1(training_runs(0.0), **CONV)
    assert default.n_points == 1500
    assert default.flops[0] == pytest.approx(6 * 1e7 * 2e12)
    assert default.flops[-1] == pytest.approx(6 * 1e10 * 2e12)


def test_approach1_one_run_envelope_warns():
    tokens = np.geomspace(1e9, 1e11, 50)
    runs = [TrainingRun(1e8, tokens, 2 + 100 / tokens ** 0.2),
            TrainingRun(2e8, tokens, 3 + 100 / tokens ** 0.2)]  # the larger model is always worse
    with pytest.warns(IdentifiabilityWarning, match="the loss envelope is run 0"):
        fit = fit_approach1(runs, flops_grid=np.geomspace(1.3e18, 5e19, 20), **CONV)
    assert fit.a == pytest.approx(0.0, abs=1e-12)


def test_approach1_bad_inputs():
    tokens = np.geomspace(1e9, 1e11, 5)
    good = TrainingRun(1e8, tokens, np.linspace(3, 2, 5))
    with pytest.raises(ValueError, match="runs\\[1\\].flops is given but c_convention='6ND'"):
        fit_approach1([good, TrainingRun(2e8, tokens, np.linspace(3, 2, 5), 6 * 2e8 * tokens)],
                      **CONV)
    with pytest.raises(ValueError, match="runs\\[0\\].flops is required"):
        fit_approach1([good, good], n_convention="total", c_convention="exact")
    with pytest.raises(ValueError, match="runs\\[1\\] needs at least 2 evaluations with strictly"):
        fit_approach1([good, TrainingRun(2e8, tokens[::-1], np.linspace(3, 2, 5))], **CONV)
    with pytest.raises(ValueError, match="runs\\[1\\].N must be finite and > 0"):
        fit_approach1([good, TrainingRun(-2e8, tokens, np.linspace(3, 2, 5))], **CONV)
    with pytest.raises(ValueError, match="equal lengths"):
        fit_approach1([good, TrainingRun(2e8, tokens, np.linspace(3, 2, 4))], **CONV)
    with pytest.raises(ValueError, match="at least 2 training runs"):
        fit_approach1([good], **CONV)
    with pytest.raises(ValueError, match="flops_grid: 0 distinct grid value"):
        fit_approach1([good, good], flops_grid=[1.0, 2.0], **CONV)


def test_predict_rejects_allocation_fits():
    N, _, C, loss = isoflop_design(np.logspace(18, 21, 3), 5, 0.0)
    fit = fit_approach2(N, loss, C, **CONV)
    with pytest.raises(TypeError, match="result must be an Approach3Fit .* a bootstrap goes to "
                                        "lm.scaling.bootstrap.predict"):
        predict(fit, 1e9, 1e10)
    with pytest.raises(TypeError, match="result must be an Approach1Fit"):
        allocate("fit", 1e20)
    assert not isinstance(fit, Approach3Fit)
