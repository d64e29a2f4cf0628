"""tiny_ci: 2 IsoFLOP budgets x 2 model sizes (12k and 24k non-embedding parameters,
vocabulary 512), 9 to 22 steps of 8 x 64 tokens each. For tests and smoke runs of the
sweep machinery, not for fitting."""


def get_sweep():
    return {
        "base": {
            "model": {"vocab_size": 512, "max_seq_len": 64, "tie_embeddings": True},
            "data": {"seq_len": 64},
            "train": {"batch_size": 8, "lr": 1e-2, "warmup_steps": 2, "eval_every": 1000,
                      "eval_batches": 1, "checkpoint_every": 5, "keep_last": 2},
        },
        "kind": "isoflop",
        "n_kind": "non_embedding",
        "flops": "6n",
        "budgets": [6e8, 8e8],
        "model_sizes": [12e3, 24e3],
        "family": {"head_dim": 16, "min_aspect": 16, "max_aspect": 64, "ffn_multiple": 16},
    }
