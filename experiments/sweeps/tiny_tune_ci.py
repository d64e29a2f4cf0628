"""tiny_tune_ci: tiny_ci's model sizes tuned per point, for tests and smoke runs of the
tuning machinery, not for fitting. One IsoFLOP budget x 2 model sizes (12k and 24k
non-embedding parameters), each trained at 2 learning rates: 4 runs of 35 and 18 steps of
32 x 64 tokens. Warmup follows Porian et al. (2024): N tokens (6 and 12 steps here),
which needs D >= N, hence a larger batch and budget than tiny_ci's."""

from pathlib import Path

from lm.config import call_python_file


def warmup_steps(p):
    """Warmup of N tokens, in whole steps of the base batch."""
    return max(1, round(p.n / (p.batch_size * p.seq_len)))


def get_sweep():
    sweep = call_python_file(Path(__file__).with_name("tiny_ci.py"), "get_sweep", kind="sweep")
    sweep["base"]["train"].update(batch_size=32, checkpoint_every=1000, keep_last=1)
    sweep.update(budgets=[5e9], rules={"train.warmup_steps": warmup_steps},
                 tune={"train.lr": [3e-3, 1e-2]})
    return sweep
