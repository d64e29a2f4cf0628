"""Fit fidelity (issue: scaling laws that predict): every finding a new user made with `lm fit`,
reproduced on data made here, with the exact message each now gets."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from lm.scaling.chinchilla import fit_approach2, fit_approach3, load_epoch_chinchilla_csv
from lm.scaling.design import IdentifiabilityWarning, group_close
from lm.scaling.laws import chinchilla_loss
from lm.scaling.optimise import batched_bfgs
from tests.test_chinchilla import A_TRUE, CONV, EPOCH_CSV, SMALL_GRID, TRUE, isoflop_design
from tests.test_fit_cli import fails, fit, write_csv

BUDGETS = 10.0 ** np.arange(18, 23)


def unbracketed_design(sigma=0.003, seed=0):
    """5 IsoFLOP budgets; the two largest sample N only above their optimum (by 0.9 and 1
    decade), so their parabola minima are extrapolations."""
    N, D, C, loss = isoflop_design(BUDGETS, 7, sigma, seed=seed, shift=0.0)
    for c, shift in ((BUDGETS[3], 0.9), (BUDGETS[4], 1.0)):
        N[C == c] *= 10 ** shift
    D = C / (6 * N)
    rng = np.random.default_rng(seed + 1)
    return N, D, C, chinchilla_loss(N, D, **TRUE) * np.exp(rng.normal(0, sigma, N.size))


def reference_approach2(N, loss, C):
    """An independent approach-2 fitter: numpy's Polynomial per budget in log10 N, budgets
    whose vertex is outside the sampled range (or that open downward) dropped, then a
    least-squares line through (log10 C, log10 N_opt)."""
    xs, ys = [], []
    for c in np.unique(C):
        x, y = np.log10(N[C == c]), loss[C == c]
        c0, c1, c2 = np.polynomial.Polynomial.fit(x, y, 2).convert().coef
        vertex = -c1 / (2 * c2)
        if c2 > 0 and x.min() <= vertex <= x.max():
            xs.append(np.log10(c))
            ys.append(vertex)
    return np.linalg.lstsq(np.vstack([xs, np.ones(len(xs))]).T, ys, rcond=None)[0][0]


# ---------------------------------------------------------------- approach 2

def test_approach2_agrees_with_a_reference_that_excludes_unbracketed_budgets(tmp_path, capsys):
    N, D, C, loss = unbracketed_design()
    path = write_csv(tmp_path / "iso.csv", {"N": N, "C": C, "loss": loss})
    args = ("--csv", path, "--n-col", "N", "--c-col", "C", "--loss-col", "loss", "--method",
            "approach2")
    report = fit(capsys, *args)
    assert report["params"]["a"] == pytest.approx(reference_approach2(N, loss, C), abs=1e-9)
    assert report["params"]["a"] == pytest.approx(A_TRUE, abs=0.02)
    assert report["profiles"]["excluded_budgets"] == [1e21, 1e22]
    reasons = report["profiles"]["exclusion_reasons"]
    assert reasons == report["warnings"][:2] and len(reasons) == 2
    assert report["warnings"][2].startswith("compute frontier: 3 points for the 3 parameters")
    assert reasons[0].startswith("budget 1e+21: the parabola's minimum N=")
    assert reasons[0].endswith("an extrapolation, and is left out (keep it with "
                               "--keep-unbracketed / keep_unbracketed=True)")
    kept = fit(capsys, *args, "--keep-unbracketed")
    assert kept["profiles"]["excluded_budgets"] == []
    assert abs(kept["params"]["a"] - A_TRUE) > 0.03  # what the extrapolated minima did


def test_approach2_names_left_out_budgets_on_stderr(tmp_path, capsys):
    N, D, C, loss = unbracketed_design()
    path = write_csv(tmp_path / "iso.csv", {"N": N, "C": C, "loss": loss})
    from lm.scaling.cli import main
    assert main(["fit", "--csv", str(path), "--n-col", "N", "--c-col", "C", "--loss-col",
                 "loss", "--method", "approach2"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("lm fit: warning: budget 1e+21: the parabola's minimum N=")
    assert err[1].startswith("lm fit: warning: budget 1e+22: the parabola's minimum N=")


def test_budgets_equal_but_for_the_last_bits_are_one_budget(tmp_path, capsys):
    N, D, C, loss = isoflop_design(BUDGETS, 5, 0.003)
    recomputed = 6 * N * (C / (6 * N))  # 6ND from its own parts: differs in the last bits
    assert np.unique(recomputed).size > 5
    path = write_csv(tmp_path / "bits.csv", {"N": N, "C": recomputed, "loss": loss})
    report = fit(capsys, "--csv", path, "--n-col", "N", "--c-col", "C", "--loss-col", "loss",
                 "--method", "approach2")
    assert report["profiles"]["budget"] == pytest.approx(list(BUDGETS), rel=1e-12)
    # without the tolerance the bits split budgets: the splinters are left out, and named
    exact = fit(capsys, "--csv", path, "--n-col", "N", "--c-col", "C", "--loss-col", "loss",
                "--method", "approach2", "--budget-rtol", "0")
    split = [w for w in exact["warnings"]
             if "distinct N value(s); a parabola in log N needs at least 3, so it is left out "
                "(budgets within rtol=0 are one: widen it, --budget-rtol" in w]
    assert split and exact["n_points"] < report["n_points"] == 25  # splinters' points lost
    assert "--budget-rtol must lie in [0, 1); got 1.5" in fails(
        capsys, "--csv", path, "--n-col", "N", "--c-col", "C", "--loss-col", "loss",
        "--method", "approach2", "--budget-rtol", "1.5")


def test_group_close():
    values = np.array([3.0, 1.0, 1.005, 1.02, 2.99, 3.01])
    assert group_close(values, 0.01).tolist() == [2, 0, 0, 1, 2, 2]
    assert group_close(values, 0.0).tolist() == [4, 0, 1, 2, 3, 5]


# ---------------------------------------------------------------- approach 3

@pytest.mark.parametrize("scale", [1000.0, 1 / np.log(2), 1e6])
def test_approach3_does_not_depend_on_the_loss_unit(scale):
    """Before normalisation the paper's grid found a worse optimum at 1e6 (alpha 0.375, beta
    0.061, E 0 on Epoch's data); at every scale the fit must be the unscaled one."""
    N, D, _, loss = isoflop_design(BUDGETS, 7, 0.01, seed=4)
    base = fit_approach3(N, D, loss, starts=SMALL_GRID, **CONV)
    scaled = fit_approach3(N, D, loss * scale, starts=SMALL_GRID, **CONV)
    assert (scaled.alpha, scaled.beta) == pytest.approx((base.alpha, base.beta), abs=1e-6)
    assert (scaled.E, scaled.A, scaled.B) == pytest.approx(
        (base.E * scale, base.A * scale, base.B * scale), rel=1e-5)
    assert scaled.objective == pytest.approx(base.objective, rel=1e-6)
    units = fit_approach3(N / 1e6, D / 1e9, loss, starts=SMALL_GRID, **CONV)
    assert (units.alpha, units.beta, units.E) == pytest.approx(
        (base.alpha, base.beta, base.E), rel=1e-5)


