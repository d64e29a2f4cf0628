"""The Slurm job array: script content (array size, resources, srun per run, the early signal
and requeue), the per-task command it runs (executed here with fake srun and scontrol, so an
exit 75 is really requeued), and `lm sweep slurm --submit` with a fake sbatch, which submits
only the runs not yet done."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lm.config import ConfigError
from lm.data.corpus import stdlib_corpus
from lm.sweep.grid import expand, load_sweep
from lm.sweep.runner import config_args, run_status
from lm.sweep.slurm import SlurmOptions, parse_signal, submit, time_seconds, write_job

from tests.helpers import lm_sweep

TINY_CI = Path(__file__).resolve().parents[1] / "experiments" / "sweeps" / "tiny_ci.py"
FAKE = """#!/bin/bash
printf '%s\\n' "$@" > "{record}"
echo "{output}"
exit {code}
"""


def fake_command(bin_dir: Path, name: str, output: str, code: int = 0) -> Path:
    """An executable `name` in bin_dir that records its arguments, prints `output` and exits
    with `code`; returns the file its arguments land in, one per line."""
    record = bin_dir / f"{name}.args"
    (bin_dir / name).write_text(FAKE.format(record=record, output=output, code=code))
    (bin_dir / name).chmod(0o755)
    return record


def test_the_script_has_one_task_per_run_and_srun_for_multi_node(tmp_path):
    specs = expand(load_sweep(TINY_CI))
    options = SlurmOptions(partition="gpu", time="04:00:00", gpus_per_node=8, nodes=2)
    script = write_job(tmp_path, specs, options).read_text()
    directives = [line.removeprefix("#SBATCH ") for line in script.splitlines()
                  if line.startswith("#SBATCH")]
    assert directives == [f"--job-name=lm-sweep-{tmp_path.name}", "--array=0-3", "--nodes=2",
                          "--ntasks-per-node=1", f"--output={tmp_path}/slurm/logs/%A_%a.out",
                          "--gpus-per-node=8", "--partition=gpu", "--time=04:00:00",
                          "--signal=TERM@120", "--requeue", "--open-mode=append"]
    srun, = [line for line in script.splitlines() if line.startswith("srun ")]
    assert srun.startswith("srun --nodes=2 --ntasks-per-node=1 ")
    assert '-m lm.cli train --workdir "$RUN_DIR"' in srun
    tasks = json.loads((tmp_path / "slurm" / "runs.json").read_text())
    assert [t["name"] for t in tasks] == [s.name for s in specs]
    assert tasks[1]["workdir"] == str(tmp_path / "runs" / specs[1].name)
    assert tasks[1]["args"] == config_args(specs[1].overrides)


def test_defaults_request_one_node_and_no_gpus(tmp_path):
    script = write_job(tmp_path, expand(load_sweep(TINY_CI))[:1], SlurmOptions()).read_text()
    assert "#SBATCH --array=0-0" in script and "#SBATCH --nodes=1" in script
    assert "gpus" not in script and "--partition" not in script and "--time" not in script
    assert "#SBATCH --signal=TERM@120" in script and "#SBATCH --requeue" in script
    assert 'scontrol requeue "$JOB"' in script
    script = write_job(tmp_path, expand(load_sweep(TINY_CI))[:1],
                       SlurmOptions(signal="none", requeue=False)).read_text()
    assert "--signal" not in script and "requeue" not in script and "--open-mode" not in script


@pytest.mark.parametrize("options,message", [
    (SlurmOptions(nodes=0), "--nodes must be at least 1"),
    (SlurmOptions(gpus_per_node=-1), "--gpus-per-node must be >= 0"),
    (SlurmOptions(partition="a b"), "--partition 'a b' contains whitespace"),
    (SlurmOptions(signal="FOO"), r"--signal='FOO': expected SIG@SECONDS, SIG being TERM or INT"),
    (SlurmOptions(signal="TERM"), r"--signal='TERM': expected SIG@SECONDS"),
    (SlurmOptions(signal="KILL@60"), r"--signal='KILL@60': expected SIG@SECONDS"),
    (SlurmOptions(signal="TERM@0"), r"--signal='TERM@0': expected SIG@SECONDS"),
    (SlurmOptions(time="4h"), r"--time='4h': expected minutes, MM:SS, HH:MM:SS, D-HH"),
    (SlurmOptions(time="00:03:00"), r"--signal=TERM@120 asks for the signal 120s before a "
                                    r"--time=00:03:00 limit \(180s\), and Slurm may send it up to "
                                    r"60s earlier still: every start would stop at once")])
def test_bad_options_are_named(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        write_job(tmp_path, expand(load_sweep(TINY_CI)), options)


def test_a_task_runs_its_run_under_srun_and_records_the_exit_status(tmp_path):
    specs = expand(load_sweep(TINY_CI))
    script = write_job(tmp_path, specs, SlurmOptions(nodes=2), python=sys.executable)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = fake_command(bin_dir, "srun", "fake srun ran", code=3)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "1",
           "SLURM_ARRAY_JOB_ID": "77"}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    run_dir = tmp_path / "runs" / specs[1].name
    assert record.read_text().splitlines() == [
        "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", sys.executable, "-m", "lm.cli",
        "train", "--workdir", str(run_dir), *config_args(specs[1].overrides)]
    stdout = (run_dir / "stdout.log").read_text()
    assert "slurm task 77_1" in stdout and "fake srun ran" in stdout
    assert json.loads((run_dir / "exit.json").read_text()) == {"returncode": 3}
    assert run_status(run_dir, specs[1].name, specs[1].config().train.steps).status == "failed"


def test_slurm_times_and_signals_parse():
    assert [time_seconds(t) for t in ("90", "5:30", "04:00:00", "2-0", "1-02:30", "1-00:00:05",
                                      "UNLIMITED")] == [5400, 330, 14400, 172800, 95400, 86405, None]
    assert [parse_signal(s) for s in ("TERM@120", "sigint@30", "15@5", "none")] == [
        ("TERM", 120), ("INT", 30), ("TERM", 5), None]
    SlurmOptions(time="00:03:01").check()  # long enough for TERM@120, and SIGINT too:
    SlurmOptions(time="1-0", signal="SIGINT@3600").check()


# A fake srun that records its arguments, sends this task's shell the job-wide SIGTERM of a
# preemption when asked (FAKE_PREEMPT=1; bash runs the trap once srun returns) and exits
# FAKE_EXIT, as a trainer that saved its checkpoint would with 75.
FAKE_SRUN = """#!/bin/bash
printf '%s\\n' "$@" > "{record}"
echo "fake srun ran"
[ -n "${{FAKE_PREEMPT:-}}" ] && kill -TERM "$PPID" && sleep 0.2
exit "$FAKE_EXIT"
"""


def run_task(tmp_path: Path, options: SlurmOptions, srun_exit: int, *, preempt: bool = False,
             scontrol_exit: int = 0):
    """Run array task 77_1 of the job script for tiny_ci with a fake srun and scontrol;
    (result, run dir, srun's arguments file, scontrol's arguments file)."""
    specs = expand(load_sweep(TINY_CI))
    script = write_job(tmp_path, specs, options, python=sys.executable)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    srun = bin_dir / "srun.args"
    (bin_dir / "srun").write_text(FAKE_SRUN.format(record=srun))
    (bin_dir / "srun").chmod(0o755)
    scontrol = fake_command(bin_dir, "scontrol", "", code=scontrol_exit)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "1",
           "SLURM_ARRAY_JOB_ID": "77", "SLURM_JOB_ID": "79", "FAKE_EXIT": str(srun_exit),
           "FAKE_PREEMPT": "1" if preempt else ""}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    return result, tmp_path / "runs" / specs[1].name, srun, scontrol


@pytest.mark.parametrize("preempt", [False, True], ids=["signal-before-time-limit", "preempted"])
def test_a_trainer_that_exits_75_is_requeued(tmp_path, preempt):
    result, run_dir, srun, scontrol = run_task(tmp_path, SlurmOptions(), 75, preempt=preempt)
    assert result.returncode == 75, result.stderr
    assert srun.exists()
    assert scontrol.read_text().splitlines() == ["requeue", "77_1"]  # this array task, not 77
    assert json.loads((run_dir / "exit.json").read_text()) == {"returncode": 75}
    assert run_status(run_dir, run_dir.name, 11).status == "interrupted"
    stdout = (run_dir / "stdout.log").read_text()
    assert "slurm task 77_1: exit 75 (preempted, checkpoint saved); scontrol requeue 77_1" in stdout
    # A job-wide SIGTERM reaches the batch shell too; it outlives the trainer's save.
    noted = "slurm task 77_1: SIGTERM; the trainer saves a checkpoint and exits"
    assert (noted in (run_dir / "stderr.log").read_text()) == preempt


def test_a_refused_requeue_says_how_to_resume(tmp_path):
    result, run_dir, _, scontrol = run_task(tmp_path, SlurmOptions(), 75, scontrol_exit=1)
    assert result.returncode == 75 and scontrol.exists()
    assert ("slurm task 77_1: scontrol requeue 77_1 refused; run lm sweep slurm again to resume"
            in (run_dir / "stdout.log").read_text())


@pytest.mark.parametrize("options,code", [(SlurmOptions(), 3), (SlurmOptions(requeue=False), 75)])
def test_no_requeue_for_a_failure_or_without_requeue(tmp_path, options, code):
    result, run_dir, srun, scontrol = run_task(tmp_path, options, code)
    assert result.returncode == code and srun.exists() and not scontrol.exists()
    assert json.loads((run_dir / "exit.json").read_text()) == {"returncode": code}


def test_a_task_whose_runs_json_changed_starts_nothing(tmp_path):
    specs = expand(load_sweep(TINY_CI))
    submitted = tmp_path / "submitted.sbatch"  # sbatch keeps a copy of the script it ran
    submitted.write_text(write_job(tmp_path, specs, SlurmOptions()).read_text())
    write_job(tmp_path, specs[2:], SlurmOptions())  # a later `lm sweep slurm` rewrote runs.json
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = fake_command(bin_dir, "srun", "")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "1",
           "SLURM_ARRAY_JOB_ID": "77"}
    result = subprocess.run(["bash", str(submitted)], env=env, capture_output=True, text=True)
    assert result.returncode == 1 and not srun.exists()
    assert result.stderr.strip() == (f"{tmp_path}/slurm/runs.json changed since this script was "
                                     "written (by a newer lm sweep slurm); this task does not know "
                                     "its run, so it starts none")


def test_a_bad_signal_is_refused_before_anything_is_prepared(tmp_path, capsys):
    from lm.cli import main

    code = main(["sweep", "slurm", "--config", str(TINY_CI), "--workdir", str(tmp_path / "w"),
                 "--signal", "FOO"])
    assert code == 2 and not (tmp_path / "w").exists()
    assert capsys.readouterr().err == (
        "lm sweep: error: --signal='FOO': expected SIG@SECONDS, SIG being TERM or INT (the signals "
        "lm train stops cleanly on) and SECONDS 1 to 65535 before the time limit, e.g. TERM@120; "
        "or none\n")


@pytest.fixture
def corpus(tmp_path) -> Path:
    out, size = tmp_path / "corpus", 0
    for doc in stdlib_corpus()[0]:
        if size > 60_000:
            break
        if len(doc.text) < 12_000:
            (out / doc.id).parent.mkdir(parents=True, exist_ok=True)
            (out / doc.id).write_text(doc.text)
            size += len(doc.text)
    return out


def test_submit_sends_only_the_runs_not_done(tmp_path, corpus, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = fake_command(bin_dir, "sbatch", "Submitted batch job 123")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    workdir = tmp_path / "sweep"
    args = ["slurm", "--config", str(TINY_CI), "--workdir", str(workdir), "--gpus-per-node", "1",
            "--signal", "INT@300", "--no-requeue", "--submit", f"--config.data.sources=['{corpus}']",
            "--config.data.heldout_fraction=0.1"]

    code, out = lm_sweep(*args)
    assert code == 0
    assert f"{workdir}/slurm/sweep.sbatch (4 of 4 runs)" in out and "Submitted batch job 123" in out
    assert record.read_text().splitlines() == [str(workdir / "slurm" / "sweep.sbatch")]
    assert (workdir / "data" / "tokenizer" / "tokenizer.model").exists()  # prepared before submitting
    script = (workdir / "slurm" / "sweep.sbatch").read_text()
    assert "#SBATCH --signal=INT@300" in script and "requeue" not in script

    plan = json.loads((workdir / "sweep.json").read_text())["runs"]
    for run in plan[:2]:  # two runs finish
        (workdir / "runs" / run["name"] / "checkpoints" / str(run["overrides"]["train"]["steps"])).mkdir(
            parents=True)
    code, out = lm_sweep(*args)
    assert "(2 of 4 runs)" in out
    assert "#SBATCH --array=0-1" in (workdir / "slurm" / "sweep.sbatch").read_text()
    tasks = json.loads((workdir / "slurm" / "runs.json").read_text())
    assert [t["name"] for t in tasks] == [run["name"] for run in plan[2:]]

    for run in plan[2:]:
        (workdir / "runs" / run["name"] / "checkpoints" / str(run["overrides"]["train"]["steps"])).mkdir(
            parents=True)
    code, out = lm_sweep(*args)
    assert code == 0 and "all 4 runs" in out and "nothing to submit" in out


def test_a_refused_submission_names_the_script(tmp_path, monkeypatch):
    fake_command(tmp_path, "sbatch", "", code=1)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(RuntimeError, match=r"sbatch .*x.sbatch failed \(exit 1\)"):
        submit(tmp_path / "x.sbatch")
