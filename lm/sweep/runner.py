"""Run a sweep locally: prepare the data once, then train every run as its own subprocess.

    DIR/sweep.json            the sweep config, the command-line overrides and the plan
    DIR/data/                 tokenizer and token shards, shared by every run (data.prepared_dir)
    DIR/runs/<name>/          an ordinary run workdir (`lm train` resumes it), plus
        stdout.log, stderr.log   the trainer's output, appended per launch
        exit.json                {"returncode": N} of the last launch that finished
    DIR/results.csv, curves.csv  see lm.sweep.results

A run (each member of a tuned sweep's points is one) is done when it has a
complete checkpoint at its last step; rerunning the sweep skips done runs and
relaunches the others (the trainer resumes them from their newest checkpoint).
While a run's trainer lives it holds an exclusive lock on DIR/runs/<name>/.lock
(the runner hands the locked descriptor to the child), so no second runner, and
no rerun after the runner itself was killed, starts the same run twice.

SIGTERM, SIGINT (Ctrl-C) or SIGHUP stop the sweep cleanly: the runner signals its
trainers (their own sessions, so a Ctrl-C reaches them only this way), and each
finishes its step, saves a checkpoint and exits with PREEMPTED_EXIT (75). It sends
SIGTERM whatever it received: a trainer ignores SIGTERMs after the first (one sent
to every process of a Slurm job or systemd unit may have reached it already) but
a second SIGINT interrupts it (lm.train.preemption). The runner launches no further run, waits up to
`stop_timeout` seconds (a second signal: no longer) and kills the trainers still
alive, records each exit status (75: "interrupted", not "failed"), writes the
results, prints how to resume and raises SweepStopped, which exits 75 too. The
rerun skips the done runs and relaunches the interrupted ones, which resume from
their checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from lm.config import ConfigError
from lm.files import write_json_atomic
from lm.sweep.grid import Sweep, expand, load_sweep
from lm.sweep.plan import RunSpec, format_table
from lm.sweep.results import write_results
from lm.train.metrics import METRICS_FILE, read_metrics
from lm.errors import PREEMPTED_EXIT

SWEEP_FILE = "sweep.json"
DATA_DIR = "data"
RUNS_DIR = "runs"
EXIT_FILE = "exit.json"
STDOUT_LOG = "stdout.log"
STDERR_LOG = "stderr.log"
LOCK_FILE = ".lock"
# started: running, or stopped without an exit record (a killed runner or trainer);
# interrupted: its last launch was stopped by a signal (exit 75: after saving a checkpoint).
# Every status but done is relaunched (and resumes) on a rerun.
STATUSES = ("done", "started", "interrupted", "failed", "pending")
INTERRUPTED_EXITS = (PREEMPTED_EXIT, -signal.SIGTERM, -signal.SIGINT)  # -N: killed by signal N


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """Where a run stands. `last_step`: its newest logged train step; `checkpoint_step`: its
    newest complete checkpoint; `returncode`: the last finished launch's exit status."""

    name: str
    status: str
    steps: int
    last_step: int | None = None
    checkpoint_step: int | None = None
    returncode: int | None = None


def config_args(overrides: dict[str, Any]) -> list[str]:
    """Nested overrides as `--config.section.field=value` arguments (values as Python literals)."""
    return [f"--config.{section}.{key}={value!r}"
            for section, fields in overrides.items() for key, value in fields.items()]