def test_epoch_losses_times_1000_give_the_same_exponents():
    if not EPOCH_CSV.exists():
        pytest.skip(f"Epoch AI extraction not found at {EPOCH_CSV.resolve()}")
    N, D, _, loss = load_epoch_chinchilla_csv(EPOCH_CSV, drop_highest_loss=5)
    base = fit_approach3(N, D, loss, **CONV)
    for scale in (1000.0, 1e6):
        scaled = fit_approach3(N, D, loss * scale, **CONV)
        assert (scaled.alpha, scaled.beta) == pytest.approx((base.alpha, base.beta), abs=1e-3)


def test_equal_losses_are_refused(tmp_path, capsys):
    N, D, C, _ = isoflop_design(BUDGETS, 7, 0.0)
    path = write_csv(tmp_path / "flat.csv", {"N": N, "D": D, "loss": np.full(N.size, 3.0)})
    for method in ("approach2", "approach3", "km"):
        assert fails(capsys, "--csv", path, "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                     "--method", method) == (
            f"lm fit: error: {path} column 'loss': all 35 losses are 3; a scaling law fitted to "
            "a constant would describe rounding noise. Check the loss column")
    with pytest.raises(ValueError, match="approach 3: all 35 losses are 3"):
        fit_approach3(N, D, np.full(N.size, 3.0), **CONV)
    with pytest.raises(ValueError, match="approach 2: all 35 losses are 3"):
        fit_approach2(N, np.full(N.size, 3.0), C, **CONV)


def design_warnings(N, D, loss) -> list[str]:
    with pytest.warns(IdentifiabilityWarning) as caught:
        fit_approach3(N, D, loss, starts=SMALL_GRID, **CONV)
    return [str(w.message) for w in caught]


def test_approach3_warns_for_a_single_budget():
    N, D, C, loss = isoflop_design([1e20], 9, 0.003)
    assert design_warnings(N, D, loss)[0] == (
        "approach 3 design: every point has the same compute C = 1e+20 (within 1%): one "
        "IsoFLOP profile, along which N and D move together, so the N and D terms trade places "
        "and alpha, beta, a, b are not identified; add budgets")


