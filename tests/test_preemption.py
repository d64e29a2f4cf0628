"""StopSignal: SIGTERM / SIGINT become a flag that every process agrees on."""

import os
import signal

import numpy as np
import pytest

from lm.errors import PREEMPTED_EXIT
from lm.train.preemption import Preempted, StopSignal


def test_a_signal_sets_the_flag_and_repeated_sigterms_are_ignored():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignal() as stop:
        assert not stop.agreed()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # Slurm's and srun's: still alive
        assert stop.agreed() and stop.received == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_ctrl_c_interrupts_at_once():
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_processes_stop_together_when_any_of_them_got_the_signal():
    """Another process's flag (the all-gather's second row) stops this one too."""
    others = {"flag": 0}
    gather = lambda local: np.concatenate([local, [others["flag"]]])  # noqa: E731
    with StopSignal(all_gather=gather) as stop:
        assert not stop.agreed()
        others["flag"] = 1
        assert stop.agreed() and stop.received is None


def test_the_message_and_status():
    err = Preempted("SIGTERM", 12, "/runs/x/checkpoints/12")
    assert str(err) == ("stopped by SIGTERM after step 12; its checkpoint is in /runs/x/checkpoints/12; "
                        "rerun the same command to resume from step 13")
    assert PREEMPTED_EXIT == 75
