"""`lm fit` on synthetic sweeps and CSV files drawn from a known Chinchilla law, and on Epoch
AI's extraction of Chinchilla's Figure 4 (skipped when ../shared/data is absent)."""

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lm.scaling.cli import main, register
from lm.scaling.km_report import km_allocation
from lm.scaling.laws import allocation_exponents, chinchilla_loss, km_loss_nd
from lm.scaling.table import (CURVES_COLUMNS, RESULTS_COLUMNS, Points, TableError,
                              drop_highest_loss, frontier, lowest_loss_per, sweep_runs)
from tests.helpers import write_csv, write_rows

EPOCH_CSV = (Path(__file__).parents[1] / ".." / "shared" / "data" / "scaling"
             / "chinchilla_fig4_epoch_extraction.csv")
# Hoffmann et al. (2022) approach-3 constants as the synthetic truth.
TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
A_TRUE, B_TRUE = allocation_exponents(0.34, 0.28)  # 0.4516, 0.5484
BUDGETS = (1e15, 3e15, 1e16, 3e16, 1e17)
VOCAB, SEQ, BATCH = 512, 128, 8


def _architecture(n_total: float) -> dict:
    """Synthetic shape fields and counts for a model of `n_total` parameters."""
    layers = 4
    d_model = max(16, int(round((n_total / (12 * layers)) ** 0.5 / 16)) * 16)
    return dict(d_model=d_model, num_layers=layers, num_heads=d_model // 16,
                num_kv_heads=d_model // 16, d_ff=4 * d_model, vocab_size=VOCAB,
                n_total=n_total, n_non_embedding=n_total - 2 * VOCAB * d_model)


