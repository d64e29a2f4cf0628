"""The local runner end to end on the tiny_ci sweep (real training, a few steps per run):
data prepared once, runs in parallel, a failing run recorded while the others finish,
results and status, a rerun that skips done runs and resumes an interrupted one; and,
with a fake trainer in a subprocess, a sweep stopped by SIGTERM or Ctrl-C and resumed."""

import contextlib
import fcntl
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lm.config import ConfigError, parse_override, to_json_dict
from lm.data.corpus import stdlib_corpus
from lm.sweep.grid import expand, load_sweep
from lm.sweep.results import RESULT_COLUMNS, read_results
from lm.sweep.runner import config_args, launch, prepare, run_status, stderr_tail
from lm.train.metrics import read_metrics
from tests.helpers import lm_sweep

TINY_CI = Path(__file__).resolve().parents[1] / "experiments" / "sweeps" / "tiny_ci.py"
FAILING = "C8e8-d32-L2"  # its workdir holds another run's config, so `lm train` refuses it
INTERRUPTED = "C6e8-d32-L1"  # 17 steps, checkpoints at 15 and 17



@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """About 100 KB of small standard-library modules."""
    out = tmp_path_factory.mktemp("corpus")
    size = 0
    for doc in stdlib_corpus()[0]:
        if size > 100_000:
            break
        if len(doc.text) < 12_000:
            (out / doc.id).parent.mkdir(parents=True, exist_ok=True)
            (out / doc.id).write_text(doc.text)
            size += len(doc.text)
    return out


@pytest.fixture(scope="module")
def data_overrides(corpus) -> list[str]:
    return [f"--config.data.sources=['{corpus}']", "--config.data.heldout_fraction=0.1"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, data_overrides):
    workdir = tmp_path_factory.mktemp("sweep")
    spec = next(s for s in expand(load_sweep(TINY_CI), data_overrides) if s.name == FAILING)
    alien = to_json_dict(spec.config())
    alien["model"]["d_model"] = 48
    (workdir / "runs" / FAILING).mkdir(parents=True)
    (workdir / "runs" / FAILING / "config.json").write_text(json.dumps(alien))
    code, out = lm_sweep("run", "--config", str(TINY_CI), "--workdir", str(workdir),
                         "--parallel", "2", *data_overrides)
    return workdir, code, out


def test_every_run_trains_and_a_failure_is_recorded(first_run):
    workdir, code, out = first_run
    assert code == 1
    assert "4 runs; N = non_embedding parameters" in out  # the plan is printed first
    assert sum(": done in " in line for line in out.splitlines()) == 3
    failed, = [line for line in out.splitlines() if "FAILED" in line]
    assert f"{FAILING}: FAILED (exit 2)" in failed and "model.d_model" in failed
    assert json.loads((workdir / "runs" / FAILING / "exit.json").read_text()) == {"returncode": 2}
    assert "config field 'model.d_model'" in "\n".join(stderr_tail(workdir / "runs" / FAILING))
    # The data was prepared once, in DIR/data, and every run read it there.
    assert (workdir / "data" / "tokenizer" / "tokenizer.model").exists()
    for run in (workdir / "runs").iterdir():
        assert not (run / "tokenizer").exists() and not (run / "data").exists()
    plan = json.loads((workdir / "sweep.json").read_text())
    assert [r["name"] for r in plan["runs"]] == ["C6e8-d32-L1", "C6e8-d32-L2", "C8e8-d32-L1", FAILING]
    assert plan["sweep"]["kind"] == "isoflop"
    assert {r["overrides"]["data"]["prepared_dir"] for r in plan["runs"]} == {str(workdir / "data")}


def test_results_have_the_columns_and_sane_numbers(first_run):
    workdir, _, _ = first_run
    assert (workdir / "results.csv").read_text().splitlines()[0] == ",".join(RESULT_COLUMNS)
    rows = {r["run"]: r for r in read_results(workdir / "results.csv")}
    assert [rows[name]["status"] for name in rows] == ["done", "done", "done", "failed"]
    assert [rows[name]["steps"] for name in rows] == [17, 9, 22, 11]
    for row in rows.values():
        assert row["kind"] == "isoflop" and row["budget"] in (6e8, 8e8)
        assert row["tokens"] == row["steps"] * 8 * 64
        assert row["flops_6n_non_embedding"] == 6 * row["n_non_embedding"] * row["tokens"]
        assert abs(row["flops_6n_non_embedding"] / row["budget"] - 1) < 0.1
        assert row["flops_exact"] > row["flops_6n_total"] > row["flops_6n_non_embedding"]
        if row["status"] == "done":
            assert 3.0 < row["final_train_loss"] < 6.5 and 3.0 < row["heldout_loss"] < 6.5
        else:
            assert row["final_train_loss"] is None and row["heldout_loss"] is None
    curves = read_results(workdir / "curves.csv")
    assert len(curves) == 17 + 9 + 22
    assert [c["heldout_loss"] is not None for c in curves].count(True) == 3  # the final evals


