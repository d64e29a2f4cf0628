"""Stopping a run cleanly on SIGTERM or SIGINT (Slurm preemption, TPU maintenance, Ctrl-C).

`lm train` finishes the step in flight, waits for any asynchronous save,
saves that step's checkpoint synchronously and exits with `PREEMPTED_EXIT`;
running the same command again resumes from the next step, bit for bit.

In a multi-process run the signal may reach one process, several, or all at
slightly different steps. After every step the processes agree with a tiny
all-gather of their flags (`StopSignal.agreed`), so all of them stop after
the same step and save the same checkpoint. While stopping, more SIGTERMs are
ignored (Slurm and systemd may send one to every process of a job, and srun
forwards its own), but a second Ctrl-C (SIGINT) interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Callable

import numpy as np


SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """The run stopped on a signal after saving a checkpoint; rerunning resumes it."""

    def __init__(self, signal_name: str, step: int, directory: str):
        self.signal_name, self.step, self.directory = signal_name, step, directory
        super().__init__(f"stopped by {signal_name} after step {step}; its checkpoint is in "
                         f"{directory}; rerun the same command to resume from step {step + 1}")


class StopSignal:
    """While entered, SIGTERM and SIGINT set a flag instead of killing the process.

    Only the main thread can install handlers; elsewhere (a notebook's worker
    thread) the context does nothing and signals keep their usual effect.
    """

    def __init__(self, signals: tuple[int, ...] = SIGNALS,
                 all_gather: Callable[[np.ndarray], np.ndarray] | None = None):
        self.signals = signals
        self.received: str | None = None  # the first signal's name
        self._previous: dict[int, object] = {}
        self._all_gather = all_gather

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name
        if signal.SIGINT in self._previous:  # from now on Ctrl-C interrupts; SIGTERMs stay caught
            signal.signal(signal.SIGINT, self._previous[signal.SIGINT])

    def agreed(self) -> bool:
        """Whether to stop now: this process got a signal or, in a multi-process run, any did."""
        local = np.array([self.received is not None], dtype=np.int32)
        if self._all_gather is None:
            return bool(local[0])
        return bool(np.asarray(self._all_gather(local)).any())


def process_all_gather() -> Callable[[np.ndarray], np.ndarray] | None:
    """The all-gather that lets processes agree (None in a single-process run)."""
    import jax

    if jax.process_count() == 1:
        return None
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather
