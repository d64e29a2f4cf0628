"""Checkpoints with orbax: train state (params, optimizer state, step), data-iterator
state and run metadata, saved asynchronously, kept by keep-last-N plus keep-every-M.

Orbax writes each step into a temporary directory and renames it into place
when the save is complete, so a crash during a save leaves nothing that
`latest_step` reports; resuming picks the newest complete step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint is missing or cannot be read; the message names the path."""


class Checkpointer:
    """Save and restore `(train_state, data_state, meta)` under `directory`."""

    def __init__(self, directory: Path, *, keep_last: int, keep_every: int = 0,
                 async_save: bool = True):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep_last, keep_period=keep_every or None,
            enable_async_checkpointing=async_save, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "data", "meta"))

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, data_state: dict, meta: dict) -> None:
        """Start saving (returns before the write finishes when asynchronous)."""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict, dict]:
        """Restore step `step` into the structure, shapes and shardings of `abstract_state`."""
        path = self.directory / str(step)
        if step not in self.all_steps():
            raise CheckpointError(f"no complete checkpoint for step {step} in {self.directory}")
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore()))
        except Exception as err:  # orbax raises many types; name the checkpoint either way
            raise CheckpointError(
                f"checkpoint {path} is corrupt or does not match this run's model and optimizer "
                f"({type(err).__name__}: {err}); delete it to resume from an earlier one") from err
        return restored["state"], restored["data"], restored["meta"]

    def wait(self) -> None:
        """Block until any asynchronous save has finished."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
