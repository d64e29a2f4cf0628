"""isoflop: Chinchilla (Hoffmann et al. 2022) approach 2. Four FLOP budgets, 1e17 to 3e18,
five model sizes each (total parameters, embeddings included, as Chinchilla counts),
spread by about 2x around the budget's expected optimum N = sqrt(C / 120) (20 tokens
per parameter); D = C / (6 N). Batch 256 x 2048 tokens.

2.2e19 FLOPs in all by 6 N D, 2.9e19 by the exact count: some 20 H100-hours at
400 TFLOP/s. The corpus is FineWeb-Edu's 10B-token sample (`pip install -e '.[hf]'`,
network; the longest run reads 6.3B tokens of it); point `--config.data.sources`
elsewhere to use your own.
"""

from fineweb_base import FAMILY, base


def get_sweep():
    return {
        "base": base(warmup_steps=100, eval_every=250, checkpoint_every=500),
        "kind": "isoflop",
        "n_kind": "total",
        "flops": "6n",
        "budgets": [1e17, 3e17, 1e18, 3e18],
        "model_sizes": [
            [15e6, 20e6, 30e6, 45e6, 65e6],
            [25e6, 35e6, 50e6, 75e6, 110e6],
            [45e6, 65e6, 90e6, 135e6, 200e6],
            [80e6, 110e6, 160e6, 240e6, 350e6],
        ],
        "family": FAMILY,
    }
