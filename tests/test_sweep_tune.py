"""Tuned sweeps: rules and tune grids expand into named members (rules, then tune, then
steps), every bad field is named, sweep.json keeps a description, results.csv marks each
point's best member, and `lm sweep status` names it; end to end on tiny_tune_ci."""

import json
from pathlib import Path

import pytest

from lm.config import ConfigError
from lm.scaling.counts import train_flops_per_token
from lm.sweep.grid import expand, load_sweep
from lm.sweep.plan import RunSpec, format_table, tokens_for_budget
from lm.sweep.results import RESULT_COLUMNS, read_results, write_results
from lm.sweep.runner import _spec_json, load_plan
from lm.sweep.slurm import SlurmOptions, write_job
from lm.sweep.status import status_report

from tests.test_sweep_grid import sweep
from tests.test_sweep_results import log_run
from tests.helpers import lm_sweep
from tests.test_sweep_runner import corpus, data_overrides  # noqa: F401 (fixtures)

TINY_TUNE_CI = Path(__file__).resolve().parents[1] / "experiments" / "sweeps" / "tiny_tune_ci.py"
TOKENS_PER_STEP = 16 * 128  # tests.test_sweep_grid's base: batch 16 x max_seq_len 128


def n_sweep(**fields):
    """Kind n: d32-L2 and d64-L2 on 1e6 tokens (489 steps at the base batch of 16)."""
    return sweep(**{"kind": "n", "model_sizes": [27e3, 95e3], "tokens": 1e6, **fields})


# ---------------------------------------------------------------- expansion

def test_tune_makes_one_member_per_combination_in_order():
    specs = expand(n_sweep(tune={"train.lr": [3e-3, 1e-2], "train.weight_decay": [0.0, 0.1]}))
    assert [s.name for s in specs] == [
        "d32-L2_lr0.003_weight_decay0", "d32-L2_lr0.003_weight_decay0.1",
        "d32-L2_lr0.01_weight_decay0", "d32-L2_lr0.01_weight_decay0.1",
        "d64-L2_lr0.003_weight_decay0", "d64-L2_lr0.003_weight_decay0.1",
        "d64-L2_lr0.01_weight_decay0", "d64-L2_lr0.01_weight_decay0.1"]
    assert [s.point for s in specs] == ["d32-L2"] * 4 + ["d64-L2"] * 4
    assert specs[1].hparams == {"train.lr": 0.003, "train.weight_decay": 0.1}
    cfg = specs[1].config()
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.steps) == (0.003, 0.1, 489)


def test_untuned_runs_are_their_own_point():
    spec, _ = expand(n_sweep())
    assert (spec.name, spec.point, spec.hparams) == ("d32-L2", "d32-L2", {})


def test_rules_receive_the_planned_point():
    seen = []
    specs = expand(sweep(kind="isoflop", flops="exact", budgets=[1e12], model_sizes=[27e3, 95e3],
                         rules={"train.lr": lambda p: seen.append(p) or 1e-3}))
    assert [s.name for s in specs] == ["C1e12-d32-L2", "C1e12-d64-L2"]  # rules alone: names as before
    assert [s.point for s in specs] == [s.name for s in specs]
    p, spec = seen[0], specs[0]
    cfg = spec.config()
    assert (p.name, p.budget, p.d_model, p.num_layers, p.num_heads, p.d_ff) == (
        "C1e12-d32-L2", 1e12, 32, 2, 1, 96)
    assert (p.n, p.n_total, p.n_non_embedding) == (spec.n_non_embedding, spec.n_total,
                                                   spec.n_non_embedding)
    assert (p.vocab_size, p.seq_len, p.batch_size) == (1024, 128, 16)
    assert p.flops_per_token == train_flops_per_token(cfg.model, 128)
    assert p.tokens == tokens_for_budget(1e12, cfg.model, 128, flops="exact", n_kind="non_embedding")
    assert spec.hparams == {"train.lr": 1e-3}


