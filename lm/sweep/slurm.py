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
training there would otherwise be started twice (a task, requeued or not, that finds
runs.json rewritten since its script was written starts nothing and exits 1).

Time limits and preemption. `--signal=TERM@120` (the default; `#SBATCH --signal`) has
Slurm send SIGTERM to the job step, the trainer, 120 s before the time limit: it
finishes its step, saves a checkpoint and exits 75 (lm.train.preemption). With
`--requeue` (the default; `#SBATCH --requeue --open-mode=append`) the task then
records exit.json and runs `scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"`,
that array task alone (SLURM_ARRAY_JOB_ID alone would name the whole array), and the
restarted task resumes from the checkpoint. The signal goes to the step, not the batch
shell (no `B:`), so no trap has to forward it; a job-wide SIGTERM (preemption with a
grace time, scancel) also reaches the shell, which traps it only to stay alive until
the trainer has saved, so the exit status is still recorded and the requeue tried.
Slurm refuses to requeue a job that is already cancelled or past its limit, so a
scancel stays a cancel. Without requeue, an exit 75 is recorded and resubmitting resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from lm.config import ConfigError
from lm.files import atomic_write, write_json_atomic
from lm.sweep.plan import RunSpec
from lm.sweep.runner import EXIT_FILE, RUNS_DIR, STDERR_LOG, STDOUT_LOG, config_args
from lm.errors import PREEMPTED_EXIT

SLURM_DIR = "slurm"
SCRIPT_FILE = "sweep.sbatch"
RUNS_FILE = "runs.json"
SIGNALS = {"TERM": "TERM", "SIGTERM": "TERM", "15": "TERM", "INT": "INT", "SIGINT": "INT", "2": "INT"}
EARLY_SIGNAL_SLACK = 60  # Slurm may send --signal up to 60 s before the time asked for

# Prints the task's workdir, then its `lm train` arguments, one per line (no value
# holds a newline: `config_args` writes Python literals); nothing, and exit 1, when
# runs.json is no longer the file the script was written with.
_READ_TASK = """import hashlib, json, sys
data = open(sys.argv[1], "rb").read()
if hashlib.sha256(data).hexdigest() != sys.argv[3]:
    sys.exit(sys.argv[1] + " changed since this script was written (by a newer lm sweep slurm); "
             "this task does not know its run, so it starts none")
run = json.loads(data)[int(sys.argv[2])]
print("\\n".join([run["workdir"], *run["args"]]))"""


def parse_signal(value: str) -> tuple[str, int] | None:
    """`--signal`'s SIG@SECONDS as (TERM or INT, seconds); None for "none"."""
    if value.lower() == "none":
        return None
    sig, at, seconds = value.partition("@")
    if sig.upper() not in SIGNALS or not at or not seconds.isdigit() or not 0 < int(seconds) < 65536:
        raise ConfigError(f"--signal={value!r}: expected SIG@SECONDS, SIG being TERM or INT (the "
                          "signals lm train stops cleanly on) and SECONDS 1 to 65535 before the "
                          "time limit, e.g. TERM@120; or none")
    return SIGNALS[sig.upper()], int(seconds)


