"""porian_cpu_iv: steps (iii) and (iv) of Porian et al. (2024)'s Figure 1 at CPU scale.

Step (ii)'s budgets, sizes and exact C, with the warmup scaled to model size as Porian did
(N tokens: 2 to 98 steps of 2,048 tokens) and the learning rate tuned per size over 1e-3,
3e-3, 1e-2 and 3e-2: four members per point (with the first three, 1e-2, the grid's edge,
won at 11 of 12 points, so the grid was widened). Step (iii) fits the members at 3e-3 (the
single LR of steps (i) and (ii)), step (iv) each point's best member by held-out loss. Part
of experiments/studies/porian_cpu.py."""

from pathlib import Path

from lm.config import call_python_file


def warmup_steps(p):
    """Porian et al.'s warmup: N tokens, in whole steps of the batch (at least 1)."""
    return max(1, round(p.n / (p.batch_size * p.seq_len)))


def get_sweep():
    sweep = call_python_file(Path(__file__).with_name("porian_cpu_ii.py"), "get_sweep",
                             kind="sweep")
    sweep.update(rules={"train.warmup_steps": warmup_steps},
                 tune={"train.lr": [1e-3, 3e-3, 1e-2, 3e-2]})
    return sweep
