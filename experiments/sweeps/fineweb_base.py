"""What the four GPU sweeps (chinchilla_approach1, isoflop, km_n, km_d) share: FineWeb-Edu's
10B-token sample (`pip install -e '.[hf]'`, network), a 32k vocabulary, bfloat16 compute,
sequences of 2048 tokens, batch 256 (524,288 tokens a step), 32 held-out batches, and one
model family (head dim 64, aspect ratio d_model / num_layers in [32, 64]). Point
`--config.data.sources` elsewhere to use your own corpus.

Not a sweep itself: sweep files import it (`from fineweb_base import FAMILY, base`); lm runs
a sweep file with its own directory on the import path.
"""

FAMILY = {"head_dim": 64, "min_aspect": 32, "max_aspect": 64, "ffn_multiple": 64}


def base(*, warmup_steps: int, eval_every: int, checkpoint_every: int) -> dict:
    """The sweeps' base config; they differ only in warmup and how often they eval and save."""
    return {
        "model": {"vocab_size": 32000, "max_seq_len": 2048, "compute_dtype": "bfloat16"},
        "data": {"sources": ["hf:HuggingFaceFW/fineweb-edu:sample-10BT"], "seq_len": 2048,
                 "heldout_fraction": 0.001},
        "train": {"batch_size": 256, "lr": 1e-3, "warmup_steps": warmup_steps,
                  "eval_every": eval_every, "eval_batches": 32, "checkpoint_every": checkpoint_every},
    }
