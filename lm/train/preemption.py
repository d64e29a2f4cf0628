"""Stopping a run cleanly on SIGTERM or SIGINT (Slurm preemption, TPU maintenance, Ctrl-C).

`lm train` finishes the step in flight, waits for any asynchronous save, saves
that step's checkpoint synchronously and exits with `PREEMPTED_EXIT`; running
the same command again resumes from the next step.
"""

from __future__ import annotations

PREEMPTED_EXIT = 75  # sysexits.h EX_TEMPFAIL: a temporary failure; rerun the same command to resume