def test_rules_then_tune_then_steps_from_the_members_batch_size():
    warmup = lambda p: max(1, round(p.n / (p.batch_size * p.seq_len)))  # noqa: E731 (Porian: N tokens)
    specs = expand(n_sweep(rules={"train.warmup_steps": warmup, "train.lr": lambda p: 1.0},
                           tune={"train.lr": [3e-3], "train.batch_size": [8, 32]}))
    assert [s.name for s in specs][:2] == ["d32-L2_lr0.003_batch_size8", "d32-L2_lr0.003_batch_size32"]
    small, large = specs[:2]
    assert small.hparams == {"train.warmup_steps": 13, "train.lr": 0.003, "train.batch_size": 8}
    assert large.hparams["train.warmup_steps"] == 13  # the rule saw the base batch size, 16
    assert (small.config().train.steps, large.config().train.steps) == (977, 245)  # ceil(1e6 / B*128)
    assert small.tokens == 977 * 8 * 128 and large.tokens == 245 * 32 * 128  # D kept, to a step
    assert specs[2].hparams["train.warmup_steps"] == round(specs[2].n_non_embedding / TOKENS_PER_STEP)


def test_a_callable_grid_can_centre_on_a_rule():
    lr_rule = lambda p: 1e-2 * (p.n / 1e4) ** -0.5  # noqa: E731
    specs = expand(n_sweep(tune={"train.lr": lambda p: [lr_rule(p) * f for f in (0.5, 2)]}))
    assert [s.name for s in specs] == ["d32-L2_lr0.00306", "d32-L2_lr0.0122",
                                       "d64-L2_lr0.00163", "d64-L2_lr0.00651"]
    assert specs[0].hparams["train.lr"] == pytest.approx(0.5 * 1e-2 * (26_784 / 1e4) ** -0.5)


def test_fields_sharing_a_name_are_spelled_out():
    specs = expand(n_sweep(model_sizes=[27e3], tune={"data.seed": [1], "train.seed": [2, 3]}))
    assert [s.name for s in specs] == ["d32-L2_data-seed1_train-seed2", "d32-L2_data-seed1_train-seed3"]


def test_small_and_textual_values_name_runs_safely():
    specs = expand(n_sweep(model_sizes=[27e3], tune={"train.lr": [3e-5, 1.25e-4],
                                                       "train.schedule": ["wsd", "cosine"]}))
    assert [s.name for s in specs] == ["d32-L2_lr3e-5_schedulewsd", "d32-L2_lr3e-5_schedulecosine",
                                       "d32-L2_lr0.000125_schedulewsd", "d32-L2_lr0.000125_schedulecosine"]


def test_the_plan_table_shows_points_and_values():
    specs = expand(n_sweep(rules={"train.warmup_steps": lambda p: 7}, tune={"train.lr": [3e-3, 1e-2]}))
    lines = format_table(specs, n_kind="non_embedding").splitlines()
    assert lines[0].split()[:5] == ["run", "point", "train.warmup_steps", "train.lr", "budget"]
    assert lines[2].split()[:4] == ["d32-L2_lr0.003", "d32-L2", "7", "0.003"]
    assert lines[-1].startswith("4 runs at 2 points; N = non_embedding parameters")


# ---------------------------------------------------------------- named errors

