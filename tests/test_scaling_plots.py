"""Scaling-law plots: what each Figure draws, atomic PNG writes, and argument checks."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from lm.scaling import plots
from lm.scaling.bootstrap import bootstrap_approach2
from lm.scaling.chinchilla import (TrainingRun, allocate, fit_approach1, fit_approach2,
                                   fit_approach3)
from lm.scaling.fit_km import fit_km_n, fit_km_nd
from lm.scaling.laws import chinchilla_loss, compute_optimal, km_loss_nd

CONV = dict(n_convention="total", c_convention="6ND")
TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
AT_TRUTH = np.array([[np.log(406.4), np.log(410.7), np.log(1.69), 0.34, 0.28]])
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def isoflop():
    budgets = np.logspace(18, 21, 4)
    N = np.concatenate([compute_optimal(c, A=406.4, B=410.7, alpha=0.34, beta=0.28)[0]
                        * np.logspace(-0.5, 0.5, 5) for c in budgets])
    C = np.repeat(budgets, 5)
    D = C / (6 * N)
    return N, D, C, chinchilla_loss(N, D, **TRUE)


def slope(x, y):
    return np.polyfit(np.log(x), np.log(y), 1)[0]


def test_isoflop_profiles_draw_points_parabolas_and_minima(isoflop, tmp_path):
    N, _, C, loss = isoflop
    fit = fit_approach2(N, loss, C, **CONV)
    path = tmp_path / "sub" / "isoflop.png"
    fig = plots.isoflop_profiles(N, loss, C, fit, path=path)
    assert isinstance(fig, Figure) and path.read_bytes()[:8] == PNG
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 * 4 + 1  # points and parabola per budget, then the minima
    minima = lines[-1]
    np.testing.assert_allclose(minima.get_xdata(), fit.n_opt)
    np.testing.assert_allclose(minima.get_ydata(), fit.loss_opt)
    parabola = lines[1]  # the first budget's curve passes through its minimum's value
    assert parabola.get_ydata().min() == pytest.approx(fit.loss_opt[0], abs=1e-4)
    assert fig.axes[0].get_xscale() == "log"
    assert fig.axes[0].get_xlabel() == "N (total parameters)"


def test_isoflop_profiles_show_excluded_budgets_hollow(isoflop):
    N, _, C, loss = isoflop
    concave = loss.copy()
    concave[C == C[5]] = [3.0, 3.1, 3.15, 3.1, 3.0]
    with pytest.warns(UserWarning, match="opens downward"):
        fit = fit_approach2(N, concave, C, **CONV)
    lines = plots.isoflop_profiles(N, concave, C, fit).axes[0].get_lines()
    assert len(lines) == 2 * 3 + 1 + 1
    assert any(line.get_markerfacecolor() == "none" for line in lines)


def test_loss_vs_compute_draws_runs_and_frontier():
    tokens = np.geomspace(1e9, 1e12, 50)
    runs = [TrainingRun(n, tokens, chinchilla_loss(n, tokens, **TRUE))
            for n in np.logspace(8, 10, 5)]
    fit = fit_approach1(runs, flops_grid=np.geomspace(1e19, 1e21, 50), **CONV)
    fig = plots.loss_vs_compute(runs, fit)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 6
    np.testing.assert_allclose(lines[0].get_xdata(), 6 * 1e8 * tokens)
    np.testing.assert_allclose(lines[-1].get_xdata(), fit.flops)
    assert fig.axes[0].get_title() == "loss against compute, 5 runs"
    exact = [TrainingRun(run.N, run.tokens, run.loss, 7 * run.N * run.tokens) for run in runs]
    no_fit = plots.loss_vs_compute(exact)
    np.testing.assert_allclose(no_fit.axes[0].get_lines()[0].get_xdata(), 7e8 * tokens)
    with pytest.raises(ValueError, match="runs is empty"):
        plots.loss_vs_compute([])


def test_allocation_lines_bands_and_reference_slopes(isoflop, tmp_path):
    N, D, C, loss = isoflop
    boot = bootstrap_approach2(N, loss, C, at_flops=[1e22], n_resamples=20, **CONV)
    fit3 = fit_approach3(N, D, loss, starts=AT_TRUTH, **CONV)
    flops = np.geomspace(1e18, 1e23, 50)
    fig = plots.allocation({"approach 2": boot, "approach 3": fit3}, flops,
                           path=tmp_path / "allocation.png")
    ax_n, ax_d = fig.axes
    by_label = {line.get_label(): line for line in ax_n.get_lines()}
    fit_line = by_label[f"approach 2: a = {boot.fit.a:.3f}"]
    np.testing.assert_allclose(fit_line.get_ydata(), allocate(boot.fit, flops)[0])
    three = by_label[f"approach 3: a = {fit3.a:.3f}"]
    np.testing.assert_allclose(three.get_ydata(), allocate(fit3, flops)[0])
    assert slope(flops, by_label["Kaplan 2020: C^0.73"].get_ydata()) == pytest.approx(0.73)
    assert slope(flops, by_label["Chinchilla: C^0.50"].get_ydata()) == pytest.approx(0.5)
    d_labels = {line.get_label(): line for line in ax_d.get_lines()}
    assert slope(flops, d_labels["Kaplan 2020: C^0.27"].get_ydata()) == pytest.approx(0.27)
    # one band per panel (only the bootstrap has one), around the fitted line
    assert len(ax_n.collections) >= 1
    band = ax_n.collections[0].get_paths()[0].vertices
    inside = (band[:, 0] > 1e20) & (band[:, 0] < 1e21)
    assert band[inside, 1].min() < allocate(boot.fit, 3e20)[0] < band[inside, 1].max()
    assert (tmp_path / "allocation.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="results is empty"):
        plots.allocation({}, flops)


def test_approach3_contours_follow_the_fit(isoflop):
    N, D, _, loss = isoflop
    fit = fit_approach3(N, D, loss, starts=AT_TRUTH, **CONV)
    fig = plots.approach3_contours(fit, N, D, loss)
    ax = fig.axes[0]
    optimal = next(line for line in ax.get_lines() if line.get_label().startswith("compute"))
    n_opt, d_opt = optimal.get_xdata(), optimal.get_ydata()
    np.testing.assert_allclose(n_opt, compute_optimal(6 * n_opt * d_opt, A=fit.A, B=fit.B,
                                                      alpha=fit.alpha, beta=fit.beta)[0])
    runs = ax.collections[-1]
    np.testing.assert_allclose(runs.get_offsets(), np.column_stack([N, D]))
    np.testing.assert_allclose(runs.get_array(), loss)


def test_residuals_and_power_law(tmp_path):
    N = np.logspace(6, 9, 10)
    loss = (8.8e13 / N) ** 0.076 * np.exp(0.01 * (-1.0) ** np.arange(10))
    fit = fit_km_n(N, loss, **CONV)
    fig = plots.residuals(N, loss, (fit.params["Nc"] / N) ** fit.params["alpha_N"],
                          x_label="N", title="L(N)", path=tmp_path / "r.png")
    rms = fit.rms_log_residual
    assert fig.axes[0].get_title() == f"L(N): RMS {rms:.3g} over 10 points"
    points = fig.axes[0].get_lines()[-1]
    assert np.sqrt(np.mean(points.get_ydata() ** 2)) == pytest.approx(rms)
    with pytest.raises(ValueError, match="must share a shape"):
        plots.residuals(N[:3], loss, loss, x_label="N", title="t")
    line = plots.power_law(fit, N, loss).axes[0].get_lines()[-1]
    assert slope(line.get_xdata(), line.get_ydata()) == pytest.approx(-fit.params["alpha_N"])
    N4, D = np.repeat(N[:4], 3), np.tile(np.logspace(8, 10, 3), 4)
    nd = fit_km_nd(N4, D, km_loss_nd(N4, D, Nc=6.4e13, Dc=1.8e13, alpha_N=0.076,
                                     alpha_D=0.103), **CONV)
    with pytest.raises(ValueError, match="power_law draws .* got a km_nd fit"):
        plots.power_law(nd, N, loss)


def test_save_png_is_atomic(tmp_path, monkeypatch):
    fig = plots.residuals([1.0, 2.0], [1.0, 1.1], [1.0, 1.0], x_label="x", title="t")
    path = plots.save_png(fig, tmp_path / "a.png")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.save_png(fig, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left