def test_status_shows_each_run(first_run):
    workdir, _, _ = first_run
    code, out = lm_sweep("status", "--workdir", str(workdir))
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:2] == ["C6e8-d32-L1", "done"]
    failed = next(line for line in lines if line.startswith(FAILING))
    assert "failed" in failed and "exit 2" in failed and "model.d_model" in failed
    assert "4 runs: 3 done, 0 started, 1 failed, 0 pending" in out


def test_a_changed_plan_is_refused(first_run, data_overrides):
    workdir, _, _ = first_run
    with pytest.raises(ConfigError, match=r"sweep.json planned run C6e8-d32-L1 with "
                                          r"train.lr=0.01, now 0.02; use a new --workdir"):
        prepare(TINY_CI, workdir, [*data_overrides, "--config.train.lr=0.02"])


def test_a_plan_saved_before_tuned_sweeps_still_matches(first_run, data_overrides):
    workdir, _, _ = first_run
    path = workdir / "sweep.json"
    record = json.loads(path.read_text())
    for run in record["runs"]:
        assert (run.pop("point"), run.pop("hparams")) == (run["name"], {})
    path.write_text(json.dumps(record))
    specs = prepare(TINY_CI, workdir, data_overrides)
    assert [s.name for s in specs] == [run["name"] for run in record["runs"]]
    assert all("point" in run for run in json.loads(path.read_text())["runs"])  # rewritten


def test_a_rerun_skips_done_runs_and_resumes_an_interrupted_one(first_run, data_overrides):
    workdir, _, _ = first_run
    runs = workdir / "runs"
    before = read_metrics(runs / INTERRUPTED / "metrics.jsonl")
    # A machine that died after the run's step-15 checkpoint, taking the runner with it: no
    # final checkpoint and no exit record.
    shutil.rmtree(runs / INTERRUPTED / "checkpoints" / "17")
    (runs / INTERRUPTED / "exit.json").unlink()
    status = run_status(runs / INTERRUPTED, INTERRUPTED, 17)
    assert (status.status, status.checkpoint_step, status.last_step) == ("started", 15, 17)
    untouched = {name: ((runs / name / "metrics.jsonl").stat().st_mtime_ns,
                        (runs / name / "stdout.log").read_bytes())
                 for name in ("C6e8-d32-L2", "C8e8-d32-L1")}

    code, out = lm_sweep("run", "--config", str(TINY_CI), "--workdir", str(workdir),
                         "--parallel", "2", *data_overrides)

    assert code == 1  # the failing run was retried, and failed again
    assert "C6e8-d32-L2: already done (step 9)" in out and "C8e8-d32-L1: already done" in out
    for name, (mtime, log) in untouched.items():  # no trainer started for the done runs
        assert (runs / name / "metrics.jsonl").stat().st_mtime_ns == mtime
        assert (runs / name / "stdout.log").read_bytes() == log
    assert "[train] resumed from step 15" in (runs / INTERRUPTED / "stdout.log").read_text()
    after = read_metrics(runs / INTERRUPTED / "metrics.jsonl")
    assert [r["step"] for r in after] == list(range(1, 18))
    assert [r["loss"] for r in after] == [r["loss"] for r in before]  # resumed bit for bit
    code, out = lm_sweep("status", "--workdir", str(workdir))
    assert "4 runs: 3 done, 0 started, 1 failed, 0 pending" in out


def test_config_args_round_trip():
    overrides = {"data": {"sources": ("a b", "c'd"), "prepared_dir": "/x y"},
                 "train": {"lr": 3e-4, "steps": 7, "async_checkpoint": False}}
    parsed = [parse_override(arg[2:]) for arg in config_args(overrides)]
    assert parsed == [(["data", "sources"], ("a b", "c'd")), (["data", "prepared_dir"], "/x y"),
                      (["train", "lr"], 3e-4), (["train", "steps"], 7),
                      (["train", "async_checkpoint"], False)]


