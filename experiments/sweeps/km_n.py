"""km_n: Kaplan et al. (2020) L(N). Five models of 3M-300M non-embedding parameters, each
trained on the same 8B tokens (large enough that the biggest is not data-limited:
Kaplan's D >~ 5e3 N^0.74 gives 9B at 300M), batch 256 x 2048 tokens, 15,259 steps.

2.1e19 FLOPs in all by 6 N D, 3.9e19 by the exact count (embeddings, attention and head
included): some 27 H100-hours at 400 TFLOP/s. The corpus is FineWeb-Edu's 10B-token
sample (`pip install -e '.[hf]'`, network); point `--config.data.sources` elsewhere to
use your own.
"""

from fineweb_base import FAMILY, base


def get_sweep():
    return {
        "base": base(warmup_steps=500, eval_every=1000, checkpoint_every=1000),
        "kind": "n",
        "n_kind": "non_embedding",
        "model_sizes": [3e6, 1e7, 3e7, 1e8, 3e8],
        "tokens": 8e9,
        "family": FAMILY,
    }