def train_command(spec: RunSpec, run_dir: Path) -> list[str]:
    """The command that trains (or resumes) one run."""
    return [sys.executable, "-m", "lm.cli", "train", "--workdir", str(run_dir),
            *config_args(spec.overrides)]


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the run's complete checkpoints. Orbax writes a step under a temporary name
    and renames it to the bare step number when complete, so only numeric names count."""
    directory = Path(run_dir) / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


def run_status(run_dir: Path, name: str, steps: int) -> RunStatus:
    """The status of the run in `run_dir` that should train for `steps` steps."""
    run_dir = Path(run_dir)
    checkpoints = checkpoint_steps(run_dir)
    last_checkpoint = checkpoints[-1] if checkpoints else None
    metrics = run_dir / METRICS_FILE
    logged = read_metrics(metrics) if metrics.exists() else []
    last_step = logged[-1]["step"] if logged else None
    exit_path = run_dir / EXIT_FILE
    returncode = json.loads(exit_path.read_text())["returncode"] if exit_path.exists() else None
    if steps in checkpoints:
        status = "done"
    elif returncode in INTERRUPTED_EXITS:
        status = "interrupted"
    elif returncode is not None:
        status = "failed"  # exited (even with 0) without reaching its final checkpoint
    elif last_step is not None or last_checkpoint is not None:
        status = "started"
    else:
        status = "pending"
    return RunStatus(name, status, steps, last_step, last_checkpoint, returncode)


def count_text(final: Sequence[RunStatus]) -> str:
    """"3 done, 0 started, 1 failed, 0 pending", naming interrupted runs only when there are any."""
    counts = {s: sum(r.status == s for r in final) for s in STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "interrupted")


def stderr_tail(run_dir: Path, lines: int = 10) -> list[str]:
    """The last lines of a run's stderr.log (progress-bar redraws reduced to their last state)."""
    path = Path(run_dir) / STDERR_LOG
    if not path.exists():
        return []
    text = path.read_text(errors="replace")
    cleaned = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return [line for line in cleaned if line.strip()][-lines:]


@contextlib.contextmanager
def _locked(path: Path, *, blocking: bool) -> Iterator[int | None]:
    """An exclusive flock on `path`: yields its descriptor, or None when it is held elsewhere."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def _spec_json(specs: Sequence[RunSpec]) -> list[dict[str, Any]]:
    return json.loads(json.dumps([dataclasses.asdict(spec) for spec in specs]))


def load_plan(workdir: Path) -> tuple[dict[str, Any], list[RunSpec]]:
    """DIR/sweep.json and its runs."""
    path = Path(workdir) / SWEEP_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; is {workdir} a sweep directory "
                                "(made by `lm sweep run` or `lm sweep slurm`)?")
    record = json.loads(path.read_text())
    return record, [RunSpec(**run) for run in record["runs"]]


def statuses(workdir: Path) -> list[RunStatus]:
    """The status of every run of the sweep in `workdir`, in plan order."""
    _, specs = load_plan(workdir)
    return [run_status(Path(workdir) / RUNS_DIR / spec.name, spec.name, spec.config().train.steps)
            for spec in specs]


def write_sweep_results(workdir: Path, final: Sequence[RunStatus]) -> tuple[Path, Path]:
    """Write DIR/results.csv and DIR/curves.csv for the runs' statuses (in plan order)."""
    record, specs = load_plan(workdir)
    runs = [(spec, status.status, Path(workdir) / RUNS_DIR / spec.name)
            for spec, status in zip(specs, final)]
    return write_results(workdir, record["sweep"]["kind"], runs)


def prepare(sweep_path: Path, workdir: Path, overrides: Sequence[str] = ()) -> list[RunSpec]:
    """Plan the sweep with its data in DIR/data, build that data once, and write DIR/sweep.json.

    A DIR/sweep.json from an earlier call must hold the same plan (a changed sweep
    file or override would mix two sweeps in one directory): ConfigError otherwise.
    """
    workdir = Path(workdir).absolute()
    sweep: Sweep = load_sweep(sweep_path)
    specs = expand(sweep, overrides, prepared_dir=str(workdir / DATA_DIR))
    record = {"sweep_file": str(Path(sweep_path).absolute()), "sweep": sweep.to_dict(),
              "overrides": list(overrides), "runs": _spec_json(specs)}
    path = workdir / SWEEP_FILE
    if path.exists():  # through RunSpec, so a plan saved before tuning had its defaults
        saved = [RunSpec(**run) for run in json.loads(path.read_text())["runs"]]
        _check_same_plan(_spec_json(saved), record["runs"], path)
    workdir.mkdir(parents=True, exist_ok=True)
    _prepare_data(specs[0], workdir / DATA_DIR)
    write_json_atomic(record, path)
    return specs


