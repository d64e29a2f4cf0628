"""chinchilla_approach1: Chinchilla (Hoffmann et al. 2022) approach 1. Five model sizes,
20M-320M total parameters, each trained for four horizons, 1B to 8B tokens, with a cosine
schedule as long as the run (never a truncated longer one); the lower envelope of the
loss-vs-FLOPs curves (curves.csv) gives N_opt(C) and D_opt(C). Batch 256 x 2048 tokens.

5.6e19 FLOPs in all by 6 N D, 7.2e19 by the exact count: some 50 H100-hours at
400 TFLOP/s. The corpus is
FineWeb-Edu's 10B-token sample (`pip install -e '.[hf]'`, network); point
`--config.data.sources` elsewhere to use your own.
"""

from fineweb_base import FAMILY, base


def get_sweep():
    return {
        "base": base(warmup_steps=200, eval_every=100, checkpoint_every=500),
        "kind": "approach1",
        "n_kind": "total",
        "model_sizes": [20e6, 40e6, 80e6, 160e6, 320e6],
        "tokens": [1e9, 2e9, 4e9, 8e9],
        "family": FAMILY,
    }