def test_run_status_reads_checkpoints_metrics_and_exit_records(tmp_path):
    assert run_status(tmp_path / "none", "x", 10).status == "pending"
    (tmp_path / "checkpoints" / "5").mkdir(parents=True)
    (tmp_path / "checkpoints" / "10.orbax-checkpoint-tmp-1").mkdir()  # a save cut short
    status = run_status(tmp_path, "x", 10)
    assert (status.status, status.checkpoint_step, status.last_step) == ("started", 5, None)
    (tmp_path / "exit.json").write_text('{"returncode": 0}')
    assert run_status(tmp_path, "x", 10).status == "failed"  # exited before its last step
    for stopped in (75, -signal.SIGTERM, -signal.SIGINT):  # saved and exited, or killed by one
        (tmp_path / "exit.json").write_text(json.dumps({"returncode": stopped}))
        assert run_status(tmp_path, "x", 10).status == "interrupted"
    (tmp_path / "exit.json").write_text('{"returncode": -9}')  # SIGKILL, e.g. out of memory
    assert run_status(tmp_path, "x", 10).status == "failed"
    (tmp_path / "checkpoints" / "10").mkdir()
    assert run_status(tmp_path, "x", 10).status == "done"


def test_stderr_tail_keeps_the_last_state_of_progress_bars(tmp_path):
    (tmp_path / "stderr.log").write_text("a\n 10%|#\r 50%|###\r100%|#####\n\nerror: x\n")
    assert stderr_tail(tmp_path, lines=2) == ["100%|#####", "error: x"]


def test_a_locked_run_is_not_launched(tmp_path):
    spec = expand(load_sweep(TINY_CI))[0]
    tmp_path.joinpath(".lock").touch()
    fd = os.open(tmp_path / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert launch(spec, tmp_path) is None
    finally:
        os.close(fd)
    assert not (tmp_path / "stdout.log").exists()


def test_lm_fit_runs_on_the_sweep_results(first_run):
    """The tiny sweep's results feed `lm fit` (KM L(N) on the three finished runs)."""
    from lm.scaling.cli import main as fit_main

    workdir, _, _ = first_run
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert fit_main(["fit", "--sweep", str(workdir), "--method", "km"]) == 0
    fit = json.loads(out.getvalue())
    assert fit["method"] == "km" and fit["n_points"] == 3
    # The conventions default to those the sweep was planned in (tiny_ci: non-embedding N, 6N).
    assert (fit["n_convention"], fit["c_convention"]) == ("non_embedding", "6ND")
    assert fit["source"]["columns"]["N"] == "n_non_embedding"
    # A few-step sweep need not show the laws: whatever cannot be fitted says why.
    assert set(fit["laws"]) | set(fit["skipped"]) == {"km_n", "km_d", "km_c", "km_nd"}
    assert fit["laws"] and all(fit["skipped"].values())
    for law in fit["laws"].values():
        assert all(np.isfinite(v) and v > 0 for v in law["params"].values())


# A stand-in for `lm train --workdir RUN_DIR` of a STEPS-step run. FAKE_TRAINER=block: trains
# until SIGTERM or SIGINT, then saves step 1 and exits 75; ignore: notes the signals and
# trains on; exit75: saves step 1 and exits 75 at once; finish: logs and saves its last step.
FAKE_TRAINER = """#!/bin/bash
run_dir=$1 steps=$2
[ -d "$run_dir/checkpoints/1" ] && echo "resumed from step 1"
stop() { echo "$1" >> "$run_dir/signals"; mkdir -p "$run_dir/checkpoints/1"; exit 75; }
case "$FAKE_TRAINER" in
    block) trap 'stop TERM' TERM; trap 'stop INT' INT ;;
    ignore) trap 'echo TERM >> "$run_dir/signals"' TERM; trap 'echo INT >> "$run_dir/signals"' INT ;;
    exit75) mkdir -p "$run_dir/checkpoints/1"; exit 75 ;;
esac
echo '{"kind": "train", "step": 1, "loss": 5.0}' >> "$run_dir/metrics.jsonl"
if [ "$FAKE_TRAINER" != finish ]; then
    touch "$run_dir/started"
    while true; do sleep 0.05; done
fi
echo "{\\"kind\\": \\"train\\", \\"step\\": $steps, \\"loss\\": 4.0}" >> "$run_dir/metrics.jsonl"
mkdir -p "$run_dir/checkpoints/$steps"
"""

# `lm sweep ARGS...` with the fake trainer (argv[1]) for `lm train` and no data to prepare.
DRIVER = """import argparse, sys
import lm.sweep.runner as runner
runner._prepare_data = lambda spec, data_dir: None
runner.train_command = lambda spec, run_dir: ["bash", sys.argv[1], str(run_dir),
                                              str(spec.config().train.steps)]
from lm.sweep.cli import register
parser = argparse.ArgumentParser(prog="lm")
register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(["sweep", *sys.argv[2:]])
args.run(args, [])
"""
NAMES = ["C6e8-d32-L1", "C6e8-d32-L2", "C8e8-d32-L1", "C8e8-d32-L2"]  # tiny_ci, in plan order


def fake_sweep(tmp_path: Path, mode: str, *args: str) -> subprocess.Popen:
    """`lm sweep run` on tiny_ci in DIR=tmp_path/sweep, in a subprocess, with the fake trainer."""
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "trainer.sh").write_text(FAKE_TRAINER)
    command = [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "trainer.sh"), "run",
               "--config", str(TINY_CI), "--workdir", str(tmp_path / "sweep"), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FAKE_TRAINER": mode}, cwd=Path(__file__).parents[1])