def write_sweep(workdir: Path, *, sigma: float = 0.002, seed: int = 0, per_budget: int = 7,
                budgets=BUDGETS, logged: int = 40, eval_every: int = 8) -> Path:
    """A sweep workdir in the runner's format: IsoFLOP runs around the true N_opt of each
    budget (N log-spaced over +-0.6 decades), two grid runs without a budget and a failed run.
    Final losses follow TRUE with multiplicative noise `sigma`; curves follow L(N, tokens)."""
    rng = np.random.default_rng(seed)
    G = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    runs = []  # (name, kind, budget, N, D)
    for c in budgets:
        n_opt = G * (c / 6) ** A_TRUE
        for i, n in enumerate(n_opt * np.logspace(-0.6, 0.6, per_budget)):
            runs.append((f"iso_{c:.0e}_{i}", "isoflop", c, n, c / (6 * n)))
    runs += [("grid_0", "grid", None, 3e6, 2e8), ("grid_1", "grid", None, 2e7, 5e8)]
    results, curves = [], []
    for name, kind, budget, n, d in runs:
        steps = max(logged, int(d // (SEQ * BATCH)))
        arch = _architecture(n)
        step = np.unique(np.linspace(steps / logged, steps, logged).astype(int))
        tokens = step * SEQ * BATCH
        scale = arch["n_non_embedding"] / n
        noise = np.exp(rng.normal(0, sigma, step.size))
        train = chinchilla_loss(n, tokens, **TRUE) * noise
        heldout = chinchilla_loss(n, tokens, **TRUE) * np.exp(rng.normal(0, sigma, step.size))
        for j in range(step.size):
            evaluated = j % eval_every == eval_every - 1 or j == step.size - 1
            curves.append(dict(run=name, step=step[j], tokens=tokens[j],
                               flops_6n_total=6 * n * tokens[j],
                               flops_6n_non_embedding=6 * n * scale * tokens[j],
                               flops_exact=6.6 * n * tokens[j], train_loss=train[j],
                               heldout_loss=heldout[j] if evaluated else ""))
        results.append(dict(run=name, status="done", kind=kind,
                            budget="" if budget is None else budget, **arch, seq_len=SEQ,
                            batch_size=BATCH, steps=step[-1], tokens=tokens[-1],
                            flops_6n_total=6 * n * tokens[-1],
                            flops_6n_non_embedding=6 * n * scale * tokens[-1],
                            flops_exact=6.6 * n * tokens[-1], final_train_loss=train[-1],
                            heldout_loss=heldout[-1]))
    failed = dict(results[0], run="failed_0", status="failed", final_train_loss="",
                  heldout_loss="")
    results.append(failed)
    workdir.mkdir(parents=True, exist_ok=True)
    write_rows(workdir / "results.csv", RESULTS_COLUMNS, results)
    write_rows(workdir / "curves.csv", CURVES_COLUMNS, curves)
    return workdir


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("sweep"))


def fit(capsys, *argv):
    """Run `lm fit ARGV` in-process; the parsed JSON report."""
    assert main(["fit", *map(str, argv)]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def fails(capsys, *argv) -> str:
    """Run `lm fit ARGV` expecting exit status 2; the one-line error."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *map(str, argv)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lm fit: error: ")
    return lines[0]


# ---------------------------------------------------------------- the parser

def test_register_adds_the_fit_subcommand():
    parser = argparse.ArgumentParser(prog="lm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fit", "--sweep", "d", "--method", "approach2", "--at-flops",
                              "1e20", "1e21", "--bootstrap", "5"])
    assert (args.command, args.method, args.at_flops, args.bootstrap) == (
        "fit", "approach2", [1e20, 1e21], 5)
    # Unset conventions are resolved when the fit runs (a sweep's own, else total and 6ND).
    assert (args.n_convention, args.c_convention, args.seed, args.out) == (None, None, 0, None)
    assert callable(args.run)
    with pytest.raises(SystemExit):  # --csv and --sweep exclude each other
        parser.parse_args(["fit", "--sweep", "d", "--csv", "f", "--method", "km"])


# ---------------------------------------------------------------- sweeps

def test_sweep_approach3_recovers_the_law_and_writes_plots(sweep, tmp_path, capsys):
    out = tmp_path / "plots"
    report = fit(capsys, "--sweep", sweep, "--method", "approach3", "--at-flops", "1e17",
                 "1e18", "--out", out)
    assert (report["method"], report["n_convention"], report["c_convention"]) == (
        "approach3", "total", "6ND")
    assert report["n_points"] == 37  # 35 IsoFLOP runs + 2 grid runs; the failed run is left out
    assert report["source"]["columns"] == {"N": "n_total", "D": "tokens", "C": "flops_6n_total",
                                           "loss": "heldout_loss", "budget": "budget"}
    p, d = report["params"], report["derived"]
    assert (p["alpha"], p["beta"]) == pytest.approx((0.34, 0.28), abs=0.01)
    assert p["E"] == pytest.approx(1.69, abs=0.06)
    assert (d["a"], d["b"]) == pytest.approx((A_TRUE, B_TRUE), abs=0.01)
    assert d["at_flops"] == [1e17, 1e18]
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    assert d["G"] == pytest.approx(G)
    np.testing.assert_allclose(d["N_opt"], G * (np.array([1e17, 1e18]) / 6) ** d["a"])
    np.testing.assert_allclose(np.multiply(d["N_opt"], d["D_opt"]) * 6, [1e17, 1e18])
    np.testing.assert_allclose(d["tokens_per_parameter"], np.divide(d["D_opt"], d["N_opt"]))
    assert report["objective"]["n_starts"] == 4500 and report["warnings"] == []
    assert "bootstrap" not in report
    assert report["plots"] == [str(out / name) for name in
                               ("contours.png", "residuals.png", "allocation.png")]
    for path in report["plots"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_approach2_groups_by_budget_with_bootstrap(sweep, capsys):
    report = fit(capsys, "--sweep", sweep, "--method", "approach2", "--bootstrap", "30",
                 "--seed", "3")
    assert report["n_points"] == 35  # the grid runs have no budget
    assert report["profiles"]["budget"] == list(BUDGETS)
    assert report["profiles"]["excluded_budgets"] == []
    assert report["params"]["a"] == pytest.approx(A_TRUE, abs=0.01)
    assert report["derived"]["at_flops"] == [pytest.approx(1e17)]  # the largest budget
    boot = report["bootstrap"]
    assert (boot["n_resamples"], boot["seed"], boot["level"], boot["unit"]) == (30, 3, 0.95,
                                                                                "budget+residual")
    a = boot["intervals"]["a"]
    assert a["estimate"] == report["params"]["a"] and a["lower"] < a["estimate"] < a["upper"]
    assert set(boot["intervals"]) == {"a", "n_coef", "b", "d_coef", "N_opt", "D_opt",
                                      "tokens_per_parameter", "loss_opt"}


def test_sweep_approach1_reads_curves(sweep, tmp_path, capsys):
    heldout = fit(capsys, "--sweep", sweep, "--method", "approach1", "--out", tmp_path)
    assert heldout["n_runs"] == 37 and heldout["source"]["loss"] == "heldout"
    assert heldout["params"]["a"] == pytest.approx(A_TRUE, abs=0.02)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["allocation.png",
                                                          "loss_vs_compute.png", "residuals.png"]
    train = fit(capsys, "--sweep", sweep, "--method", "approach1", "--loss", "train")
    assert train["params"]["a"] == pytest.approx(A_TRUE, abs=0.02)
    assert train["params"]["a"] != heldout["params"]["a"]


def test_sweep_conventions_pick_the_columns(sweep, capsys):
    report = fit(capsys, "--sweep", sweep, "--method", "approach2", "--n-convention",
                 "non_embedding", "--c-convention", "exact", "--loss", "train")
    assert report["source"]["columns"] == {
        "N": "n_non_embedding", "D": "tokens", "C": "flops_exact", "loss": "final_train_loss",
        "budget": "budget"}
    assert (report["n_convention"], report["c_convention"]) == ("non_embedding", "exact")
    # under "exact" D_opt comes from the runs' tokens, not from C / (6 N_opt)
    profiles = report["profiles"]
    assert not np.allclose(profiles["D_opt"], np.divide(profiles["budget"],
                                                        6 * np.array(profiles["N_opt"])))


def test_sweep_km_fits_every_law(sweep, tmp_path, capsys):
    report = fit(capsys, "--sweep", sweep, "--method", "km", "--out", tmp_path,
                 "--bootstrap", "10", "--at-flops", "1e18")
    laws = report["laws"]
    assert set(laws) == {"km_n", "km_d", "km_c", "km_nd"} and report["skipped"] == {}
    # the best run of each IsoFLOP budget, and both grid runs: each beats all runs with less C
    assert laws["km_c"]["n_points"] == 7
    assert laws["km_n"]["n_points"] == 37
    nd = laws["km_nd"]
    assert nd["derived"]["at_flops"] == [1e18]
    assert nd["derived"]["N_opt"] == pytest.approx(
        km_allocation(nd["params"], np.array([1e18]))["N_opt"].tolist())
    assert set(nd["bootstrap"]["intervals"]) >= {"alpha_N", "alpha_D", "a", "N_opt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "km_c.png", "km_d.png", "km_n.png", "km_nd_residuals.png"]


def test_km_allocation_minimises_km_loss_nd():
    params = dict(Nc=6.4e13, Dc=1.8e13, alpha_N=0.076, alpha_D=0.103)
    C = np.array([1e18, 1e22])
    derived = km_allocation(params, C)
    for c, n_opt in zip(C, derived["N_opt"]):
        N = n_opt * np.geomspace(0.5, 2, 2001)
        loss = km_loss_nd(N, c / (6 * N), **params)
        assert N[np.argmin(loss)] == pytest.approx(n_opt, rel=1e-3)
    assert derived["a"] == pytest.approx(0.103 / 0.179)
    np.testing.assert_allclose(6 * derived["N_opt"] * derived["D_opt"], C)


def test_sweep_runs_keep_the_last_row_of_a_repeated_step(tmp_path):
    workdir = write_sweep(tmp_path / "s", budgets=(1e15,), per_budget=3, logged=6,
                          eval_every=1)
    curves = workdir / "curves.csv"
    lines = curves.read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("heldout_loss")] = "9.5"  # the step logged again after a resume
    curves.write_text("\n".join(lines + [",".join(first)]) + "\n")
    runs = sweep_runs(workdir, n_convention="total", c_convention="6ND")
    assert len(runs) == 5 and [np.size(run.tokens) for run in runs] == [6] * 5
    assert runs[0].loss[0] == 9.5 and runs[0].flops is None
    exact = sweep_runs(workdir, n_convention="non_embedding", c_convention="exact",
                       loss="train")
    np.testing.assert_allclose(exact[1].flops, 6.6 * runs[1].N * runs[1].tokens)
    assert exact[1].N < runs[1].N  # non-embedding parameters


def test_point_selections():
    x = np.array([3.0, 1.0, 3.0, 2.0, 1.0])
    loss = np.array([2.0, 5.0, 1.5, 3.0, 4.0])
    np.testing.assert_array_equal(lowest_loss_per(x, loss), [4, 3, 2])
    C = np.array([1e15, 1.002e15, 0.999e15, 3e15, 2.9e15, 1e16, 1.1e16])
    loss = np.array([7.2, 7.0, 7.5, 6.5, 6.2, 6.4, 5.0])
    # within 1% of each other C values are one budget; 1e16 loses to 2.9e15
    np.testing.assert_array_equal(frontier(C, loss), [1, 4, 6])
    N = np.arange(1.0, 6.0)
    points = Points(N, N, N, np.array([3.0, 5.0, 1.0, 4.0, 2.0]), np.full(5, np.nan),
                    {"N": "n"})
    np.testing.assert_array_equal(drop_highest_loss(points, 2).N, [1.0, 3.0, 5.0])
    with pytest.raises(TableError, match="drop_highest_loss must be in \\[0, 5\\)"):
        drop_highest_loss(points, 5)


# ---------------------------------------------------------------- CSV files

@pytest.fixture(scope="module")
def points():
    """IsoFLOP points of the true law: N, D, C, loss, budget (5 budgets x 7)."""
    rng = np.random.default_rng(1)
    G = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    C = np.repeat(np.logspace(18, 21, 5), 7)
    N = G * (C / 6) ** A_TRUE * np.tile(np.logspace(-0.6, 0.6, 7), 5)
    D = C / (6 * N)
    return N, D, C, chinchilla_loss(N, D, **TRUE) * np.exp(rng.normal(0, 0.002, N.size))


def test_csv_derives_d_from_c_and_says_so(points, tmp_path, capsys):
    N, D, C, loss = points
    path = write_csv(tmp_path / "p.csv", {"params": N, "flops": C, "L": loss})
    report = fit(capsys, "--csv", path, "--n-col", "params", "--c-col", "flops", "--loss-col",
                 "L", "--method", "approach3")
    assert report["notes"] == ["D derived as C / (6 N) from columns 'flops' and 'params' (no "
                               "token column given)"]
    assert report["source"]["columns"]["D"] is None
    assert (report["params"]["alpha"], report["params"]["beta"]) == pytest.approx(
        (0.34, 0.28), abs=0.01)
    with_d = fit(capsys, "--csv", write_csv(tmp_path / "q.csv", {"N": N, "D": D, "L": loss}),
                 "--n-col", "N", "--d-col", "D", "--loss-col", "L", "--method", "approach3")
    assert with_d["notes"] == ["C computed as 6 N D from columns 'N' and 'D' (no FLOP column "
                               "given)"]
    assert with_d["params"] == pytest.approx(report["params"], rel=1e-6)


def test_csv_approach2_budget_column_or_equal_c(points, tmp_path, capsys):
    N, D, C, loss = points
    path = write_csv(tmp_path / "p.csv", {"N": N, "C": C, "budget": C * 1.01, "loss": loss})
    common = ("--csv", path, "--n-col", "N", "--c-col", "C", "--loss-col", "loss", "--method",
              "approach2")
    by_c = fit(capsys, *common)
    assert by_c["notes"][-1].startswith("IsoFLOP profiles are points with equal values of C")
    assert by_c["params"]["a"] == pytest.approx(A_TRUE, abs=0.01)
    by_budget = fit(capsys, *common, "--budget-col", "budget")
    assert by_budget["profiles"]["budget"] == pytest.approx(list(np.logspace(18, 21, 5) * 1.01))
    assert by_budget["params"]["a"] == pytest.approx(by_c["params"]["a"], abs=1e-9)


def test_csv_approach1_groups_rows_by_n(tmp_path, capsys):
    tokens = np.geomspace(1e8, 1e11, 40)
    N = np.repeat(np.logspace(7, 9, 9), tokens.size)
    D = np.tile(tokens, 9)
    path = write_csv(tmp_path / "curves.csv", {"N": N, "D": D,
                                               "loss": chinchilla_loss(N, D, **TRUE)})
    report = fit(capsys, "--csv", path, "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--method", "approach1")
    assert report["n_runs"] == 9
    assert report["params"]["a"] == pytest.approx(A_TRUE, abs=0.05)


def test_identifiability_warnings_reach_the_report(tmp_path, capsys):
    N = np.logspace(8, 10, 12)
    path = write_csv(tmp_path / "ratio.csv", {"N": N, "D": 20 * N,
                                              "loss": chinchilla_loss(N, 20 * N, **TRUE)})
    report = fit(capsys, "--csv", path, "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--method", "approach3")
    assert len(report["warnings"]) == 1
    assert "same D/N ratio (20)" in report["warnings"][0]


def test_json_has_no_nan(tmp_path, capsys):
    """A fit without an allocation (alpha + beta <= 0) prints null, not NaN."""
    N = np.repeat(np.logspace(8, 10, 4), 4)
    D = np.tile(np.logspace(9, 11, 4), 4)
    loss = 3.0 + 0.01 * np.log(N * D)  # worse with more parameters and more data
    path = write_csv(tmp_path / "rising.csv", {"N": N, "D": D, "loss": loss})
    assert main(["fit", "--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col",
                 "loss", "--method", "approach3"]) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)


# ---------------------------------------------------------------- bad input

def test_bad_input_gives_one_line_errors(sweep, points, tmp_path, capsys):
    N, D, C, loss = points
    good = write_csv(tmp_path / "good.csv", {"N": N, "D": D, "loss": loss})
    csv_args = ("--csv", good, "--n-col", "N", "--d-col", "D", "--loss-col", "loss")
    assert "lacks column(s) ['tokens']" in fails(
        capsys, "--csv", good, "--n-col", "N", "--d-col", "tokens", "--loss-col", "loss",
        "--method", "km")
    assert "--method must be one of km, approach1, approach2, approach3, all; got 'approach4'" in \
        fails(capsys, *csv_args, "--method", "approach4")
    empty = tmp_path / "empty.csv"
    empty.write_text("N,D,loss\n")
    assert f"{empty} has a header but no data rows" in fails(
        capsys, "--csv", empty, "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
        "--method", "approach3")
    missing = tmp_path / "nope.csv"
    assert f"{missing} does not exist" in fails(capsys, "--csv", missing, "--n-col", "N",
                                                "--d-col", "D", "--loss-col", "loss",
                                                "--method", "km")
    bad = tmp_path / "bad.csv"
    bad.write_text("N,D,loss\n1e8,1e9,3.0\n2e8,1e9,oops\n")
    assert f"{bad} line 3: column 'loss' must be a number > 0; got 'oops'" in fails(
        capsys, "--csv", bad, "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
        "--method", "km")
    assert "--csv needs --loss-col" in fails(capsys, "--csv", good, "--n-col", "N", "--d-col",
                                             "D", "--method", "km")
    assert "give a token column (--d-col) or a FLOP column (--c-col)" in fails(
        capsys, "--csv", good, "--n-col", "N", "--loss-col", "loss", "--method", "km")
    assert "--c-convention exact needs both --c-col and --d-col" in fails(
        capsys, *csv_args, "--method", "approach3", "--c-convention", "exact")
    assert "--n-convention must be one of" in fails(capsys, *csv_args, "--method", "km",
                                                    "--n-convention", "embedding")
    assert "--n-col apply to --csv" in fails(capsys, "--sweep", sweep, "--n-col", "N",
                                             "--method", "km")
    assert "--loss must be one of ('heldout', 'train'); got 'val'" in fails(
        capsys, "--sweep", sweep, "--method", "km", "--loss", "val")
    assert "--bootstrap must be 0 (no intervals) or >= 2; got 1" in fails(
        capsys, *csv_args, "--method", "approach3", "--bootstrap", "1")
    assert "drop_highest_loss must be in [0, 35)" in fails(
        capsys, *csv_args, "--method", "approach3", "--drop-highest-loss", "35")
    assert "--drop-highest-loss drops points; approach1 fits whole curves" in fails(
        capsys, "--sweep", sweep, "--method", "approach1", "--drop-highest-loss", "2")
    assert "--at-flops must all be finite and > 0; got -1.0" in fails(
        capsys, *csv_args, "--method", "km", "--at-flops", "-1")
    assert "--at-flops must all be finite and > 0; got 1e+20 inf" in fails(
        capsys, *csv_args, "--method", "approach3", "--at-flops", "1e20", "inf")


def test_sweep_errors_name_the_file(tmp_path, capsys):
    assert f"{tmp_path / 'results.csv'} does not exist" in fails(
        capsys, "--sweep", tmp_path, "--method", "km")
    no_budgets = write_sweep(tmp_path / "grid", budgets=())
    assert "has no done IsoFLOP runs" in fails(capsys, "--sweep", no_budgets, "--method",
                                               "approach2")
    results = no_budgets / "results.csv"
    results.write_text(results.read_text().replace(",done,", ",running,"))
    assert "has no runs with status 'done'" in fails(capsys, "--sweep", no_budgets,
                                                     "--method", "km")
    odd = write_sweep(tmp_path / "odd", budgets=(1e15,), per_budget=3)
    results = odd / "results.csv"
    results.write_text(results.read_text().replace(",1000000000000000.0,", ",1e15 FLOPs,", 1))
    assert f"{results} line 2: column 'budget' must be a number > 0 (or empty); got '1e15 " \
        "FLOPs'" in fails(capsys, "--sweep", odd, "--method", "approach2")
    lines = results.read_text().splitlines()
    results.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    assert "lacks column(s) ['heldout_loss']" in fails(capsys, "--sweep", odd, "--method", "km")
    sparse = write_sweep(tmp_path / "sparse", budgets=(1e15, 1e16), per_budget=3,
                         eval_every=1000)
    message = fails(capsys, "--sweep", sparse, "--method", "approach1")
    assert "has 1 row(s) with a heldout_loss" in message and "--loss train" in message


def test_module_runs_as_a_command(tmp_path):
    """`python -m lm.scaling.cli` exits 2 with one line on stderr for a missing column."""
    path = write_csv(tmp_path / "p.csv", {"N": [1e8, 2e8], "loss": [3.0, 2.9]})
    result = subprocess.run([sys.executable, "-m", "lm.scaling.cli", "fit", "--csv", str(path),
                             "--n-col", "N", "--d-col", "D", "--loss-col", "loss", "--method",
                             "km"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (f"lm fit: error: {path} lacks column(s) ['D']; its columns "
                                     "are ['N', 'loss']")


# ---------------------------------------------------------------- Epoch AI's data

def test_epoch_acceptance(capsys):
    """The acceptance command, with a small bootstrap: Besiroglu et al. (2024)'s estimates."""
    if not EPOCH_CSV.exists():
        pytest.skip(f"Epoch AI extraction not found at {EPOCH_CSV.resolve()}")
    report = fit(capsys, "--csv", EPOCH_CSV, "--n-col", "Model Size", "--c-col",
                 "Training FLOP", "--loss-col", "loss", "--method", "approach3",
                 "--drop-highest-loss", "5", "--bootstrap", "4", "--at-flops", "5.76e23")
    p = report["params"]
    # Besiroglu et al. (2024): E = 1.82, A = 482, B = 2085, alpha = 0.348, beta = 0.366
    assert p["E"] == pytest.approx(1.82, abs=0.01)
    assert p["A"] == pytest.approx(482, rel=0.02)
    assert p["B"] == pytest.approx(2085, rel=0.05)
    assert (p["alpha"], p["beta"]) == pytest.approx((0.348, 0.366), abs=0.002)
    assert report["n_points"] == 240
    assert report["notes"][0].startswith("D derived as C / (6 N)")
    assert report["derived"]["N_opt"][0] == pytest.approx(7.32e10, rel=0.01)
    intervals = report["bootstrap"]["intervals"]
    for name in ("E", "A", "B", "alpha", "beta"):
        assert intervals[name]["estimate"] == p[name]
        assert intervals[name]["lower"] <= intervals[name]["upper"]


@pytest.mark.slow
def test_epoch_acceptance_command_as_given():
    """The acceptance command verbatim (100 resamples, about 15 s), through the module."""
    if not EPOCH_CSV.exists():
        pytest.skip(f"Epoch AI extraction not found at {EPOCH_CSV.resolve()}")
    result = subprocess.run(
        [sys.executable, "-m", "lm.scaling.cli", "fit", "--csv", str(EPOCH_CSV), "--n-col",
         "Model Size", "--c-col", "Training FLOP", "--loss-col", "loss", "--method",
         "approach3", "--drop-highest-loss", "5", "--bootstrap", "100"],
        capture_output=True, text=True, timeout=600, check=True)
    report = json.loads(result.stdout)
    p, intervals = report["params"], report["bootstrap"]["intervals"]
    assert (p["E"], p["alpha"], p["beta"]) == pytest.approx((1.82, 0.348, 0.366), abs=0.01)
    assert (p["A"], p["B"]) == pytest.approx((482, 2085), rel=0.05)
    for name in ("E", "A", "B", "alpha", "beta", "a", "b", "G"):
        assert intervals[name]["lower"] < p.get(name, report["derived"].get(name)) \
            < intervals[name]["upper"]


# ---------------------------------------------------------------- tuned sweeps

def tuned_sweep(workdir: Path) -> Path:
    """write_sweep's runs as the lr=0.003 members of a tuned sweep, each point with a second
    member at lr=0.01 that is better below 1e7 parameters and worse above."""
    write_sweep(workdir, budgets=(1e15, 1e16, 1e17), per_budget=5)
    path = workdir / "results.csv"
    with open(path, newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["status"] == "done"]
    columns = list(RESULTS_COLUMNS) + ["point", "best", "hp.train.lr", "hp.train.warmup_steps"]
    members = []
    for row in rows:
        loss = float(row["heldout_loss"])
        other = loss * (0.98 if float(row["n_total"]) < 1e7 else 1.02)
        for lr, value in ((0.003, loss), (0.01, other)):
            members.append({**row, "run": f"{row['run']}_lr{lr}", "point": row["run"],
                            "heldout_loss": value, "best": int(value == min(loss, other)),
                            "hp.train.lr": lr, "hp.train.warmup_steps": 10})
    write_rows(path, columns, members)
    return workdir


def test_tuned_sweep_members(tmp_path, capsys):
    sweep = tuned_sweep(tmp_path / "tuned")
    best = fit(capsys, "--sweep", sweep, "--method", "approach3")
    assert best["n_points"] == 17  # 15 IsoFLOP points + 2 grid points, one member each
    assert best["notes"] == ["tuned sweep: 17 of 34 done runs fitted at 17 points, the best "
                             "member of each point by held-out loss (--members chooses)"]
    base = fit(capsys, "--sweep", sweep, "--method", "approach3", "--members", "train.lr=0.003")
    assert base["notes"][0].startswith("tuned sweep: 17 of 34 done runs fitted at 17 points, "
                                       "the members with hp.train.lr = 0.003")
    assert base["params"]["alpha"] == pytest.approx(0.34, abs=0.02)  # write_sweep's own law
    assert best["params"] != base["params"]
    everything = fit(capsys, "--sweep", sweep, "--method", "approach3", "--members", "all")
    assert everything["n_points"] == 34 and everything["notes"] == []
    assert "--members 'lr': give best, all or FIELD=VALUE with FIELD one of ['train.lr', " \
        "'train.warmup_steps']" in fails(capsys, "--sweep", sweep, "--method", "approach3",
                                         "--members", "lr")
    assert "--members 'train.lr=0.02': no done run of" in fails(
        capsys, "--sweep", sweep, "--method", "approach3", "--members", "train.lr=0.02")
    assert "--members applies to --sweep" in fails(
        capsys, "--csv", sweep / "results.csv", "--n-col", "n_total", "--d-col", "tokens",
        "--loss-col", "heldout_loss", "--method", "approach3", "--members", "all")
