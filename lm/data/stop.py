"""Stopping long data work cleanly on SIGTERM or SIGINT (Slurm preemption, Ctrl-C).

Inside `StopSignals`, the first SIGTERM or SIGINT only sets a flag: the work checks it
between units (`check`, e.g. between tasks of `lm data prepare`), so every unit either
finishes and is marked done or was never started. A second signal raises `Preempted`
at once, abandoning the unit in flight; its files are written atomically and marked
done last, so nothing half-written is ever counted as done. `lm data prepare` exits
with `PREEMPTED_EXIT` and rerunning the same command resumes.
"""

from __future__ import annotations

import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """A stop signal arrived; the message says what was finished. Rerun to resume."""


class StopSignals:
    """Catch SIGTERM and SIGINT while inside the `with` block (a no-op off the main thread,
    where Python cannot install handlers); the previous handlers come back on exit."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            raise Preempted(f"stopped at once by a second {name}; rerun the same command to resume")
        self.received = name
        # On a line of its own: a progress bar may be half drawn.
        print(f"\nlm data: {name} received; stopping after the work in flight (send it again to stop at once)",
              file=sys.stderr, flush=True)

    def check(self, where: str) -> None:
        """Raise `Preempted` if a signal arrived; `where` says what is done (for the message)."""
        if self.received is not None:
            raise Preempted(f"stopped by {self.received} {where}; finished work is kept; "
                            "rerun the same command to resume")


def ignore_stop_signals() -> None:
    """For worker processes: let the parent decide when to stop; a worker finishes its task."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