def wait_for(path: Path, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.02)


def test_sigterm_stops_the_sweep_and_a_rerun_resumes_it(tmp_path):
    runs = tmp_path / "sweep" / "runs"
    sweep = fake_sweep(tmp_path, "block", "--parallel", "2")
    for name in NAMES[:2]:
        wait_for(runs / name / "started")
    sweep.send_signal(signal.SIGTERM)
    out, err = sweep.communicate(timeout=30)

    assert sweep.returncode == 75, err
    for name in NAMES[:2]:  # signalled (in their own sessions, only by the runner), recorded
        assert (runs / name / "signals").read_text() == "TERM\n"  # the trainer ignores repeats
        assert json.loads((runs / name / "exit.json").read_text()) == {"returncode": 75}
        assert re.search(rf"{name}: interrupted \(exit 75\) after \d+s; a rerun resumes it from "
                         "step 1", out)
    assert not (runs / NAMES[2]).exists() and not (runs / NAMES[3]).exists()  # none launched
    assert "[sweep] SIGTERM: stopping; 2 trainer(s) save a checkpoint and exit (waiting up to 300s" in out
    assert out.splitlines()[-1] == (
        "[sweep] stopped by SIGTERM: 2 run(s) interrupted, 2 not started; exit 75: rerun the same "
        "command to resume (done runs are skipped, interrupted ones resume from their checkpoints)")
    code, status = lm_sweep("status", "--workdir", str(tmp_path / "sweep"))
    line = next(line for line in status.splitlines() if line.startswith(NAMES[0]))
    assert line.split()[1] == "interrupted"
    assert line.endswith("step 1/17 logged, checkpoint 1  exit 75: preempted, checkpoint saved; "
                         "a rerun resumes it")
    assert "4 runs: 0 done, 0 started, 2 interrupted, 0 failed, 2 pending" in status

    rerun = fake_sweep(tmp_path, "finish", "--parallel", "2")
    out, err = rerun.communicate(timeout=30)
    assert rerun.returncode == 0, err
    assert sum(": done in " in line for line in out.splitlines()) == 4
    for name in NAMES:
        assert ("resumed from step 1" in (runs / name / "stdout.log").read_text()) == (name in NAMES[:2])
    assert "4 runs: 4 done, 0 started, 0 failed, 0 pending" in lm_sweep("status", "--workdir",
                                                                         str(tmp_path / "sweep"))[1]


@pytest.mark.parametrize("first,then,timeout,forwarded,why", [
    (signal.SIGINT, signal.SIGINT, "60", "TERM", "a second signal"),
    (signal.SIGHUP, None, "0.5", "TERM", "0.5s")], ids=["ctrl-c-twice", "sighup-and-timeout"])
def test_trainers_that_do_not_stop_are_killed(tmp_path, first, then, timeout, forwarded, why):
    runs = tmp_path / "sweep" / "runs"
    sweep = fake_sweep(tmp_path, "ignore", "--stop-timeout", timeout)
    wait_for(runs / NAMES[0] / "started")
    sweep.send_signal(first)
    wait_for(runs / NAMES[0] / "signals")
    if then:
        sweep.send_signal(then)
    out, err = sweep.communicate(timeout=30)
    assert sweep.returncode == 75, err
    assert (runs / NAMES[0] / "signals").read_text() == f"{forwarded}\n"
    assert f"[sweep] {NAMES[0]}: killed after {why}; a rerun resumes it from the start" in out
    assert not (runs / NAMES[0] / "exit.json").exists()  # killed: no exit status to record
    assert run_status(runs / NAMES[0], NAMES[0], 17).status == "started"
    assert f"stopped by {signal.Signals(first).name}: 1 run(s) interrupted, 3 not started" in out


def test_a_trainer_stopped_by_its_own_signal_makes_the_sweep_exit_75(tmp_path):
    sweep = fake_sweep(tmp_path, "exit75")
    out, err = sweep.communicate(timeout=30)
    assert sweep.returncode == 75
    assert sum("interrupted (exit 75)" in line for line in out.splitlines()) == 4
    assert err.strip() == (f"lm sweep run: 4 run(s) interrupted by a signal: {', '.join(NAMES)}; "
                           "rerun the same command to resume them")


def test_a_bad_stop_timeout_is_named():
    with pytest.raises(ConfigError, match="--stop-timeout must be a positive number of seconds, got 0"):
        lm_sweep("run", "--config", str(TINY_CI), "--workdir", "unused", "--stop-timeout", "0")
