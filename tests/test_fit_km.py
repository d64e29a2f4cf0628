"""KM fits recover Kaplan et al. (2020) constants from synthetic data drawn from their laws."""

import numpy as np
import pytest

from lm.scaling.fit_km import KMFit, fit_km_c, fit_km_d, fit_km_n, fit_km_nd, fit_km_ns
from lm.scaling.laws import km_loss_c, km_loss_d, km_loss_n, km_loss_nd, km_loss_ns

CONV = dict(n_convention="non_embedding", c_convention="6ND")


def noisy(loss, sigma, seed=0):
    """Multiplicative noise: sigma is the standard deviation of log L."""
    return loss * np.exp(np.random.default_rng(seed).normal(0, sigma, np.shape(loss)))


@pytest.mark.parametrize("fit, law, name, scale, alpha, x", [
    (fit_km_n, km_loss_n, "N", 8.8e13, 0.076, np.logspace(6, 9.5, 12)),
    (fit_km_d, km_loss_d, "D", 5.4e13, 0.095, np.logspace(7.5, 10.5, 12)),
    (fit_km_c, km_loss_c, "C", 3.1e8, 0.050, np.logspace(-7, 1, 12)),  # PF-days, as in the paper
])
def test_one_variable_fits(fit, law, name, scale, alpha, x):
    params = {f"{name}c": scale, f"alpha_{name}": alpha}
    exact = fit(x, law(x, **params), **CONV)
    assert exact.params[f"alpha_{name}"] == pytest.approx(alpha, rel=1e-9)
    assert exact.params[f"{name}c"] == pytest.approx(scale, rel=1e-6)
    assert exact.rms_log_residual < 1e-12
    result = fit(x, noisy(law(x, **params), 0.003), **CONV)
    assert result.params[f"alpha_{name}"] == pytest.approx(alpha, abs=0.002)
    assert result.rms_log_residual == pytest.approx(0.003, rel=0.5)
    assert result.method == f"km_{name.lower()}" and result.n_points == 12
    assert (result.n_convention, result.c_convention) == ("non_embedding", "6ND")
    np.testing.assert_allclose(law(x, **result.params), law(x, **params), rtol=0.01)


def test_fit_km_nd_recovers_kaplan_constants():
    N, D = (a.ravel() for a in np.meshgrid(np.logspace(6, 9.5, 8), np.logspace(7.5, 10.5, 7)))
    true = dict(Nc=6.4e13, Dc=1.8e13, alpha_N=0.076, alpha_D=0.103)
    exact = fit_km_nd(N, D, km_loss_nd(N, D, **true), **CONV)
    for key, value in true.items():
        assert exact.params[key] == pytest.approx(value, rel=1e-5)
    result = fit_km_nd(N, D, noisy(km_loss_nd(N, D, **true), 0.002), **CONV)
    assert result.params["alpha_N"] == pytest.approx(0.076, abs=0.002)
    assert result.params["alpha_D"] == pytest.approx(0.103, abs=0.003)
    assert np.log10(result.params["Nc"]) == pytest.approx(np.log10(6.4e13), abs=0.1)
    assert np.log10(result.params["Dc"]) == pytest.approx(np.log10(1.8e13), abs=0.2)
    assert result.rms_log_residual == pytest.approx(0.002, rel=0.3)
    assert result.method == "km_nd" and result.n_points == 56


def test_fit_km_ns_recovers_kaplan_constants():
    N, S = (a.ravel() for a in np.meshgrid(np.logspace(6, 9.5, 8), np.logspace(3, 5.5, 7)))
    true = dict(Nc=6.5e13, Sc=2.1e3, alpha_N=0.076, alpha_S=0.76)
    exact = fit_km_ns(N, S, km_loss_ns(N, S, **true), **CONV)
    for key, value in true.items():
        assert exact.params[key] == pytest.approx(value, rel=1e-5)
    result = fit_km_ns(N, S, noisy(km_loss_ns(N, S, **true), 0.002), **CONV)
    assert result.params["alpha_N"] == pytest.approx(0.076, abs=0.002)
    assert result.params["alpha_S"] == pytest.approx(0.76, abs=0.05)
    assert result.params["Sc"] == pytest.approx(2.1e3, rel=0.1)


def test_result_is_frozen():
    fit = fit_km_n([1e6, 1e7, 1e8], [4.0, 3.5, 3.1], **CONV)
    assert isinstance(fit, KMFit)
    with pytest.raises(AttributeError):
        fit.n_points = 5


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="n_convention"):
        fit_km_n([1e6, 1e7], [4.0, 3.0], n_convention="all", c_convention="6ND")
    with pytest.raises(ValueError, match="c_convention"):
        fit_km_n([1e6, 1e7], [4.0, 3.0], n_convention="total", c_convention="6N")
    with pytest.raises(ValueError, match="N must be finite and > 0"):
        fit_km_n([1e6, -1e7], [4.0, 3.0], **CONV)
    with pytest.raises(ValueError, match="loss must be finite and > 0"):
        fit_km_d([1e6, 1e7], [4.0, 0.0], **CONV)
    with pytest.raises(ValueError, match="equal lengths"):
        fit_km_n([1e6, 1e7, 1e8], [4.0, 3.0], **CONV)
    with pytest.raises(ValueError, match="loss does not fall with N"):
        fit_km_n([1e6, 1e7, 1e8], [3.0, 3.5, 4.0], **CONV)
    with pytest.raises(ValueError, match="N takes a single value"):
        fit_km_n([1e6, 1e6], [3.0, 3.5], **CONV)
    with pytest.raises(ValueError, match="at least 5 points"):
        fit_km_nd([1e6, 1e7], [1e9, 1e9], [3.0, 2.9], **CONV)
    with pytest.raises(ValueError, match="S must be finite"):
        fit_km_ns(np.ones(6), -np.ones(6), np.ones(6), **CONV)
