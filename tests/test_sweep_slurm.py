"""The Slurm job array: script content (array size, resources, srun per run), the per-task
command it runs (executed here with a fake srun), and `lm sweep slurm --submit` with a fake
sbatch, which submits only the runs not yet done."""

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
from lm.sweep.slurm import SlurmOptions, submit, write_job

from tests.test_sweep_runner import lm_sweep

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
                          "--gpus-per-node=8", "--partition=gpu", "--time=04:00:00"]
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


@pytest.mark.parametrize("options,message", [
    (SlurmOptions(nodes=0), "--nodes must be at least 1"),
    (SlurmOptions(gpus_per_node=-1), "--gpus-per-node must be >= 0"),
    (SlurmOptions(partition="a b"), "--partition 'a b' contains whitespace")])
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
            "--submit", f"--config.data.sources=['{corpus}']", "--config.data.heldout_fraction=0.1"]

    code, out = lm_sweep(*args)
    assert code == 0
    assert f"{workdir}/slurm/sweep.sbatch (4 of 4 runs)" in out and "Submitted batch job 123" in out
    assert record.read_text().splitlines() == [str(workdir / "slurm" / "sweep.sbatch")]
    assert (workdir / "data" / "tokenizer" / "tokenizer.model").exists()  # prepared before submitting

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
