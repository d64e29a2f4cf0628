"""`lm sweep study`: study files validated field by field; the backtest's stored plan; a
failed run stopping the study before fitting; a study on synthetic sweep results (a known
law, bracketed) whose backtest trains for real; and porian_ci end to end, rerun."""

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lm.config import ConfigError
from lm.scaling.cli import main as fit_main
from lm.sweep.grid import expand, load_sweep
from lm.sweep import study_fit
from lm.sweep.results import read_results, write_results
from lm.sweep.runner import RunStatus
from lm.sweep.study import StudyError, run_study
from lm.sweep.study_backtest import BacktestPlan, check_plan, read_plan, write_plan
from lm.sweep.study_file import load_study, parse_study
from lm.sweep.study_fit import fit_step, predict, score
from lm.sweep.tune import describe

from tests.helpers import lm_sweep
from tests.test_sweep_runner import corpus, data_overrides  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "experiments" / "sweeps"
PORIAN_CI = ROOT / "experiments" / "studies" / "porian_ci.py"
I, II, IV = (SWEEPS / f"porian_ci_{step}.py" for step in ("i", "ii", "iv"))


def study(**changes) -> dict:
    """porian_ci's study with absolute sweep paths (top-level fields replaced by `changes`)."""
    raw = {"steps": [{"name": "i", "title": "one LR", "sweep": str(I)},
                     {"name": "ii", "title": "head FLOPs", "sweep": str(II)},
                     {"name": "iii", "title": "warmup", "sweep": str(IV),
                      "fit": {"members": "train.lr=0.01"}},
                     {"name": "iv", "title": "LR tuned", "sweep": str(IV)}],
           "method": "approach2", "bootstrap": 20, "seed": 0,
           "backtest": {"step": "iv", "factor": 2, "methods": ["approach2", "approach3"],
                        "size_from": "approach2"}}
    raw.update(changes)
    return raw


def write_study(directory: Path, raw, name: str = "study.py") -> Path:
    path = directory / name
    path.write_text(f"def get_study():\n    return {raw!r}\n")
    return path


# ---------------------------------------------------------------- study files

def test_porian_ci_loads_with_the_sweeps_conventions():
    loaded = load_study(PORIAN_CI)
    assert [(s.name, s.sweep_name) for s in loaded.steps] == [
        ("i", "porian_ci_i"), ("ii", "porian_ci_ii"), ("iii", "porian_ci_iv"), ("iv", "porian_ci_iv")]
    assert list(loaded.sweeps()) == ["porian_ci_i", "porian_ci_ii", "porian_ci_iv"]
    fits = {s.name: (s.fit.n_convention, s.fit.c_convention, s.fit.members) for s in loaded.steps}
    assert fits == {"i": ("non_embedding", "6ND", "best"), "ii": ("non_embedding", "exact", "best"),
                    "iii": ("non_embedding", "exact", "train.lr=0.01"),
                    "iv": ("non_embedding", "exact", "best")}
    assert all((s.fit.loss, s.fit.keep_unbracketed, s.fit.rtol) == ("heldout", False, 0.01)
               for s in loaded.steps)
    assert (loaded.method, loaded.bootstrap, loaded.seed) == ("approach2", 20, 0)
    assert loaded.backtest.step == "iv" and loaded.backtest.factor == 2.0
    assert loaded.backtest.methods == ("approach2", "approach3")


def test_backtest_methods_and_size_from_default_to_the_method(tmp_path):
    parsed = parse_study(study(method="approach3", backtest={"step": "ii", "factor": 4}),
                         tmp_path / "s.py")
    assert (parsed.backtest.methods, parsed.backtest.size_from) == (("approach3",), "approach3")
    assert parse_study(study(backtest=None), tmp_path / "s.py").backtest is None


