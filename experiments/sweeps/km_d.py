"""km_d: Kaplan et al. (2020) L(D). One model of about 100M non-embedding parameters
trained on 250M to 8B tokens (six runs, each with its own full cosine schedule),
batch 256 x 2048 tokens.

9.5e18 FLOPs in all by 6 N D, 1.8e19 by the exact count: some 13 H100-hours at
400 TFLOP/s. The
corpus is FineWeb-Edu's 10B-token sample (`pip install -e '.[hf]'`, network); point
`--config.data.sources` elsewhere to use your own.
"""

from fineweb_base import FAMILY, base


def get_sweep():
    return {
        "base": base(warmup_steps=200, eval_every=250, checkpoint_every=1000),
        "kind": "d",
        "n_kind": "non_embedding",
        "model_sizes": [1e8],
        "tokens": [2.5e8, 5e8, 1e9, 2e9, 4e9, 8e9],
        "family": FAMILY,
    }