def test_approach3_warns_when_each_size_has_one_token_count():
    N = np.logspace(7, 10, 12)
    D = 20 * N * (1 + 0.5 * np.sin(np.log(N)))  # one D per N, rising with N, not a line
    assert design_warnings(N, D, chinchilla_loss(N, D, **TRUE))[0] == (
        "approach 3 design: every model size has a single token count and D moves "
        "monotonically with N: the points trace one curve through the (N, D) plane, along "
        "which the N and D terms trade places; train some sizes for two or more token counts")


def test_approach3_warns_when_e_reaches_its_bound():
    N = np.repeat(np.logspace(7, 10, 6), 6)
    D = np.tile(np.logspace(9, 12, 6), 6)
    messages = design_warnings(N, D, chinchilla_loss(N, D, **{**TRUE, "E": 0.0}))
    assert len(messages) == 1 and messages[0].startswith("approach 3: E = ")
    assert messages[0].endswith(" is at its bound 0 (below 0.001 x the smallest loss, "
                                "0.3411): the data show no irreducible loss, so E is not "
                                "identified and A, B, alpha, beta absorb it")


def test_an_identified_design_does_not_warn():
    N, D, _, loss = isoflop_design(BUDGETS, 7, 0.01)  # every N distinct, 5 budgets
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_approach3(N, D, loss, starts=SMALL_GRID, **CONV)
    if EPOCH_CSV.exists():  # sizes read off a figure: equal within 1%, many D per size
        N, D, _, loss = load_epoch_chinchilla_csv(EPOCH_CSV, drop_highest_loss=5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fit_approach3(N, D, loss, starts=SMALL_GRID, **CONV)


# ---------------------------------------------------------------- the files

def test_duplicated_rows_are_reported(tmp_path, capsys):
    N, D, _, loss = isoflop_design(BUDGETS, 5, 0.003)
    index = np.r_[np.arange(N.size), [0, 3]]
    path = write_csv(tmp_path / "dup.csv", {"N": N[index], "D": D[index], "loss": loss[index]})
    report = fit(capsys, "--csv", path, "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--method", "approach3")
    assert report["warnings"] == [
        f"{path} line 27 repeats {path} line 2 (N, D, C, loss all equal): it counts twice in "
        "the fit; remove one if it is a copy",
        f"{path} line 28 repeats {path} line 5 (N, D, C, loss all equal): it counts twice in "
        "the fit; remove one if it is a copy"]


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path, capsys):
    N, D, _, loss = isoflop_design(BUDGETS, 5, 0.003)
    plain = write_csv(tmp_path / "plain.csv", {"N": N, "D": D, "loss": loss})
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    args = ("--n-col", "N", "--d-col", "D", "--loss-col", "loss", "--method", "approach3")
    assert fit(capsys, "--csv", bom, *args)["params"] == fit(capsys, "--csv", plain,
                                                             *args)["params"]


def test_a_binary_file_is_named(tmp_path, capsys):
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"N,D,loss\n" + bytes(range(128, 256)) * 4)
    assert fails(capsys, "--csv", binary, "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--method", "approach3") == (
        f"lm fit: error: {binary} is not a UTF-8 text file (byte 0x80 cannot be decoded); "
        "give a CSV text file")
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"N,D,loss\n1e8,1e9,3.0\n2e8,\x001e9,2.9\n")
    assert fails(capsys, "--csv", nul, "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--method", "approach3") == (
        f"lm fit: error: {nul} line 3: column 'D' must be a number > 0; got '\\x001e9'")


def test_no_numpy_warning_reaches_stderr(tmp_path):
    """A stationary start (zero gradient) used to divide by zero in the line search, and
    numpy's RuntimeWarnings went to stderr; now stderr holds only lm fit's own lines."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, f = batched_bfgs(lambda x: (np.sum(x ** 2, axis=1), 2 * x), np.zeros((2, 3)))
    assert np.all(x == 0) and np.all(f == 0)
    N, D, _, loss = isoflop_design([1e20], 9, 0.003)  # a single budget: warnings, wild fits
    path = write_csv(tmp_path / "one.csv", {"N": N, "D": D, "loss": loss})
    result = subprocess.run([sys.executable, "-W", "default", "-m", "lm.scaling.cli", "fit",
                             "--csv", str(path), "--n-col", "N", "--d-col", "D", "--loss-col",
                             "loss", "--method", "all", "--bootstrap", "4"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith(("lm fit: ", "method", "-", "approach"))
                         for line in lines), result.stderr


def test_at_flops_must_be_finite(tmp_path, capsys):
    N, D, _, loss = isoflop_design(BUDGETS, 5, 0.003)
    path = write_csv(tmp_path / "p.csv", {"N": N, "D": D, "loss": loss})
    assert fails(capsys, "--csv", path, "--n-col", "N", "--d-col", "D", "--loss-col", "loss",
                 "--method", "approach3", "--at-flops", "inf") == (
        "lm fit: error: --at-flops must all be finite and > 0; got inf")