def _set(path: str, value):
    """A change to study(): `value` at the dotted path ("steps.2.fit.members")."""
    def change(raw):
        *keys, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        target = raw
        for key in keys:
            target = target[key]
        target[last] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_set("bootstrp", 20), "study field 'bootstrp': unknown key; did you mean 'bootstrap'?"),
    (_set("steps.2.fit.membres", "best"),
     "study field 'steps[2].fit.membres': unknown key; did you mean 'steps[2].fit.members'?"),
    (_set("steps.0.colour", "red"),
     "study field 'steps[0].colour': unknown key; known: name, title, sweep, fit"),
    (_set("steps", []), "study field 'steps': must be a non-empty list of steps, got []"),
    (lambda raw: raw["steps"][0].pop("name"), "study field 'steps[0].name': is required"),
    (_set("steps.0.fit", ["best"]), "study field 'steps[0].fit' must be a dict, got list"),
    (_set("steps.3.name", "i"),
     "study field 'steps[3].name': 'i' is also the name of steps[0]; give each step its own"),
    (_set("method", "approach1"), "study field 'method': 'approach1' is not one of approach2, "
                                  "approach3"),
    (_set("bootstrap", 1), "study field 'bootstrap': must be 0 (no intervals) or >= 2 resamples, "
                           "got 1"),
    (_set("seed", -1), "study field 'seed': must be an integer >= 0, got -1"),
    (_set("steps.0.fit", {"n_convention": "embedding"}),
     "study field 'steps[0].fit.n_convention': 'embedding' is not one of total, non_embedding"),
    (_set("steps.0.fit", {"c_convention": "6nd"}),
     "study field 'steps[0].fit.c_convention': '6nd' is not one of 6ND, exact"),
    (_set("steps.0.fit", {"loss": "val"}),
     "study field 'steps[0].fit.loss': 'val' is not one of heldout, train"),
    (_set("steps.0.fit", {"keep_unbracketed": "yes"}),
     "study field 'steps[0].fit.keep_unbracketed': must be True or False, got 'yes'"),
    (_set("steps.0.fit", {"rtol": 1}), "study field 'steps[0].fit.rtol': must be a number in "
                                       "[0, 1), got 1"),
    (_set("steps.2.fit.members", "train.wd=0.1"),
     "study field 'steps[2].fit.members': 'train.wd=0.1': give best, all or FIELD=VALUE with "
     "FIELD one of train.lr, train.warmup_steps (the sweep's hp.* columns)"),
    (_set("steps.2.fit.members", "train.lr=0.02"),
     "study field 'steps[2].fit.members': 'train.lr=0.02': 0.02 is not among the sweep's "
     "tune.train.lr values (0.01, 0.03)"),
    (lambda raw: raw["backtest"].pop("factor"), "study field 'backtest.factor': is required"),
    (_set("backtest.step", "v"), "study field 'backtest.step': 'v' is not a step name "
                                 "(i, ii, iii, iv)"),
    (_set("backtest.factor", 1), "study field 'backtest.factor': must be a number > 1 (the "
                                 "backtest budget is factor x the step's largest budget), got 1"),
    (_set("backtest.methods", ["approach2", "approach1"]),
     "study field 'backtest.methods[1]': 'approach1' is not one of approach2, approach3"),
    (_set("backtest.methods", ["approach3", "approach3"]),
     "study field 'backtest.methods[1]': 'approach3' appears twice"),
    (_set("backtest.size_from", "km"),
     "study field 'backtest.size_from': 'km' is not one of approach2, approach3"),
])
def test_bad_fields_are_named(tmp_path, change, message):
    raw = copy.deepcopy(study())
    change(raw)
    with pytest.raises(ConfigError) as err:
        parse_study(raw, tmp_path / "study.py")
    assert str(err.value) == message


def sweep_error(tmp_path, step: int, sweep: str) -> str:
    """The ConfigError message of the test study with steps[step] on `sweep`."""
    raw = study()
    raw["steps"][step]["sweep"] = sweep
    with pytest.raises(ConfigError) as err:
        parse_study(raw, tmp_path / "study.py")
    return str(err.value)


def test_bad_sweeps_are_named(tmp_path):
    assert sweep_error(tmp_path, 1, "nope.py") == (
        f"study field 'steps[1].sweep': {tmp_path.resolve() / 'nope.py'} does not exist "
        "(relative paths are relative to the study file)")
    assert sweep_error(tmp_path, 0, str(SWEEPS / "km_n.py")) == (
        f"study field 'steps[0].sweep': {SWEEPS / 'km_n.py'} is a kind 'n' sweep; a study fits "
        "IsoFLOP sweeps (kind 'isoflop')")
    (tmp_path / "bad.py").write_text(I.read_text().replace('"budgets": [6e9, 1.4e10]',
                                                           '"budgets": [-1, 1.4e10]'))
    assert sweep_error(tmp_path, 0, "bad.py") == (
        f"study field 'steps[0].sweep': {tmp_path.resolve() / 'bad.py'}: sweep field 'budgets': "
        "-1 is not a positive number")
    (tmp_path / "other").mkdir()
    shutil.copy(I, tmp_path / "other" / I.name)
    assert sweep_error(tmp_path, 1, f"other/{I.name}") == (
        f"study field 'steps[1].sweep': {tmp_path.resolve() / 'other' / I.name} and {I} share "
        "the name 'porian_ci_i' (their runs go to DIR/sweeps/porian_ci_i); rename one")


