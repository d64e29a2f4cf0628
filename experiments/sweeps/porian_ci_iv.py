"""porian_ci_iv: steps (iii) and (iv) of the CI-sized Porian et al. (2024) ablation
(experiments/studies/porian_ci.py): porian_ci_ii with the warmup scaled to the model, N
tokens (Porian et al.'s rule: 2 to 12 steps here), and the learning rate tuned per point
over two values. Step (iii) fits the members at porian_ci_i's learning rate (1e-2), step
(iv) each point's best member. 12 runs of 10 to 33 steps."""

from pathlib import Path

from lm.config import call_python_file


def warmup_steps(p):
    """Warmup of N tokens, in whole steps of the base batch."""
    return max(1, round(p.n / (p.batch_size * p.seq_len)))


def get_sweep():
    sweep = call_python_file(Path(__file__).with_name("porian_ci_ii.py"), "get_sweep", kind="sweep")
    sweep.update(rules={"train.warmup_steps": warmup_steps}, tune={"train.lr": [1e-2, 3e-2]})
    return sweep
