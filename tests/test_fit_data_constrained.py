"""Data-constrained scaling (`lm fit --method data_constrained`, Muennighoff et al. 2023): the
effective data and parameters, recovery of R*_D from synthetic runs drawn from the law with
noise (within 10%), R*_N only where the design identifies it, fixed constants from a prior
fit, CSV and sweep inputs, and bad input."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from lm.scaling.cli import main
from lm.scaling.data_constrained import (bootstrap_data_constrained, data_constrained_loss,
                                         effective, fit_data_constrained)
from lm.scaling.design import IdentifiabilityWarning
from lm.scaling.laws import compute_optimal
from lm.sweep.results import RESULT_COLUMNS
from tests.helpers import run_fit, write_csv, write_rows

# The authors' C4 fit (huggingface/datablations README) as the synthetic truth.
CONSTANTS = dict(E=np.exp(0.6254804), A=np.exp(6.255414), B=np.exp(7.3049974), alpha=0.3526596,
                 beta=0.3526596)
TRUE = dict(CONSTANTS, R_D_star=15.387756, R_N_star=5.309743)


def design(sizes=(1e8, 2e8, 4e8, 8e8), uniques=(1e9, 4e9), epochs=(1, 2, 4, 8, 16, 32, 64),
           fresh=(2e9, 8e9, 3e10)):
    """(N, D, U): each size on each unique set for each number of epochs, and on fresh data."""
    rows = [(n, u * r, u) for n in sizes for u in uniques for r in epochs]
    rows += [(n, d, d) for n in sizes for d in fresh]
    return tuple(np.array(rows).T)


def draw(N, D, U, sigma=0.003, seed=0, **law):
    rng = np.random.default_rng(seed)
    return data_constrained_loss(N, D, U, **(law or TRUE)) * np.exp(rng.normal(0, sigma, N.size))


def fit_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifiabilityWarning)
        return fit_data_constrained(*args, n_convention="total", **kwargs)


def test_the_effective_data_and_parameters_follow_the_paper():
    N, D, U = np.array([1e7, 1e7, 1e10]), np.array([1e9, 1e11, 1e9]), np.array([1e9, 1e9, 2e9])
    n_eff, d_eff, r_n, r_d = effective(N, D, U, **{k: TRUE[k] for k in
                                                   ("A", "B", "alpha", "beta", "R_D_star",
                                                    "R_N_star")})
    assert r_d == pytest.approx([0, 99, 0])  # epochs beyond the first; U_D = min(U, D)
    assert d_eff[0] == 1e9 and d_eff[2] == 1e9  # no repetition: D' = U_D
    assert d_eff[1] == pytest.approx(1e9 * (1 + 15.387756 * (1 - np.exp(-99 / 15.387756))))
    assert d_eff[1] < 1e9 * (1 + 15.387756)  # a repeated token is worth less each epoch
    # U_N: the compute-optimal size for U_D tokens (N_opt(C) where D_opt(C) = U_D).
    n_opt, d_opt = compute_optimal([6e20], **{k: TRUE[k] for k in ("A", "B", "alpha", "beta")})
    u_n = effective(n_opt * 10, d_opt, d_opt, **{k: TRUE[k] for k in ("A", "B", "alpha", "beta")},
                    R_D_star=15.0, R_N_star=5.0)
    assert u_n[2] == pytest.approx(9.0)  # R_N = N / U_N - 1 with U_N = n_opt
    assert r_n[0] == 0 and r_n[2] > 0  # a small model has no excess parameters
    plain = data_constrained_loss(1e8, 1e9, 1e9, **CONSTANTS, R_D_star=15.0)
    assert plain == pytest.approx(CONSTANTS["E"] + CONSTANTS["A"] / 1e8 ** 0.3526596
                                  + CONSTANTS["B"] / 1e9 ** 0.3526596)


def test_r_d_star_is_recovered_within_10_percent_with_the_constants_fitted():
    N, D, U = design()
    fit = fit_quietly(N, D, U, draw(N, D, U))
    assert not fit.fixed and fit.n_points == 68 and fit.n_repeated == 48
    assert fit.R_D_star == pytest.approx(TRUE["R_D_star"], rel=0.1)
    assert fit.R_N_star == pytest.approx(TRUE["R_N_star"], rel=0.5)
    assert fit.alpha == pytest.approx(TRUE["alpha"], abs=0.05)


def test_r_d_star_is_recovered_with_the_constants_fixed_and_the_bootstrap_covers_it():
    N, D, U = design()
    loss = draw(N, D, U, seed=3)
    result = bootstrap_data_constrained(N, D, U, loss, n_convention="total",
                                        constants=CONSTANTS, n_resamples=30, seed=0)
    assert result.fit.fixed and result.fit.E == CONSTANTS["E"]
    assert result.fit.R_D_star == pytest.approx(TRUE["R_D_star"], rel=0.05)
    interval = result.intervals["R_D_star"]
    assert interval.lower < TRUE["R_D_star"] < interval.upper
    assert set(result.samples) == {"R_D_star", "R_N_star"}  # the constants were not refitted


def test_r_n_star_is_left_out_where_no_model_has_excess_parameters():
    N, D, U = design(sizes=(1e6, 2e6, 4e6))  # far below compute-optimal for 1e9 tokens
    loss = draw(N, D, U, R_N_star=None, **{k: v for k, v in TRUE.items() if k != "R_N_star"})
    with pytest.warns(IdentifiabilityWarning, match=r"R\*_N is not fitted: 0 run\(s\) have more"):
        fit = fit_data_constrained(N, D, U, loss, n_convention="total", constants=CONSTANTS)
    assert fit.R_N_star is None and fit.params["R_N_star"] is None
    assert fit.R_D_star == pytest.approx(TRUE["R_D_star"], rel=0.1)


def test_runs_that_never_repeat_data_are_refused():
    N, D, U = design(uniques=(1e12,), epochs=(1,))
    with pytest.raises(ValueError, match="no run trains on more tokens than it has unique ones"):
        fit_data_constrained(N, D, U, draw(N, D, U), n_convention="total")


@pytest.fixture
def runs_csv(tmp_path) -> Path:
    N, D, U = design()
    return write_csv(tmp_path / "runs.csv", {"params": N, "tokens": D, "unique": U,
                                             "loss": draw(N, D, U, seed=1)})


CSV_FLAGS = ("--method", "data_constrained", "--n-col", "params", "--d-col", "tokens",
             "--unique-col", "unique", "--loss-col", "loss")


def test_lm_fit_on_a_csv_with_fixed_constants(tmp_path, capsys, runs_csv):
    prior = tmp_path / "approach3.json"
    prior.write_text(json.dumps({"method": "approach3", "n_convention": "total",
                                 "params": CONSTANTS}))
    report, table = run_fit(capsys, "--csv", runs_csv, *CSV_FLAGS, "--fix-from", prior,
                            "--bootstrap", "10", "--out", tmp_path / "plots")
    assert report["constants"] == "fixed" and report["params"]["E"] == CONSTANTS["E"]
    assert report["params"]["R_D_star"] == pytest.approx(TRUE["R_D_star"], rel=0.1)
    assert set(report["bootstrap"]["intervals"]) == {"R_D_star", "R_N_star"}
    assert report["reference"]["Muennighoff et al. (2023)"]["R_D_star"] == 15.387756
    assert max(report["runs"]["epochs"]) == 64 and len(report["runs"]["residual"]) == 68
    assert [Path(p).name for p in report["plots"]] == ["data_constrained.png"]
    assert any("fixed from" in note for note in report["notes"])
    assert "R_D_star" in table and "95% interval" in table
    total = json.loads(prior.read_text()) | {"n_convention": "non_embedding"}
    prior.write_text(json.dumps(total))
    with pytest.raises(SystemExit):
        main(["fit", "--csv", str(runs_csv), *CSV_FLAGS, "--fix-from", str(prior)])
    assert "was fitted with N counting non_embedding parameters" in capsys.readouterr().err


def test_lm_fit_on_a_csv_with_the_constants_fitted(capsys, runs_csv):
    report, _ = run_fit(capsys, "--csv", runs_csv, *CSV_FLAGS)
    assert report["constants"] == "fitted"
    assert report["params"]["R_D_star"] == pytest.approx(TRUE["R_D_star"], rel=0.1)
    assert report["source"]["columns"] == {"N": "params", "D": "tokens", "U": "unique",
                                           "loss": "loss"}


def write_epochs_sweep(workdir: Path) -> Path:
    """results.csv of an epochs sweep (hp.data.unique_tokens per run) drawn from the law."""
    N, D, U = design()
    loss = draw(N, D, U, seed=2)
    columns = (*RESULT_COLUMNS, "hp.data.unique_tokens")
    rows = [dict(dict.fromkeys(columns, 1), run=f"r{i}", status="done", kind="epochs", budget="",
                 n_total=n, n_non_embedding=n * 0.9, tokens=d, heldout_loss=value,
                 final_train_loss=value, point=f"r{i}", best=1, **{"hp.data.unique_tokens": u})
            for i, (n, d, u, value) in enumerate(zip(N, D, U, loss))]
    workdir.mkdir(parents=True)
    write_rows(workdir / "results.csv", columns, rows)
    return workdir


def test_lm_fit_on_an_epochs_sweep(tmp_path, capsys):
    sweep = write_epochs_sweep(tmp_path / "sweep")
    report, _ = run_fit(capsys, "--sweep", sweep, "--method", "data_constrained")
    assert report["source"]["columns"] == {"N": "n_total", "D": "tokens",
                                           "U": "hp.data.unique_tokens", "loss": "heldout_loss"}
    assert report["params"]["R_D_star"] == pytest.approx(TRUE["R_D_star"], rel=0.1)


@pytest.mark.parametrize("argv, message", [
    (["--method", "data_constrained", "--n-col", "params", "--d-col", "tokens", "--loss-col",
      "loss"], "needs --unique-col"),
    ([*CSV_FLAGS, "--at-flops", "1e20"], "--at-flops applies to budgets"),
    ([*CSV_FLAGS, "--near-optimal", "0.01"], "--near-optimal apply to --method hparams only"),
    (["--method", "approach3", "--n-col", "params", "--d-col", "tokens", "--loss-col", "loss",
      "--fix-from", "x.json"], "--fix-from apply to --method data_constrained only"),
    ([*CSV_FLAGS, "--fix-from", "absent.json"], "--fix-from absent.json: not a readable JSON"),
])
def test_bad_flags_get_one_line(capsys, runs_csv, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--csv", str(runs_csv), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lm fit: error: ") and "\n" not in err and message in err


def test_a_sweep_without_unique_tokens_is_named(tmp_path, capsys):
    sweep = write_epochs_sweep(tmp_path / "sweep")
    text = (sweep / "results.csv").read_text().replace("hp.data.unique_tokens", "hp.other")
    (sweep / "results.csv").write_text(text)
    with pytest.raises(SystemExit):
        main(["fit", "--sweep", str(sweep), "--method", "data_constrained"])
    assert "an epochs sweep, kind 'epochs', writes it" in capsys.readouterr().err
