"""porian_ci_ii: step (ii) of the CI-sized Porian et al. (2024) ablation
(experiments/studies/porian_ci.py): porian_ci_i with the head's FLOPs counted in C, that is
D = C / (exact training FLOPs per token, Chinchilla appendix F); the same budgets, sizes,
learning rate and fixed warmup. 10 to 33 steps per run."""

from pathlib import Path

from lm.config import call_python_file


def get_sweep():
    sweep = call_python_file(Path(__file__).with_name("porian_ci_i.py"), "get_sweep", kind="sweep")
    sweep["flops"] = "exact"
    return sweep