def test_load_study_names_the_file(tmp_path):
    path = write_study(tmp_path, study(method="approach1"))
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert str(err.value) == (f"{path}: study field 'method': 'approach1' is not one of "
                              "approach2, approach3")
    path = write_study(tmp_path, ["steps"], name="list.py")
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert str(err.value) == f"{path}: get_study() must be a dict, got list"


# ---------------------------------------------------------------- backtest plan, scores

def test_the_backtest_plan_is_a_sweep_file_of_one_point(tmp_path):
    plan = BacktestPlan("iv", str(IV), 2.8e10, "approach2", 39000.5)
    path = write_plan(tmp_path, plan, PORIAN_CI)
    assert read_plan(tmp_path) == plan and read_plan(tmp_path / "none") is None
    planned, source = load_sweep(path), load_sweep(IV)
    assert (planned.budgets, planned.model_sizes, planned.n_tolerance) == ((2.8e10,), ((39000.5,),), 0.5)
    assert (planned.base, planned.family, planned.flops, planned.n_kind, planned.tune) == (
        source.base, source.family, source.flops, source.n_kind, source.tune)
    assert describe(planned.rules) == describe(source.rules)
    specs = expand(planned)
    assert [(s.name, s.n_non_embedding, s.hparams) for s in specs] == [
        ("C2.8e10-d40-L2_lr0.01", 39880, {"train.warmup_steps": 19, "train.lr": 0.01}),
        ("C2.8e10-d40-L2_lr0.03", 39880, {"train.warmup_steps": 19, "train.lr": 0.03})]
    check_plan(plan, "iv", str(IV), 2.8e10, "approach2", path)
    with pytest.raises(ConfigError) as err:
        check_plan(plan, "iv", str(IV), 4.2e10, "approach2", path)
    assert str(err.value) == (f"{path} planned the backtest with budget=2.8e+10, the study now "
                              f"asks for 4.2e+10; delete {tmp_path} to plan it afresh, or use a "
                              "new --workdir")
    with pytest.raises(ConfigError, match=r"with size_from='approach2', the study now asks for "
                                          r"'approach3'; delete"):
        check_plan(plan, "iv", str(IV), 2.8e10, "approach3", path)


def test_score_is_the_relative_error_and_the_interval_cover():
    prediction = {"N_opt": 1e4, "loss_opt": 4.4, "interval": [4.0, 4.6], "relative_error": None,
                  "covered": None, "error": None, "warnings": []}
    scored = score(prediction, 5.0)
    assert scored["relative_error"] == (4.4 - 5.0) / 5.0 and scored["covered"] is False
    assert score(prediction, 4.5)["covered"] is True
    assert score({**prediction, "interval": None}, 4.5)["covered"] is None
    failed = {**prediction, "loss_opt": None, "N_opt": None, "error": "no fit"}
    assert score(failed, 4.5) == failed


# ---------------------------------------------------------------- a run that failed

def test_a_failed_run_stops_the_study_before_fitting(tmp_path, monkeypatch, capsys):
    path = write_study(tmp_path, study(steps=[{"name": "i", "sweep": str(I)}], backtest=None))
    workdir = tmp_path / "study"
    run_dir = workdir / "sweeps" / "porian_ci_i" / "runs" / "C6e9-d16-L1"

    def one_failed(sweep_file, directory, overrides, *, parallel):
        run_dir.mkdir(parents=True)
        (run_dir / "stderr.log").write_text("=== header\nValueError: bad corpus\n")
        return [RunStatus("C6e9-d16-L1", "failed", 145, returncode=1),
                RunStatus("C6e9-d24-L1", "done", 70)]

    monkeypatch.setattr("lm.sweep.study.run_sweep", one_failed)
    message = (f"sweep porian_ci_i: 1 of 2 runs not done, so the study stops before fitting: run "
               f"C6e9-d16-L1 failed (exit 1): ValueError: bad corpus; see {run_dir / 'stderr.log'}."
               " Fix the cause and rerun `lm sweep study` to resume")
    with pytest.raises(StudyError) as err:
        run_study(path, workdir)
    assert str(err.value) == message
    assert not (workdir / "study.json").exists()
    shutil.rmtree(run_dir)
    code, out = lm_sweep("study", "--config", str(path), "--workdir", str(workdir))
    assert code == 1 and "[study] sweep porian_ci_i:" in out
    assert capsys.readouterr().err == f"lm sweep study: error: {message}\n"


