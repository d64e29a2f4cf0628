"""epochs_ci: a tiny epochs sweep for tests and smoke runs of data-constrained sweeps, not for
fitting: one model size (12k non-embedding parameters, vocabulary 512) trained on 4,096 unique
tokens (8 steps of 8 x 64) for 1, 2 and 4 epochs, plus the fresh-data baselines of 2 and 4
epochs: 5 runs of 8 to 32 steps."""

from pathlib import Path

from lm.config import call_python_file


def get_sweep():
    sweep = call_python_file(Path(__file__).with_name("tiny_ci.py"), "get_sweep", kind="sweep")
    for key in ("budgets", "flops"):
        del sweep[key]
    sweep.update(kind="epochs", model_sizes=[12e3], unique_tokens=4096, epochs=[1, 2, 4],
                 unique_baseline=True)
    return sweep