@pytest.mark.parametrize("fields,message", [
    (dict(tunes={"train.lr": [1]}), "sweep field 'tunes': unknown key; did you mean 'tune'?"),
    (dict(rules=[1]), "sweep field 'rules': must be a dict keyed by config field ('train.lr'), got [1]"),
    (dict(rules={"train.lrr": abs}),
     "sweep field 'rules.train.lrr': unknown config field; did you mean 'rules.train.lr'?"),
    (dict(tune={"lr": [1e-3]}), "sweep field 'tune.lr': unknown config field; did you mean 'tune.train.lr'?"),
    (dict(tune={"foo.bar": [1]}), "sweep field 'tune.foo.bar': unknown config field; name one as "
                                  "'section.field', the sections being data, mesh, model, pipeline, sample, train"),
    (dict(tune={"mesh.dcn": [1]}), "sweep field 'tune.mesh.dcn': is a config section; name one of its fields"),
    (dict(tune={"model.d_model": [64]}), "sweep field 'tune.model.d_model': is set by the sweep planner "
                                         "in every run, so it cannot be tuned or ruled"),
    (dict(rules={"train.steps": abs}), "sweep field 'rules.train.steps': is set by the sweep planner "
                                       "in every run, so it cannot be tuned or ruled"),
    (dict(tune={"model.vocab_size": [512]}), "sweep field 'tune.model.vocab_size': decides the data the "
                                             "sweep prepares once for all runs, so it cannot be tuned or ruled"),
    (dict(rules={"train.lr": 3e-3}),
     "sweep field 'rules.train.lr': must be a callable of the planned point, got 0.003; put a fixed value in base"),
    (dict(tune={"train.lr": 3e-3}), "sweep field 'tune.train.lr': must be a list of values (or a callable of "
                                    "the planned point returning one), got 0.003"),
    (dict(tune={"train.lr": []}), "sweep field 'tune.train.lr': is empty; give at least one value"),
    (dict(tune={"train.lr": [1e-2, 0.01]}), "sweep field 'tune.train.lr': 0.01 appears twice; give distinct values"),
    (dict(tune={"train.lr": [1.0001e-5, 1.0002e-5]}),
     "sweep field 'tune.train.lr': 1.0001e-05 and 1.0002e-05 both read '1e-5' in run names; make numbers "
     "differ in their first 3 significant digits, text in its letters, digits or . + -"),
    (dict(tune={"train.schedule": ["a b", "a_b"]}),
     "sweep field 'tune.train.schedule': 'a b' and 'a_b' both read 'a-b' in run names; make numbers "
     "differ in their first 3 significant digits, text in its letters, digits or . + -"),
    (dict(tune={"train.lr": ["fast"]}),
     "sweep field 'tune.train.lr': config field 'train.lr': expects a float, got 'fast' (str)"),
])
def test_bad_rules_and_tune_are_named(fields, message):
    with pytest.raises(ConfigError) as err:
        n_sweep(**fields)
    assert str(err.value) == message


def test_approach1_schedule_cannot_be_tuned():
    with pytest.raises(ConfigError) as err:
        sweep(kind="approach1", model_sizes=[27e3], tokens=[1e6], tune={"train.schedule": ["wsd"]})
    assert str(err.value) == ("sweep field 'tune.train.schedule': is set by the sweep planner in every run, "
                              "so it cannot be tuned or ruled")


def isoflop(**fields):
    return sweep(kind="isoflop", flops="6n", budgets=[1e12], model_sizes=[27e3], **fields)


