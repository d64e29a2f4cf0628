"""Learning-rate and batch-size laws (`lm fit --method hparams`): recovery of the generating
exponents from synthetic grids, the near-optimal regions and their warnings, the CSV and sweep
inputs, bad input, and the plans of the tuned sweep files."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from lm.scaling.cli import main
from lm.scaling.design import IdentifiabilityWarning
from lm.scaling.hparams import bootstrap_hparams, fit_hparams, near_optimal
from lm.sweep.grid import expand, load_sweep
from lm.sweep.results import RESULT_COLUMNS
from tests.helpers import run_fit, write_csv, write_rows

SWEEPS = Path(__file__).resolve().parents[1] / "experiments" / "sweeps"
# DeepSeek LLM (2024): eta_opt = 0.3118 C^-0.125, B_opt = 0.2920 C^0.3271, as the synthetic truth.
LR_COEF, LR_EXP, BATCH_COEF, BATCH_EXP = 0.3118, -0.125, 0.2920, 0.3271
BUDGETS = np.logspace(16, 20, 5)


def synthetic(seed: int = 0, sigma: float = 5e-4, budgets=BUDGETS, lr_shift: float = 0.0):
    """(C, lr, batch, loss): per budget a 9 x 5 grid (lr by sqrt 2, batch by 2) around the true
    optimum, offset at random by up to half a step; loss a bowl in log lr and log batch with
    multiplicative noise `sigma`. `lr_shift` moves every lr grid by that many factors of 2."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        lr0, b0 = LR_COEF * c ** LR_EXP, BATCH_COEF * c ** BATCH_EXP
        lrs = lr0 * 2.0 ** (np.arange(-2, 2.5, 0.5) + rng.uniform(-0.25, 0.25) + lr_shift)
        batches = b0 * 2.0 ** (np.arange(-2, 2.5, 1.0) + rng.uniform(-0.5, 0.5))
        for lr in lrs:
            for b in batches:
                bowl = 1 + 0.01 * np.log(lr / lr0) ** 2 + 0.004 * np.log(b / b0) ** 2
                rows.append((c, lr, b, 3.0 * c ** -0.05 * bowl * np.exp(rng.normal(0, sigma))))
    return tuple(np.array(rows).T)


def fit_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifiabilityWarning)
        return fit_hparams(*args, c_convention="6ND", **kwargs)


def test_the_generating_exponents_are_recovered():
    fit = fit_quietly(*synthetic())
    assert fit.lr_opt_exponent == pytest.approx(LR_EXP, abs=0.03)
    assert fit.batch_opt_exponent == pytest.approx(BATCH_EXP, abs=0.03)
    lr_mid, batch_mid = fit.predict(1e18)  # the law inside the fitted range, within 10%
    assert lr_mid == pytest.approx(LR_COEF * 1e18 ** LR_EXP, rel=0.1)
    assert batch_mid == pytest.approx(BATCH_COEF * 1e18 ** BATCH_EXP, rel=0.1)
    assert fit.budgets == pytest.approx(BUDGETS) and list(fit.n_runs) == [45] * 5
    assert all(fit.n_near > 1)


def test_the_region_is_the_runs_within_the_tolerance_and_the_law_goes_through_it():
    C, lr, batch, loss = synthetic()
    fit = fit_quietly(C, lr, batch, loss)
    for c, centre in zip(fit.budgets, fit.lr_opt):
        at = C == c
        assert np.array_equal(fit.near[at], near_optimal(loss[at], 0.0025))
        assert loss[at][fit.near[at]].max() <= loss[at].min() * 1.0025
        assert centre == pytest.approx(np.exp(np.log(lr[at][fit.near[at]]).mean()))
    # C is constant within a budget: the fit through every region point is the region
    # centres' fit weighted by region size.
    slope = np.polyfit(np.log(fit.budgets), np.log(fit.lr_opt), 1, w=np.sqrt(fit.n_near))[0]
    assert fit.lr_opt_exponent == pytest.approx(slope)
    wider = fit_quietly(C, lr, batch, loss, tolerance=0.01)
    assert (wider.n_near >= fit.n_near).all() and wider.n_near.sum() > fit.n_near.sum()