def _check_same_plan(saved: list[dict], planned: list[dict], path: Path) -> None:
    fix = "use a new --workdir, or restore the sweep file and overrides this sweep started with"
    saved_by_name = {run["name"]: run for run in saved}
    for run in planned:
        old = saved_by_name.pop(run["name"], None)
        if old is None:
            raise ConfigError(f"{path} has no run {run['name']}: the sweep changed; {fix}")
        if old != run:
            raise ConfigError(f"{path} planned run {run['name']} with {_difference(old, run)}; {fix}")
    if saved_by_name:
        raise ConfigError(f"{path} has runs the sweep no longer plans "
                          f"({', '.join(saved_by_name)}); {fix}")


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The first field (a config field or a RunSpec field) where two runs differ."""
    def flat(run: dict[str, Any]) -> dict[str, Any]:
        fields = {f"{section}.{key}": value for section, values in run["overrides"].items()
                  for key, value in values.items()}
        return {**fields, **{k: v for k, v in run.items() if k != "overrides"}}

    a, b = flat(old), flat(new)
    key = next(k for k in [*a, *b] if a.get(k) != b.get(k))
    return f"{key}={a.get(key)!r}, now {b.get(key)!r}"


def _prepare_data(spec: RunSpec, data_dir: Path) -> None:
    from lm.data.build import build_run_data

    cfg = spec.config()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir / LOCK_FILE, blocking=True):
        build_run_data(cfg.data, cfg.model.vocab_size, data_dir)


@dataclasses.dataclass
class Launch:
    """A trainer the runner started."""

    spec: RunSpec
    run_dir: Path
    process: subprocess.Popen
    started: float


def launch(spec: RunSpec, run_dir: Path) -> Launch | None:
    """Start the run's trainer holding the run's lock; None if another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with _locked(run_dir / LOCK_FILE, blocking=False) as fd:
        if fd is None:
            return None
        (run_dir / EXIT_FILE).unlink(missing_ok=True)
        command = train_command(spec, run_dir)
        env = {"TQDM_MININTERVAL": "10", **os.environ}  # progress-bar redraws bloat the logs
        header = f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n"
        with open(run_dir / STDOUT_LOG, "a") as out, open(run_dir / STDERR_LOG, "a") as err:
            out.write(header)
            err.write(header)
            out.flush()
            err.flush()
            # Its own session: a Ctrl-C in the terminal reaches it only as the runner forwards it.
            process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                       env=env, pass_fds=(fd,), start_new_session=True)
    return Launch(spec, run_dir, process, time.monotonic())


def _finish(job: Launch) -> RunStatus:
    write_json_atomic({"returncode": job.process.returncode}, job.run_dir / EXIT_FILE)
    return run_status(job.run_dir, job.spec.name, job.spec.config().train.steps)


def _resumes(status: RunStatus) -> str:
    where = f"step {status.checkpoint_step}" if status.checkpoint_step else "the start"
    return f"a rerun resumes it from {where}"


def _summary(status: RunStatus, run_dir: Path, seconds: float) -> str:
    if status.status == "done":
        train = read_metrics(run_dir / METRICS_FILE)
        evals = read_metrics(run_dir / METRICS_FILE, kind="eval")
        held = f", held-out loss {evals[-1]['loss']:.4f}" if evals else ""
        return f"done in {seconds:.0f}s: train loss {train[-1]['loss']:.4f}{held}"
    if status.status == "interrupted":
        return f"interrupted (exit {status.returncode}) after {seconds:.0f}s; {_resumes(status)}"
    tail = stderr_tail(run_dir, lines=1)
    return (f"FAILED (exit {status.returncode}) after {seconds:.0f}s: "
            f"{tail[0] if tail else 'no stderr'} [{run_dir / STDERR_LOG}]")


class SweepStopped(SystemExit):
    """A signal stopped the sweep (see the module docstring); exits with PREEMPTED_EXIT.
    `statuses`: every run's status after the trainers stopped."""

    def __init__(self, statuses: list[RunStatus]):
        super().__init__(PREEMPTED_EXIT)
        self.statuses = statuses