def time_seconds(value: str) -> int | None:
    """Seconds in a Slurm --time (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS);
    None for UNLIMITED or INFINITE."""
    if value.upper() in ("UNLIMITED", "INFINITE"):
        return None
    days, dash, clock = value.partition("-")
    if not dash:
        days, clock = "0", value
    parts = clock.split(":")
    if not days.isdigit() or len(parts) > 3 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--time={value!r}: expected minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM "
                          "or D-HH:MM:SS")
    n = [int(p) for p in parts]
    if dash:  # D-HH[:MM[:SS]]
        h, m, sec = (n + [0, 0])[:3]
    else:  # MM, MM:SS or HH:MM:SS
        h, m, sec = ([0, n[0], 0], [0, *n], n)[len(n) - 1]
    return ((int(days) * 24 + h) * 60 + m) * 60 + sec


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """sbatch resources per array task (one run). Empty partition/time: the cluster default;
    gpus_per_node 0: request none. `signal`: SIG@SECONDS sent to the trainer before the time
    limit, or "none"; `requeue`: requeue a task whose trainer exited 75."""

    partition: str = ""
    time: str = ""
    gpus_per_node: int = 0
    nodes: int = 1
    signal: str = "TERM@120"
    requeue: bool = True

    def check(self) -> None:
        if self.nodes < 1:
            raise ConfigError(f"--nodes must be at least 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            raise ConfigError(f"--gpus-per-node must be >= 0, got {self.gpus_per_node}")
        if any(c.isspace() for c in self.partition):
            raise ConfigError(f"--partition {self.partition!r} contains whitespace")
        early, limit = parse_signal(self.signal), time_seconds(self.time) if self.time else None
        if early and limit is not None and limit <= early[1] + EARLY_SIGNAL_SLACK:
            raise ConfigError(
                f"--signal={self.signal} asks for the signal {early[1]}s before a --time={self.time} "
                f"limit ({limit}s), and Slurm may send it up to {EARLY_SIGNAL_SLACK}s earlier still: "
                "every start would stop at once; use a smaller SECONDS or a longer --time")


def sbatch_script(workdir: Path, num_tasks: int, options: SlurmOptions, *,
                  python: str = sys.executable, runs_digest: str) -> str:
    """The job-array script for `num_tasks` runs listed in DIR/slurm/runs.json, whose
    sha256 is `runs_digest`."""
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
    early = parse_signal(options.signal)
    if early:
        directives.append(f"--signal={early[0]}@{early[1]}")  # to the job step: the trainer
    if options.requeue:
        directives += ["--requeue", "--open-mode=append"]  # a requeued task appends its log
    q = shlex.quote
    exit_tmp, exit_file = f'"$RUN_DIR/.{EXIT_FILE}.tmp"', f'"$RUN_DIR/{EXIT_FILE}"'
    out, err = f'"$RUN_DIR/{STDOUT_LOG}"', f'"$RUN_DIR/{STDERR_LOG}"'
    lines = [
        "#!/bin/bash",
        f"# {num_tasks} runs of the sweep in {workdir}, one array task each; written by `lm sweep slurm`.",
        *(f"#SBATCH {d}" for d in directives),
        "set -uo pipefail",
        f"PYTHON={q(python)}",
        'JOB="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"  # this array task alone',
        f'note() {{ echo "=== $(date \'+%F %T\') slurm task $JOB${{1:+: $1}}" | tee -a {out} >> {err}; }}',
        f"readarray -t TASK < <(\"$PYTHON\" -c {q(_READ_TASK)} {q(str(slurm_dir / RUNS_FILE))} "
        f"\"$SLURM_ARRAY_TASK_ID\" {runs_digest})",
        '[ "${#TASK[@]}" -gt 0 ] || exit 1',
        'RUN_DIR="${TASK[0]}"',
        'mkdir -p "$RUN_DIR"',
        f'rm -f {exit_file}',
        "note",
        "# A job-wide signal (preemption, scancel) reaches this shell too: outlive the trainer's save.",
        *(f"trap 'note \"SIG{sig}; the trainer saves a checkpoint and exits\"' {sig}"
          for sig in ("TERM", "INT")),
        "# One process per node, all running the same command; jax.distributed reads SLURM_*.",
        f'srun --nodes={options.nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 '
        f'"$PYTHON" -m lm.cli train --workdir "$RUN_DIR" "${{TASK[@]:1}}" >> {out} 2>> {err}',
        "rc=$?",
        f"printf '{{\"returncode\": %d}}\\n' \"$rc\" > {exit_tmp} && mv {exit_tmp} {exit_file}",
    ]
    if options.requeue:
        lines += [
            f'if [ "$rc" -eq {PREEMPTED_EXIT} ]; then  # preempted, checkpoint saved: run it again',
            f'    note "exit {PREEMPTED_EXIT} (preempted, checkpoint saved); scontrol requeue $JOB"',
            '    scontrol requeue "$JOB" || note "scontrol requeue $JOB refused; run lm sweep slurm '
            'again to resume"',
            "fi",
        ]
    return "\n".join([*lines, 'exit "$rc"']) + "\n"


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
    digest = hashlib.sha256((slurm_dir / RUNS_FILE).read_bytes()).hexdigest()
    script = slurm_dir / SCRIPT_FILE
    with atomic_write(script) as f:
        f.write(sbatch_script(workdir, len(specs), options, python=python,
                              runs_digest=digest).encode("utf-8"))
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