def test_the_bootstrap_intervals_cover_the_truth():
    C, lr, batch, loss = synthetic()
    result = bootstrap_hparams(C, lr, batch, loss, at_flops=[1e18], c_convention="6ND",
                               n_resamples=40, seed=1)
    for name, truth in (("lr_opt_exponent", LR_EXP), ("batch_opt_exponent", BATCH_EXP)):
        interval = result.intervals[name]
        assert interval.lower < truth < interval.upper
        assert interval.lower < interval.estimate < interval.upper
    assert result.samples["lr_opt"].shape == (40, 1)


def test_a_region_at_the_edge_of_the_grid_is_named():
    C, lr, batch, loss = synthetic(lr_shift=2.5)  # every lr grid starts above the optimum
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_hparams(C, lr, batch, loss, c_convention="6ND")
    edges = [str(w.message) for w in caught
             if "reaches the smallest learning rate" in str(w.message)]
    assert len(edges) == 5 and edges[0].startswith("budget 1e+16: the near-optimal region")
    with pytest.raises(ValueError, match="all 45 runs share one compute budget"):
        fit_hparams(C[:45], lr[:45], batch[:45], loss[:45], c_convention="6ND")


def test_lm_fit_on_a_csv(tmp_path, capsys):
    C, lr, batch, loss = synthetic()
    path = write_csv(tmp_path / "grid.csv", {"flops": C, "peak_lr": lr, "tokens_per_batch": batch,
                                             "loss": loss})
    report, table = run_fit(capsys, "--csv", path, "--method", "hparams", "--c-col", "flops",
                            "--lr-col", "peak_lr", "--batch-col", "tokens_per_batch",
                            "--loss-col", "loss", "--bootstrap", "20", "--at-flops", "1e18",
                            "--out", tmp_path / "plots")
    assert set(report["params"]) == {"lr_opt_coef", "lr_opt_exponent", "batch_opt_coef",
                                     "batch_opt_exponent"}
    assert report["params"]["lr_opt_exponent"] == pytest.approx(LR_EXP, abs=0.03)
    assert report["near_optimal"] == 0.0025 and report["derived"]["at_flops"] == [1e18]
    assert report["derived"]["lr_opt_interval"]["lower"][0] < report["derived"]["lr_opt"][0]
    assert report["bootstrap"]["unit"] == "run within budget"
    assert report["budgets"]["n_runs"] == [45] * 5
    assert report["reference"]["DeepSeek LLM (2024)"]["batch_opt_exponent"] == 0.3271
    assert [Path(p).name for p in report["plots"]] == ["hparams.png", "landscape.png"]
    assert all(Path(p).stat().st_size > 10_000 for p in report["plots"])
    assert "lr_opt_exponent" in table and "batch_opt" in table


def write_tuned_sweep(workdir: Path, seed: int = 0) -> Path:
    """results.csv of a tuned IsoFLOP sweep (lr x batch members) from `synthetic`, at budgets
    1e12-1e16, with seq_len 128 (the batch column counts sequences) and one failed run."""
    C, lr, batch, loss = synthetic(seed, budgets=np.logspace(12, 16, 5))
    columns = RESULT_COLUMNS
    rows = []
    for i, (c, rate, b, value) in enumerate(zip(C, lr, batch, loss)):
        row = dict.fromkeys(columns, 1)
        row.update(run=f"run{i}", status="done", kind="isoflop", budget=c, seq_len=128,
                   batch_size=b / 128, flops_6n_total=c * 1.001, flops_exact=c * 1.2,
                   heldout_loss=value, final_train_loss=value, point=f"C{c:.0e}", best=0,
                   **{"hp.train.lr": rate})
        rows.append(row)
    rows.append(dict(rows[0], run="failed", status="failed", heldout_loss=""))
    workdir.mkdir(parents=True)
    write_rows(workdir / "results.csv", columns, rows)
    return workdir