@pytest.mark.parametrize("fields,message", [
    (dict(rules={"train.warmup_steps": lambda p: 1 // 0}),
     "sweep field 'rules.train.warmup_steps' failed for run C1e12-d32-L2: ZeroDivisionError: "
     "integer division or modulo by zero"),
    (dict(tune={"train.lr": lambda p: {}[p.n]}),
     "sweep field 'tune.train.lr' failed for run C1e12-d32-L2: KeyError: 26784"),
    (dict(tune={"train.lr": lambda p: []}),
     "sweep field 'tune.train.lr' for run C1e12-d32-L2: is empty; give at least one value"),
    (dict(tune={"train.lr": lambda p: [p.n, p.n]}),
     "sweep field 'tune.train.lr' for run C1e12-d32-L2: 26784 appears twice; give distinct values"),
    (dict(rules={"train.warmup_steps": lambda p: 1.5}),
     "sweep field 'rules.train.warmup_steps' for run C1e12-d32-L2: config field 'train.warmup_steps': "
     "expects a int, got 1.5 (float)"),
    (dict(tune={"train.warmup_steps": [5, -1]}),
     "run C1e12-d32-L2_warmup_steps-1: config field 'train.warmup_steps': must be >= 0, got -1"),
])
def test_bad_values_for_a_point_name_the_field_and_run(fields, message):
    with pytest.raises(ConfigError) as err:
        expand(isoflop(**fields))
    assert str(err.value) == message


def test_overriding_a_tuned_or_ruled_field_is_refused():
    s = n_sweep(rules={"train.warmup_steps": lambda p: 7}, tune={"train.lr": [3e-3]})
    for arg, key in (("--config.train.lr=0.1", "tune.train.lr"),
                     ("--config.train.warmup_steps=3", "rules.train.warmup_steps")):
        with pytest.raises(ConfigError) as err:
            expand(s, [arg])
        field = key.split(".", 1)[1]
        assert str(err.value) == (f"config field '{field}' is set per run by the sweep's '{key}'; "
                                  "change the sweep file instead of overriding it")


# ---------------------------------------------------------------- sweep.json

def test_sweep_json_describes_rules_and_grids_and_round_trips_the_runs():
    s = load_sweep(TINY_TUNE_CI)
    record = json.loads(json.dumps(s.to_dict()))
    assert record["tune"] == {"train.lr": [0.003, 0.01]}
    rule = record["rules"]["train.warmup_steps"]
    assert rule.startswith("warmup_steps: def warmup_steps(p):")
    assert "round(p.n / (p.batch_size * p.seq_len))" in rule
    inline = n_sweep(tune={"train.lr": lambda p: [1e-3]}).to_dict()["tune"]["train.lr"]
    assert inline.startswith("test_sweep_json_describes_rules_and_grids_and_round_trips_the_runs.<locals>."
                             "<lambda>: inline = n_sweep(tune={\"train.lr\": lambda p: [1e-3]})")
    specs = expand(s)
    assert [RunSpec(**run) for run in _spec_json(specs)] == specs


def test_a_plan_saved_before_tuning_loads_with_defaults(tmp_path):
    spec = expand(n_sweep())[0]
    run = _spec_json([spec])[0]
    del run["point"], run["hparams"]
    (tmp_path / "sweep.json").write_text(json.dumps({"sweep": {"kind": "n"}, "runs": [run]}))
    _, (loaded,) = load_plan(tmp_path)
    assert loaded == spec and loaded.point == "d32-L2" and loaded.hparams == {}


# ---------------------------------------------------------------- results and status

@pytest.fixture
def logged(tmp_path):
    """tiny_tune_ci's plan with made-up metrics: at C5e9-d32-L1 both members done, the second
    lower; at C5e9-d32-L2 the first done without a held-out loss, the second failed."""
    specs = expand(load_sweep(TINY_TUNE_CI))
    (tmp_path / "sweep.json").write_text(json.dumps(
        {"sweep": load_sweep(TINY_TUNE_CI).to_dict(), "runs": _spec_json(specs)}))
    losses = {specs[0].name: ([5.0] * 35, {35: 4.2}), specs[1].name: ([5.0] * 35, {35: 4.1}),
              specs[2].name: ([4.8] * 18, {}), specs[3].name: ([6.0] * 3, {})}
    for name, (train, evals) in losses.items():
        log_run(tmp_path / "runs" / name, train, evals)
    for spec in specs[:3]:
        (tmp_path / "runs" / spec.name / "checkpoints" / str(spec.config().train.steps)).mkdir(parents=True)
    (tmp_path / "runs" / specs[3].name / "exit.json").write_text('{"returncode": 1}')
    return tmp_path, specs


def test_results_mark_the_best_member_of_each_point(logged):
    workdir, specs = logged
    statuses = ["done", "done", "done", "failed"]
    results, _ = write_results(workdir, "isoflop", [(s, st, workdir / "runs" / s.name)
                                                     for s, st in zip(specs, statuses)])
    assert results.read_text().splitlines()[0] == ",".join(RESULT_COLUMNS)
    rows = read_results(results)
    assert [(r["point"], r["best"]) for r in rows] == [
        ("C5e9-d32-L1", 0), ("C5e9-d32-L1", 1), ("C5e9-d32-L2", 1), ("C5e9-d32-L2", None)]
    assert [(r["hp.train.lr"], r["hp.train.warmup_steps"]) for r in rows] == [
        (0.003, 6), (0.01, 6), (0.003, 12), (0.01, 12)]


def test_ties_go_to_the_first_member_and_other_fields_get_hp_columns(tmp_path):
    specs = expand(isoflop(tune={"train.weight_decay": [0.0, 0.1], "train.batch_size": [8, 16]}))
    for spec in specs:
        log_run(tmp_path / spec.name, [5.0], {1: 4.0})
    results, _ = write_results(tmp_path, "isoflop", [(s, "done", tmp_path / s.name) for s in specs])
    assert results.read_text().splitlines()[0] == ",".join([*RESULT_COLUMNS, "hp.train.weight_decay"])
    rows = read_results(results)
    assert [r["best"] for r in rows] == [1, 0, 0, 0]
    assert [(r["hp.train.weight_decay"], r["batch_size"]) for r in rows] == [
        (0.0, 8), (0.0, 16), (0.1, 8), (0.1, 16)]


def test_results_written_before_tuning_still_read(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(",".join(RESULT_COLUMNS[:21]) + "\n" + ",".join(
        ["a", "done", "n", "", *["1"] * 12, *["1.0"] * 5]) + "\n")
    row, = read_results(path)
    assert row["run"] == "a" and row["heldout_loss"] == 1.0 and "best" not in row


def test_status_lists_members_and_the_best_per_point(logged):
    workdir, _ = logged
    lines = status_report(workdir).splitlines()
    assert lines[0].split() == ["C5e9-d32-L1_lr0.003", "done", "lr=0.003", "held-out", "loss", "4.2000"]
    assert lines[1].split() == ["*", "C5e9-d32-L1_lr0.01", "done", "lr=0.01", "held-out", "loss", "4.1000"]
    assert lines[2] == "point C5e9-d32-L1: best lr=0.01 (held-out 4.1000; 2 of 2 members done)"
    assert lines[3].split() == ["*", "C5e9-d32-L2_lr0.003", "done", "lr=0.003"]
    assert lines[4].startswith("  C5e9-d32-L2_lr0.01   failed    lr=0.01   step 3/18 logged")
    assert lines[5] == "point C5e9-d32-L2: best lr=0.003 (final train 4.8000; 1 of 2 members done)"
    assert lines[6] == "4 runs: 3 done, 0 started, 1 failed, 0 pending"


def test_status_of_a_point_with_no_member_done(logged):
    workdir, specs = logged
    for spec in specs[:2]:
        (workdir / "runs" / spec.name / "checkpoints" / "35").rmdir()
    lines = status_report(workdir).splitlines()
    assert [line.split()[1] for line in lines[:2]] == ["started", "started"]
    assert lines[2] == "point C5e9-d32-L1: no member done yet (0 of 2 members done)"


def test_slurm_runs_every_member(tmp_path):
    specs = expand(load_sweep(TINY_TUNE_CI))
    script = write_job(tmp_path, specs, SlurmOptions()).read_text()
    assert "#SBATCH --array=0-3" in script
    tasks = json.loads((tmp_path / "slurm" / "runs.json").read_text())
    assert [t["workdir"] for t in tasks] == [str(tmp_path / "runs" / s.name) for s in specs]
    assert [[a for a in t["args"] if a.startswith("--config.train.lr=")] for t in tasks] == [
        [], ["--config.train.lr=0.01"], [], ["--config.train.lr=0.01"]]  # 0.003 is the default


# ---------------------------------------------------------------- end to end

def test_a_tuned_sweep_runs_every_member_and_names_each_points_best(tmp_path, data_overrides):
    workdir = tmp_path / "sweep"
    code, out = lm_sweep("run", "--config", str(TINY_TUNE_CI), "--workdir", str(workdir),
                         "--parallel", "2", *data_overrides)
    assert code == 0, out
    assert "4 runs at 2 points" in out and sum(": done in " in line for line in out.splitlines()) == 4
    assert (workdir / "results.csv").read_text().splitlines()[0] == ",".join(RESULT_COLUMNS)
    rows = read_results(workdir / "results.csv")
    assert [(r["run"], r["point"], r["hp.train.lr"], r["hp.train.warmup_steps"], r["steps"])
            for r in rows] == [("C5e9-d32-L1_lr0.003", "C5e9-d32-L1", 0.003, 6, 35),
                               ("C5e9-d32-L1_lr0.01", "C5e9-d32-L1", 0.01, 6, 35),
                               ("C5e9-d32-L2_lr0.003", "C5e9-d32-L2", 0.003, 12, 18),
                               ("C5e9-d32-L2_lr0.01", "C5e9-d32-L2", 0.01, 12, 18)]
    assert len(read_results(workdir / "curves.csv")) == 35 + 35 + 18 + 18
    code, status = lm_sweep("status", "--workdir", str(workdir))
    for point in ("C5e9-d32-L1", "C5e9-d32-L2"):
        members = [r for r in rows if r["point"] == point]
        assert all(r["status"] == "done" and r["heldout_loss"] is not None for r in members)
        best, = [r for r in members if r["best"] == 1]
        assert best["heldout_loss"] == min(r["heldout_loss"] for r in members)
        assert f"* {best['run']} " in status
        assert (f"point {point}: best lr={best['hp.train.lr']:.4g} (held-out {best['heldout_loss']:.4f}; "
                "2 of 2 members done)") in status.splitlines()
