"""porian_cpu_ii: step (ii) of Porian et al. (2024)'s Figure 1 at CPU scale: step (i) with C
counted exactly (Chinchilla appendix F: the head, embeddings and attention included), so
each budget's token counts D = C / (exact FLOPs per token). Still one learning rate (3e-3)
and the fixed 100-step warmup.

Three budgets, 5e11, 1e12 and 2e12 exact FLOPs, four model sizes each from 3.4k to 200k
non-embedding parameters (one size up per budget). Part of experiments/studies/porian_cpu.py."""

from pathlib import Path

from lm.config import call_python_file


def get_sweep():
    sweep = call_python_file(Path(__file__).with_name("porian_cpu_i.py"), "get_sweep",
                             kind="sweep")
    sweep.update(flops="exact", budgets=[5e11, 1e12, 2e12], model_sizes=[
        [3.4e3, 12e3, 24e3, 50e3],
        [12e3, 24e3, 50e3, 100e3],
        [24e3, 50e3, 100e3, 200e3],
    ])
    return sweep