# ---------------------------------------------------------------- synthetic sweep results

E, A, B = 3.0, 58.7, 225.0  # L = E + A / sqrt(N) + B / sqrt(D): minima inside both budgets' sizes


def law_loss(spec) -> float:
    """The synthetic held-out loss of a porian_ci_iv member (lr 0.01 a little worse)."""
    worse = 0.02 if spec.hparams["train.lr"] == 0.01 else 0.0
    return E + A / spec.n_non_embedding ** 0.5 + B / spec.tokens ** 0.5 + worse


def fake_done_runs(sweep_file: Path, workdir: Path, overrides) -> list:
    """Every run of the sweep in `workdir` done (its final checkpoint's directory and a
    metrics.jsonl with the law's loss) without training; their specs."""
    specs = expand(load_sweep(sweep_file), overrides, prepared_dir=str(workdir / "data"))
    for spec in specs:
        steps = spec.config().train.steps
        run = workdir / "runs" / spec.name
        (run / "checkpoints" / str(steps)).mkdir(parents=True)
        loss = law_loss(spec)
        records = [{"step": steps, "kind": kind, "loss": loss} for kind in ("train", "eval")]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return specs


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _estimate(value: float, interval) -> str:
    """A value as study.md shows it, with its interval when there is one."""
    return f"{value:.3f}" + ("" if interval is None else f" ({interval[0]:.3f}–{interval[1]:.3f})")


def _intervals_or_why(value: float, interval, warnings) -> None:
    """An interval holds the estimate; without one (a design too thin to resample), a
    warning says why."""
    if interval is None:
        assert any(w.startswith("no bootstrap intervals: ") for w in warnings)
    else:
        assert interval[0] - 1e-9 <= value <= interval[1] + 1e-9


@pytest.fixture
def law_sweep(tmp_path) -> tuple:
    """porian_ci_iv's runs with the law's losses in tmp_path/sweep (results.csv written), and
    step iv of the study."""
    directory = tmp_path / "sweep"
    specs = fake_done_runs(IV, directory, [])
    write_results(directory, "isoflop", [(s, "done", directory / "runs" / s.name) for s in specs])
    return directory, parse_study(study(), tmp_path / "study.py").step("iv")


def test_a_failed_bootstrap_keeps_the_fit_without_intervals(law_sweep, monkeypatch):
    directory, step = law_sweep
    real = study_fit.method_report

    def thin(method, data, options, at_flops):
        if options.bootstrap:
            raise ValueError("approach 2 bootstrap: too few usable draws")
        return real(method, data, options, at_flops)

    monkeypatch.setattr(study_fit, "method_report", thin)
    record = fit_step(step, directory, "approach2", bootstrap=10, seed=0)
    assert record["error"] is None and record["a_interval"] is record["b_interval"] is None
    assert record["a"] > 0 and record["budgets_fitted"] == [6e9, 1.4e10]
    assert "no bootstrap intervals: approach 2 bootstrap: too few usable draws" in record["warnings"]
    prediction = predict("approach2", step, directory, 2.8e10, bootstrap=10, seed=0)
    assert prediction["interval"] is None and prediction["loss_opt"] > 0


def test_failed_fits_are_recorded_not_raised(law_sweep, monkeypatch):
    directory, step = law_sweep
    monkeypatch.setattr(study_fit, "method_report",
                        lambda method, data, options, at_flops: ({"derived": {}}, {}))
    record = fit_step(step, directory, "approach3", bootstrap=0, seed=0)
    assert record["error"] == ("approach3's fitted law has no compute-optimal allocation (see its "
                               "warnings), so it gives no exponent a, N_opt or loss")
    assert (record["a"], record["budgets"], record["budgets_fitted"]) == (None, [6e9, 1.4e10], None)
    wrong = dataclasses.replace(step, fit=dataclasses.replace(step.fit, members="train.lr=0.02"))
    record = fit_step(wrong, directory, "approach2", bootstrap=0, seed=0)
    assert record["error"].startswith("--members 'train.lr=0.02': no done run of ")
    assert record["budgets"] == [] and record["notes"] == []


