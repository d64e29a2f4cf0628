"""Run a sweep on a Slurm cluster as one job array: one array task per run that is not done.

`write_job` writes two files under DIR/slurm/:

    runs.json      per array index: the run's name, workdir and `lm train` arguments
    sweep.sbatch   the job-array script

Each task reads its entry from runs.json and runs `python -m lm.cli train` for its
run under `srun`, one process per node, so a multi-node run starts the same
command on every host; there `jax.distributed.initialize()` detects Slurm and takes
the coordinator, process count and process id from the SLURM_* variables srun sets
(SLURM_STEP_NODELIST, SLURM_NTASKS, SLURM_PROCID). Output is
appended to the run's stdout.log / stderr.log and the exit status lands in its
exit.json, as with the local runner, so `lm sweep status` reads both alike.
Resubmitting after some runs finished starts only the rest (each resumes from its
newest checkpoint); resubmit only once the previous array has ended, since a run still
training there would otherwise be started twice.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from lm.config import ConfigError
from lm.files import atomic_write, write_json_atomic
from lm.sweep.plan import RunSpec
from lm.sweep.runner import EXIT_FILE, RUNS_DIR, STDERR_LOG, STDOUT_LOG, config_args

SLURM_DIR = "slurm"
SCRIPT_FILE = "sweep.sbatch"
RUNS_FILE = "runs.json"

# Prints the task's workdir, then its `lm train` arguments, one per line (no value
# holds a newline: `config_args` writes Python literals).
_READ_TASK = ('import json, sys; run = json.load(open(sys.argv[1]))[int(sys.argv[2])]; '
              'print("\\n".join([run["workdir"], *run["args"]]))')


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """sbatch resources per array task (one run). Empty partition/time: the cluster default;
    gpus_per_node 0: request none."""

    partition: str = ""
    time: str = ""
    gpus_per_node: int = 0
    nodes: int = 1

    def check(self) -> None:
        if self.nodes < 1:
            raise ConfigError(f"--nodes must be at least 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            raise ConfigError(f"--gpus-per-node must be >= 0, got {self.gpus_per_node}")
        for name in ("partition", "time"):
            value = getattr(self, name)
            if any(c.isspace() for c in value):
                raise ConfigError(f"--{name} {value!r} contains whitespace")


def sbatch_script(workdir: Path, num_tasks: int, options: SlurmOptions, *,
                  python: str = sys.executable) -> str:
    """The job-array script for `num_tasks` runs listed in DIR/slurm/runs.json."""
    workdir = Path(workdir).absolute()
    slurm_dir = workdir / SLURM_DIR
    directives = [f"--job-name=lm-sweep-{workdir.name}", f"--array=0-{num_tasks - 1}",
                  f"--nodes={options.nodes}", "--ntasks-per-node=1",
                  f"--output={slurm_dir / 'logs' / '%A_%a.out'}"]
    if options.gpus_per_node:
        directives.append(f"--gpus-per-node={options.gpus_per_node}")
    if options.partition:
        directives.append(f"--partition={options.partition}")
    if options.time:
        directives.append(f"--time={options.time}")
    q = shlex.quote
    exit_tmp, exit_file = f'"$RUN_DIR/.{EXIT_FILE}.tmp"', f'"$RUN_DIR/{EXIT_FILE}"'
    lines = [
        "#!/bin/bash",
        f"# {num_tasks} runs of the sweep in {workdir}, one array task each; written by `lm sweep slurm`.",
        *(f"#SBATCH {d}" for d in directives),
        "set -uo pipefail",
        f"PYTHON={q(python)}",
        f"readarray -t TASK < <(\"$PYTHON\" -c {q(_READ_TASK)} {q(str(slurm_dir / RUNS_FILE))} "
        "\"$SLURM_ARRAY_TASK_ID\")",
        'RUN_DIR="${TASK[0]}"',
        'mkdir -p "$RUN_DIR"',
        f'rm -f {exit_file}',
        f'echo "=== $(date \'+%F %T\') slurm task ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}" '
        f'| tee -a "$RUN_DIR/{STDOUT_LOG}" >> "$RUN_DIR/{STDERR_LOG}"',
        "# One process per node, all running the same command; jax.distributed reads SLURM_*.",
        f'srun --nodes={options.nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 '
        f'"$PYTHON" -m lm.cli train --workdir "$RUN_DIR" "${{TASK[@]:1}}" '
        f'>> "$RUN_DIR/{STDOUT_LOG}" 2>> "$RUN_DIR/{STDERR_LOG}"',
        "rc=$?",
        f"printf '{{\"returncode\": %d}}\\n' \"$rc\" > {exit_tmp} && mv {exit_tmp} {exit_file}",
        'exit "$rc"',
    ]
    return "\n".join(lines) + "\n"


def write_job(workdir: Path, specs: Sequence[RunSpec], options: SlurmOptions, *,
              python: str = sys.executable) -> Path:
    """Write DIR/slurm/runs.json and DIR/slurm/sweep.sbatch for `specs` (the runs to do);
    returns the script's path."""
    options.check()
    if not specs:
        raise ValueError("no runs to write a job for")
    workdir = Path(workdir).absolute()
    slurm_dir = workdir / SLURM_DIR
    (slurm_dir / "logs").mkdir(parents=True, exist_ok=True)
    tasks = [{"name": spec.name, "workdir": str(workdir / RUNS_DIR / spec.name),
              "args": config_args(spec.overrides)} for spec in specs]
    write_json_atomic(tasks, slurm_dir / RUNS_FILE)
    script = slurm_dir / SCRIPT_FILE
    with atomic_write(script) as f:
        f.write(sbatch_script(workdir, len(specs), options, python=python).encode("utf-8"))
    script.chmod(0o755)
    return script


def submit(script: Path) -> str:
    """Submit `script` with sbatch; returns sbatch's output (the job id line)."""
    try:
        result = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
    except FileNotFoundError:
        raise FileNotFoundError("sbatch is not on PATH; run this on a Slurm login node, or submit "
                                f"{script} there yourself") from None
    if result.returncode:
        raise RuntimeError(f"sbatch {script} failed (exit {result.returncode}): "
                           f"{result.stderr.strip()}")
    return result.stdout.strip()