def test_lm_fit_on_a_tuned_sweep_reads_every_member(tmp_path, capsys):
    sweep = write_tuned_sweep(tmp_path / "sweep")
    report, _ = run_fit(capsys, "--sweep", sweep, "--method", "hparams")
    assert report["n_points"] == 225  # every done member, the failed run left out
    assert report["source"]["columns"] == {"C": "flops_6n_total", "lr": "hp.train.lr",
                                           "batch": "batch_size x seq_len", "loss": "heldout_loss",
                                           "budget": "budget"}
    assert report["budgets"]["budget"] == pytest.approx(np.logspace(12, 16, 5) * 1.001)
    assert report["params"]["batch_opt_exponent"] == pytest.approx(BATCH_EXP, abs=0.03)
    exact, _ = run_fit(capsys, "--sweep", sweep, "--method", "hparams", "--c-convention", "exact")
    assert exact["c_convention"] == "exact"
    assert exact["params"]["lr_opt_exponent"] == pytest.approx(report["params"]["lr_opt_exponent"])


@pytest.mark.parametrize("argv, message", [
    (["--method", "hparams", "--c-col", "flops", "--lr-col", "peak_lr", "--loss-col", "loss"],
     "--csv with --method hparams needs --batch-col"),
    (["--method", "hparams", "--c-col", "flops", "--lr-col", "peak_lr", "--batch-col", "b",
      "--loss-col", "loss", "--n-col", "N"], "--n-col do not apply to --method hparams"),
    (["--method", "approach3", "--n-col", "flops", "--d-col", "flops", "--loss-col", "loss",
      "--lr-col", "peak_lr"], "--lr-col apply to --method hparams only; got --method approach3"),
    (["--method", "hparams", "--c-col", "flops", "--lr-col", "peak_lr", "--batch-col", "b",
      "--loss-col", "loss", "--near-optimal", "1.5"], "--near-optimal must lie in [0, 1)"),
    (["--method", "hparams", "--c-col", "flops", "--lr-col", "peak_lr", "--batch-col",
      "tokens_per_batch", "--loss-col", "loss", "--holdout-largest", "1"],
     "--holdout-largest applies to the KM and Chinchilla methods"),
    (["--method", "hparams", "--c-col", "flops", "--lr-col", "nope", "--batch-col",
      "tokens_per_batch", "--loss-col", "loss"], "grid.csv lacks column(s) ['nope']"),
])
def test_bad_flags_and_columns_get_one_line(tmp_path, capsys, argv, message):
    C, lr, batch, loss = synthetic()
    path = write_csv(tmp_path / "grid.csv", {"flops": C, "peak_lr": lr, "tokens_per_batch": batch,
                                             "loss": loss})
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--csv", str(path), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lm fit: error: ") and "\n" not in err and message in err


def test_members_best_is_refused_on_a_sweep(tmp_path, capsys):
    sweep = write_tuned_sweep(tmp_path / "sweep")
    with pytest.raises(SystemExit):
        main(["fit", "--sweep", str(sweep), "--method", "hparams", "--members", "best"])
    assert "fits every member of a tuned sweep" in capsys.readouterr().err


def test_the_tuned_sweep_files_plan_grids_with_fixed_tokens_and_held_out_rows():
    for name, points, members, rows in (("hparams_ci.py", 2, 4, 16),
                                        ("hparams_cpu.py", 3, 16, 512)):
        specs = expand(load_sweep(SWEEPS / name))
        assert len({s.point for s in specs}) == points and len(specs) == points * members
        for point in {s.point for s in specs}:
            runs = [s for s in specs if s.point == point]
            configs = [s.config() for s in runs]
            assert len({(c.train.lr, c.train.batch_size) for c in configs}) == members
            assert len({c.model.d_model * 100 + c.model.num_layers for c in configs}) == 1
            assert {c.train.eval_batches * c.train.batch_size for c in configs} == {rows}
            tokens = [s.tokens for s in runs]  # D fixed up to whole steps of the largest batch
            assert max(tokens) - min(tokens) <= max(c.train.batch_size for c in configs) * 128
            assert {s.hparams["train.batch_size"] for s in runs} == {c.train.batch_size
                                                                   for c in configs}
