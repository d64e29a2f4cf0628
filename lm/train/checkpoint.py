"""Checkpoints with orbax: train state (params, optimizer state, step), data-iterator
state and run metadata, saved asynchronously, kept by keep-last-N plus keep-every-M.

Orbax writes each step into a temporary directory and renames it into place
when the save is complete, so a crash during a save leaves nothing that
`latest_step` reports. A save that fails (a full disk, say) raises
CheckpointError, from `save` or, for an asynchronous save, from the next `save`,
`wait` or `close`; its temporary directory is removed and the previous step stays
the latest.

Orbax does not checksum array data, so once a step is finished a background
thread records its files' sizes and sha256 in `<step>/lm_checksums.json`
(lm.train.checkpoint_verify), and restoring checks them first. A step without
that manifest (an older run, or a stop right after the save) is restored with a
warning that it is unverified.

`restore_latest` resumes from the newest checkpoint that verifies and restores.
A damaged one (a file missing, truncated or not matching its checksum, or, when
unverified, one orbax cannot read) is moved to `<checkpoints>/corrupt/<step>`,
where orbax does not look, with a warning naming both places, and the previous
step is tried; so a rerun never picks it again and keep-last never deletes good
steps in its favour. With `fallback=False` the first damaged one is an error
instead (and stays where it is). When every checkpoint is damaged, all are moved
aside and CheckpointError lists them: nothing is silently restarted from step 0,
but rerunning the same command then starts afresh. A checkpoint whose files are
intact but do not fit the run (a changed model or optimizer) is never moved: it
is an error naming the arrays that differ, as falling back could not help.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from lm.parallel.distributed import barrier
from lm.train.checkpoint_verify import (Corrupt, describe_mismatch, is_disk_full, one_line,
                                        verify_manifest, write_manifest)

CORRUPT_DIR = "corrupt"
_TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax's temporary step directories: <step><suffix>[-<n>]


def _join_orbax_writers(timeout_s: float = 120.0) -> None:
    """Wait for orbax's write threads (one per item and array handler) to end."""
    module = importlib.import_module("orbax.checkpoint._src.futures.future")
    thread_class = getattr(module, "_SignalingThread", None)  # private: absent in other versions
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread_class and isinstance(thread, thread_class) and thread is not threading.current_thread():
            # Thread.join, not orbax's join, which raises the thread's error
            threading.Thread.join(thread, max(0.0, deadline - time.monotonic()))


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged or cannot be written; the message names the path."""


def warn_stderr(message: str) -> None:
    """The default warning: one line on stderr, from the main process only."""
    if jax.process_index() == 0:
        print(f"lm train: warning: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Restored:
    """A restored checkpoint; `verified` is False when it had no checksum manifest."""
    step: int
    state: Any
    data: dict
    meta: dict
    verified: bool = True


class Checkpointer:
    """Save and restore `(train_state, data_state, meta)` under `directory`."""

    def __init__(self, directory: Path, *, keep_last: int, keep_every: int = 0,
                 async_save: bool = True, warn: Callable[[str], None] = warn_stderr):
        self.directory = Path(directory).absolute()
        self.async_save = async_save
        self._warn = warn
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep_last, keep_period=keep_every or None,
            enable_async_checkpointing=async_save, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "data", "meta"))
        self._background = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lm-ckpt")
        self._pending: tuple[int, concurrent.futures.Future] | None = None

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None (whether it verifies is not checked)."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def step_dir(self, step: int) -> Path:
        return self.directory / str(step)

    # Saving.

    def save(self, step: int, state: Any, data_state: dict, meta: dict) -> None:
        """Start saving (returns before the write finishes when asynchronous). Raises
        CheckpointError if this save, or the previous asynchronous one, failed."""
        self._settle()
        try:
            self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data_state),
                meta=ocp.args.JsonSave(meta)), force=True)
        except Exception as err:
            self._save_failed(step, err)
        if self.async_save:  # orbax finishes in its own thread; the manifest follows it
            self._pending = (step, self._background.submit(self._finish, step))
        else:
            note = self._finish(step)
            if note:
                self._warn(note)

    def wait(self) -> None:
        """Block until any asynchronous save (and its manifest) has finished."""
        self._settle()

    def close(self) -> None:
        try:
            self._settle()
        finally:
            self._background.shutdown()
            self._manager.close()

    def _finish(self, step: int) -> str | None:
        """Wait for orbax, then write the step's manifest; a warning if that failed."""
        self._manager.wait_until_finished()  # raises the save's error
        if jax.process_index() != 0 or not self.step_dir(step).is_dir():
            return None
        try:
            write_manifest(self.step_dir(step))
        except OSError as err:
            why = "the disk is full" if is_disk_full(err) else one_line(err)
            return (f"could not write the checksum manifest of checkpoint {self.step_dir(step)} "
                    f"({why}); the checkpoint is complete and will be restored unverified")
        return None

    def _settle(self) -> None:
        """Wait for the pending asynchronous save; report its failure or warning."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        step, future = pending
        try:
            note = future.result()
        except Exception as err:
            self._save_failed(step, err)
        if note:
            self._warn(note)

    def _save_failed(self, step: int, err: Exception) -> None:
        """Remove the step's temporary directory and raise a one-line CheckpointError."""
        _join_orbax_writers()  # orbax reports the first failed write while others still run
        for partial in self.directory.glob(f"{step}{_TMP_SUFFIX}*"):
            shutil.rmtree(partial, ignore_errors=True)
        try:  # orbax re-raises a failed async save once in each thread that waits on it
            self._manager.wait_until_finished()
        except Exception:
            pass
        self._manager.reload()
        latest = self.latest_step()
        kept = (f"step {latest} is still the latest checkpoint" if latest is not None
                else "there is no earlier checkpoint")
        if is_disk_full(err):
            message = (f"the disk is full: could not save checkpoint step {step} in {self.directory}; "
                       f"the partial save was removed and {kept}; free space and rerun to resume")
        else:
            message = (f"could not save checkpoint step {step} in {self.directory} ({one_line(err)}); "
                       f"the partial save was removed and {kept}")
        raise CheckpointError(message) from err

    # Restoring.

    def restore(self, step: int, abstract_state: Any, *,
                warn: Callable[[str], None] | None = None) -> tuple[Any, dict, dict]:
        """Restore step `step` into the structure, shapes and shardings of `abstract_state`.
        Raises CheckpointError if it is missing, damaged or does not fit `abstract_state`."""
        self._settle()
        if step not in self.all_steps():
            raise CheckpointError(f"no complete checkpoint for step {step} in {self.directory}")
        try:
            restored = self._restore_step(step, abstract_state, warn or self._warn)
        except Corrupt as err:
            raise CheckpointError(f"checkpoint {self.step_dir(step)} is corrupt: {err.reason}") from err
        return restored.state, restored.data, restored.meta

    def restore_latest(self, abstract_state: Any, *, fallback: bool = True,
                       warn: Callable[[str], None] | None = None) -> Restored | None:
        """The newest checkpoint that verifies and restores; None when there is none.
        Damaged ones are moved aside (fallback) or raise CheckpointError; see the module."""
        warn = warn or self._warn
        self._settle()
        steps = sorted(self.all_steps(), reverse=True)
        bad: list[str] = []
        for i, step in enumerate(steps):
            path = self.step_dir(step)
            try:
                return self._restore_step(step, abstract_state, warn)
            except Corrupt as err:
                if not fallback:
                    raise CheckpointError(
                        f"checkpoint {path} is corrupt: {err.reason}; move it away to resume from "
                        f"the previous checkpoint (or set train.checkpoint_fallback=True)") from err
                moved = self._quarantine(step)
                bad.append(f"step {step}: {err.reason}")
                then = (f"falling back to step {steps[i + 1]}" if i + 1 < len(steps)
                        else "no earlier checkpoint is left")
                warn(f"checkpoint {path} is corrupt: {err.reason}; moved it to {moved}, {then}")
        if bad:
            raise CheckpointError(
                f"no usable checkpoint in {self.directory}: every one was corrupt ({'; '.join(bad)}); "
                f"they were moved to {self.directory / CORRUPT_DIR}, so rerunning starts from scratch")
        return None

    def _restore_step(self, step: int, abstract_state: Any, warn: Callable[[str], None]) -> Restored:
        """Verify and restore one step; Corrupt if it is damaged, CheckpointError if it is
        intact but does not fit `abstract_state`."""
        path = self.step_dir(step)
        verified = verify_manifest(path)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore()))
        except Exception as err:  # orbax raises many types: tell a mismatch from damage
            mismatch = describe_mismatch(path / "state", abstract_state)
            if mismatch:
                raise CheckpointError(f"checkpoint {path} does not match this run's model and "
                                      f"optimizer: {mismatch}") from err
            if verified:
                raise CheckpointError(f"checkpoint {path} is intact (its checksums match) but could "
                                      f"not be restored into this run's state ({one_line(err)})") from err
            raise Corrupt(f"orbax could not read it ({one_line(err)})") from err
        if not verified:
            warn(f"checkpoint {path} has no checksum manifest (saved by an older version, or the run "
                 f"stopped just after saving it); restored it unverified")
        return Restored(step, restored["state"], restored["data"], restored["meta"], verified)

    def _quarantine(self, step: int) -> Path:
        """Move a damaged step to <directory>/corrupt/<step>[.n], out of orbax's sight."""
        source, target = self.step_dir(step), self.directory / CORRUPT_DIR / str(step)
        n = 1
        while target.exists():
            n += 1
            target = self.directory / CORRUPT_DIR / f"{step}.{n}"
        if jax.process_index() == 0 and source.exists():
            try:
                target.parent.mkdir(exist_ok=True)
                source.rename(target)
            except OSError as err:
                raise CheckpointError(f"checkpoint {source} is corrupt and could not be moved to "
                                      f"{target} ({one_line(err)}); move or delete it") from err
        barrier(f"lm-checkpoint-quarantine-{step}")
        self._manager.reload()
        return target