def test_a_study_of_known_law_results_backtests_the_predicted_size(tmp_path, data_overrides,
                                                                   capsys):
    raw = {"steps": [{"name": "iii", "title": "warmup scaled to N", "sweep": str(IV),
                      "fit": {"members": "train.lr=0.01"}},
                     {"name": "iv", "title": "LR tuned per size", "sweep": str(IV)}],
           "bootstrap": 10, "backtest": {"step": "iv", "factor": 2,
                                         "methods": ["approach2", "approach3"]}}
    path, workdir = write_study(tmp_path, raw), tmp_path / "study"
    fake_done_runs(IV, workdir / "sweeps" / "porian_ci_iv", data_overrides)

    record = run_study(path, workdir, data_overrides, parallel=2)

    out = capsys.readouterr().out
    assert out.count(": already done") == 12 and out.count(": done in ") == 2
    assert "[study] sweep porian_ci_iv: all 12 runs done" in out
    assert "[study] backtest: all 2 runs done" in out
    iii, iv = record["steps"]
    for step in (iii, iv):
        assert step["error"] is None and step["excluded_budgets"] == []
        assert step["budgets"] == step["budgets_fitted"] == [6e9, 1.4e10]
        low, high = [m["N_opt"] for m in step["minima"]]
        assert 3376 < low < 11872 and 6984 < high < 23712  # bracketed
        assert step["a"] == pytest.approx(np.log(high / low) / np.log(1.4e10 / 6e9))
        assert step["at_flops"] == 1.4e10 and step["N_opt"] == pytest.approx(high)
        _intervals_or_why(step["a"], step["a_interval"], step["warnings"])
    assert iii["fit"]["members"] == "train.lr=0.01" and iii["a"] == pytest.approx(iv["a"])
    assert iii["loss_opt"] == pytest.approx(iv["loss_opt"] + 0.02)
    # The reproduce commands: `lm fit` with step iv's options fits the same law.
    fit_iv = record["commands"][2]
    assert fit_iv[:3] == ["lm", "fit", "--sweep"] and "best" in fit_iv
    assert fit_main(fit_iv[1:]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["derived"]["a"], report["derived"]["N_opt"]) == (iv["a"], [iv["N_opt"]])

    backtest = record["backtest"]
    plan = read_plan(workdir / "backtest")
    assert backtest["error"] is None and backtest["budget"] == plan.budget == 2.8e10
    methods = backtest["methods"]
    assert backtest["n_opt"] == plan.n_opt == methods["approach2"]["N_opt"]
    assert plan.n_opt == pytest.approx(iv["N_opt"] * 2 ** iv["a"])  # the power law, extrapolated
    run = backtest["run"]
    rows = read_results(workdir / "backtest" / "results.csv")
    assert [r["status"] for r in rows] == ["done", "done"]
    best, = [r for r in rows if r["best"] == 1]
    assert run["run"] == best["run"] and backtest["actual"] == run["loss"] == best["heldout_loss"]
    assert run["N"] == best["n_non_embedding"] and abs(run["N"] / plan.n_opt - 1) <= 0.5
    assert run["hparams"] == {"train.lr": best["hp.train.lr"],
                              "train.warmup_steps": best["hp.train.warmup_steps"]}
    table = []
    for method in ("approach2", "approach3"):
        p = methods[method]
        assert p["error"] is None
        assert p["relative_error"] == (p["loss_opt"] - backtest["actual"]) / backtest["actual"]
        _intervals_or_why(p["loss_opt"], p["interval"], p["warnings"])
        covered = None if p["interval"] is None else (
            p["interval"][0] <= backtest["actual"] <= p["interval"][1])
        assert p["covered"] == covered
        table.append(_row([method, "2.8e+10", f"{p['N_opt']:,.0f}", f"{run['N']:,.0f}",
                           _estimate(p["loss_opt"], p["interval"]), f"{backtest['actual']:.3f}",
                           f"{p['relative_error']:+.1%}",
                           {None: "–", True: "yes", False: "no"}[covered]]))
    text = (workdir / "study.md").read_text()
    assert text in out  # printed at the end
    assert _row(["iv", "LR tuned per size", _estimate(iv["a"], iv["a_interval"]),
                 f"{iv['b']:.3f}", "2 of 2", str(len(iv["warnings"]))]) in text.splitlines()
    assert "\n".join(table) in text
    assert all(f"- iv: {w}" in text for w in iv["warnings"])
    assert json.loads((workdir / "study.json").read_text()) == record

    # A rerun trains nothing and writes the same record; a changed backtest is refused.
    before = (workdir / "study.json").read_bytes()
    logs = {p: p.read_bytes() for p in (workdir / "backtest" / "runs").glob("*/stdout.log")}
    run_study(path, workdir, data_overrides, parallel=2)
    assert "[sweep] C2.8e10-d40-L2_lr0.03: already done" in capsys.readouterr().out
    assert (workdir / "study.json").read_bytes() == before
    assert {p: p.read_bytes() for p in logs} == logs
    raw["backtest"]["factor"] = 3
    with pytest.raises(ConfigError, match=r"backtest.py planned the backtest with budget=2.8e\+10, "
                                          r"the study now asks for 4.2e\+10; delete "):
        run_study(write_study(tmp_path, raw), workdir, data_overrides)