@contextlib.contextmanager
def _catching_signals() -> Iterator[list[int]]:
    """Records SIGTERM, SIGINT and SIGHUP in the yielded list instead of dying (main thread only)."""
    received: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) if main else ()
    previous = {s: signal.signal(s, lambda signum, _: received.append(signum)) for s in handled}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _say(line: str) -> None:
    print(f"[sweep] {line}", flush=True)


def run_sweep(sweep_path: Path, workdir: Path, overrides: Sequence[str] = (), *,
              parallel: int = 1, stop_timeout: float = 300.0) -> list[RunStatus]:
    """Prepare the sweep in `workdir`, print its plan, and train every run that is not done,
    up to `parallel` at a time, printing one line per finished run. Returns the final
    statuses (a failed run does not stop the others) and writes results.csv and curves.csv.
    A SIGTERM, SIGINT or SIGHUP stops it (module docstring): SweepStopped, exit status 75."""
    if parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {parallel}")
    if not stop_timeout > 0:
        raise ConfigError(f"--stop-timeout must be a positive number of seconds, got {stop_timeout}")
    workdir = Path(workdir).absolute()
    sweep = load_sweep(sweep_path)
    print(format_table(expand(sweep, overrides, prepared_dir=str(workdir / DATA_DIR)),
                       n_kind=sweep.n_kind), flush=True)
    specs = prepare(sweep_path, workdir, overrides)
    queue = []
    for spec, status in zip(specs, statuses(workdir)):
        if status.status == "done":
            _say(f"{spec.name}: already done (step {status.steps})")
        else:
            queue.append(spec)
    running: list[Launch] = []
    total, finished, stopped, deadline = len(queue), 0, set(), None
    try:
        with _catching_signals() as received:
            while running or (queue and not received):
                if received and deadline is None:  # stop: forward the signal, launch no more
                    deadline = time.monotonic() + stop_timeout
                    stopped = {job.spec.name for job in running}
                    name = signal.Signals(received[0]).name
                    _say(f"{name}: stopping; {len(running)} trainer(s) save a checkpoint and exit "
                         f"(waiting up to {stop_timeout:g}s; a second signal kills them)")
                    for job in running:  # SIGTERM, repeats of which the trainer ignores
                        job.process.send_signal(signal.SIGTERM)
                if deadline is not None and (len(received) > 1 or time.monotonic() > deadline):
                    why = "a second signal" if len(received) > 1 else f"{stop_timeout:g}s"
                    for job in running:
                        job.process.kill()
                        job.process.wait()
                        status = run_status(job.run_dir, job.spec.name, job.spec.config().train.steps)
                        _say(f"{job.spec.name}: killed after {why}; {_resumes(status)}")
                    running.clear()
                while queue and not received and len(running) < parallel:
                    spec = queue.pop(0)
                    job = launch(spec, workdir / RUNS_DIR / spec.name)
                    if job is None:
                        finished += 1
                        _say(f"{finished}/{total} {spec.name}: skipped, another process is training "
                             f"it ({workdir / RUNS_DIR / spec.name / LOCK_FILE} is locked)")
                    else:
                        running.append(job)
                time.sleep(0.2 if running else 0)
                for job in [job for job in running if job.process.poll() is not None]:
                    running.remove(job)
                    finished += 1
                    status = _finish(job)
                    _say(f"{finished}/{total} {job.spec.name}: "
                         f"{_summary(status, job.run_dir, time.monotonic() - job.started)}")
    finally:
        for job in running:  # an exception: stop the trainers (they resume on the next run)
            job.process.terminate()
        for job in running:
            job.process.wait()
    final = statuses(workdir)
    results, curves = write_sweep_results(workdir, final)
    _say(f"{count_text(final)}; results: {results}, curves: {curves}")
    if received:
        interrupted = sum(s.name in stopped and s.status != "done" for s in final)
        _say(f"stopped by {signal.Signals(received[0]).name}: {interrupted} run(s) interrupted, "
             f"{len(queue)} not started; exit {PREEMPTED_EXIT}: rerun the same command to resume "
             "(done runs are skipped, interrupted ones resume from their checkpoints)")
        raise SweepStopped(final)
    return final
