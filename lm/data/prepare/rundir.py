"""The run directory of `lm data prepare`: checked, locked, cleaned and, on request, emptied.

`hold_run_dir` refuses, with one line each, an ``--output`` that is a file, cannot be
created, is not writable, holds other files but no ``recipe.json`` (another corpus, a
training run, the input itself), or is in use by another `lm data prepare` (an
exclusive lock on ``.lock`` held for the whole run). It then removes the temporary
files a killed run left behind (`lm.files.atomic_write` names them
``.<name>.<pid>-<hex>.tmp``), which nothing can be writing while the lock is held.

`discard` deletes a run's outputs so it can be planned again (``--replan``, or a new
recipe while no task had finished); `require_finished` is the check a reader of a
finished run (training) makes first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lm.data.read import DataError

LOCK = ".lock"
RECIPE = "recipe.json"
REPORT = "report.json"
# Everything `lm data prepare` writes in a run directory (see lm.data.prepare); the recipe last, so
# that a directory whose discarding was interrupted still looks like a run directory.
OUTPUTS = (REPORT, "report.md", "plots", "tasks", "work", "clean", "removed", "quarantine", "quarantine.jsonl",
           "tokenizer", "tokens", "heldout", RECIPE)
_TEMPORARY = re.compile(r"\..+\.\d+-[0-9a-f]{8}\.tmp")
_LISTED = 5


@contextlib.contextmanager
def hold_run_dir(run_dir: Path) -> Iterator[Path]:
    """Check `run_dir` (creating it), lock it for this process, remove stale temporary files."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise DataError(f"--output {run_dir} is a file; give a directory (a new one, or an earlier run's "
                        "to resume it)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"--output {run_dir}: cannot create the directory ({e.strerror})") from e
    try:
        tempfile.TemporaryFile(dir=run_dir).close()
    except OSError as e:
        raise DataError(f"--output {run_dir} is not writable ({e.strerror}); give a directory you can write to") from e
    if not (run_dir / RECIPE).exists():
        others = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK and not _TEMPORARY.fullmatch(p.name))
        if others:
            more = f" and {len(others) - _LISTED} more" if len(others) > _LISTED else ""
            names = ", ".join(others[:_LISTED]) + more
            raise DataError(f"--output {run_dir} holds files ({names}) but no {RECIPE}, so it is not an "
                            "`lm data prepare` run directory; give a new or empty directory")
    with open(run_dir / LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise DataError(f"--output {run_dir} is in use by another `lm data prepare`; wait for it to finish "
                            "or stop it") from e
        except OSError as e:
            raise DataError(f"--output {run_dir}: cannot lock {run_dir / LOCK} ({e.strerror}); give a directory "
                            "on a file system with file locks") from e
        remove_temporary_files(run_dir)
        yield run_dir


def remove_temporary_files(run_dir: Path) -> int:
    """Delete the temporary files of interrupted atomic writes under `run_dir`; return how many."""
    removed = 0
    for dirpath, _, filenames in os.walk(run_dir):
        for name in filenames:
            if _TEMPORARY.fullmatch(name):
                (Path(dirpath) / name).unlink(missing_ok=True)
                removed += 1
    return removed


def has_finished_work(run_dir: Path) -> bool:
    """Whether any task of any pass finished in `run_dir` (a done-marker exists)."""
    return any(Path(run_dir, "tasks").glob("pass-*/*.json"))


def discard(run_dir: Path) -> None:
    """Delete everything `lm data prepare` wrote in `run_dir` (nothing else there is touched)."""
    for name in OUTPUTS:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def progress(run_dir: Path) -> str:
    """How far the passes of `run_dir` got, e.g. "2 of 6 tasks of pass 1 done"."""
    plan = Path(run_dir) / "tasks" / "plan.json"
    if not plan.is_file():
        return "its tasks are not planned yet"
    num_tasks = len(json.loads(plan.read_text("utf-8")))
    passes = sorted((int(p.name.split("-")[1]), p) for p in Path(run_dir, "tasks").glob("pass-*") if p.is_dir())
    if not passes:
        return f"0 of {num_tasks} tasks of pass 1 done"
    index, directory = passes[-1]
    return f"{len(list(directory.glob('*.json')))} of {num_tasks} tasks of pass {index + 1} done"


def require_finished(run_dir: Path, field: str) -> None:
    """DataError unless `lm data prepare` finished in `run_dir` (it wrote report.json last)."""
    run_dir = Path(run_dir)
    if not (run_dir / REPORT).is_file():
        raise DataError(f"{field}={run_dir}: `lm data prepare` did not finish there (no {REPORT}; "
                        f"{progress(run_dir)}); rerun the same `lm data prepare` command to finish it")