# ---------------------------------------------------------------- porian_ci end to end

@pytest.mark.slow  # 24 training runs and a backtest run: 2-2.5 minutes on 2 cores
def test_porian_ci_end_to_end_and_rerun(tmp_path, data_overrides, capsys):
    workdir = tmp_path / "porian_ci"
    code, out = lm_sweep("study", "--config", str(PORIAN_CI), "--workdir", str(workdir),
                         "--parallel", "2", *data_overrides)
    assert code == 0, out
    record = json.loads((workdir / "study.json").read_text())
    assert record["sweeps"] == {name: {"file": str(SWEEPS / f"{name}.py"),
                                       "dir": str(workdir / "sweeps" / name), "runs": runs}
                                for name, runs in (("porian_ci_i", 6), ("porian_ci_ii", 6),
                                                   ("porian_ci_iv", 12))}
    for name in record["sweeps"]:
        assert f"[study] sweep {name}: all" in out
        rows = read_results(workdir / "sweeps" / name / "results.csv")
        assert {r["status"] for r in rows} == {"done"}
    assert [s["name"] for s in record["steps"]] == ["i", "ii", "iii", "iv"]
    text = (workdir / "study.md").read_text()
    for step in record["steps"]:
        assert step["budgets"] == [6e9, 1.4e10]
        a = "failed" if step["error"] else f"{step['a']:.3f}"
        assert f"| {step['name']} | {step['title']} | {a}" in text
        if step["error"]:  # too few usable budgets at this size: recorded, the study went on
            assert step["error"].startswith("budget: ") and "usable IsoFLOP budget(s) of 2" in step["error"]
            assert f"- {step['name']} failed: {step['error']}" in text
        else:
            assert step["a_interval"][0] <= step["a"] <= step["a_interval"][1]
    for step, command in zip(record["steps"], record["commands"][1:]):  # reproduce each fit
        assert command[:4] == ["lm", "fit", "--sweep", step["sweep_dir"]]
        capsys.readouterr()
        if step["error"]:
            with pytest.raises(SystemExit) as exit:
                fit_main(command[1:])
            assert exit.value.code == 2
            assert capsys.readouterr().err == f"lm fit: error: {step['error']}\n"
        elif step["a_interval"] is not None:
            assert fit_main(command[1:]) == 0
            assert json.loads(capsys.readouterr().out)["derived"]["a"] == step["a"]
    backtest, iv = record["backtest"], record["steps"][3]
    assert (backtest["budget"], backtest["largest_budget"]) == (2.8e10, 1.4e10)
    if iv["error"]:
        assert backtest["error"] == (f"approach2 fitted on step iv's sweep gives no N_opt at "
                                     f"C = 2.8e+10: {iv['error']}")
        assert f"The backtest cannot run: {backtest['error']}" in text
        assert not (workdir / "backtest").exists()
    else:
        best, = [r for r in read_results(workdir / "backtest" / "results.csv") if r["best"] == 1]
        assert backtest["actual"] == best["heldout_loss"] and backtest["run"]["run"] == best["run"]
        for p in backtest["methods"].values():
            if p["loss_opt"] is not None:
                assert p["relative_error"] == (p["loss_opt"] - backtest["actual"]) / backtest["actual"]

    code, again = lm_sweep("study", "--config", str(PORIAN_CI), "--workdir", str(workdir),
                           "--parallel", "2", *data_overrides)
    assert code == 0 and ": done in " not in again and again.count(": already done") >= 24
    assert json.loads((workdir / "study.json").read_text()) == record
