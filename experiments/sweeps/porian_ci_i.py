"""porian_ci_i: step (i) of the CI-sized Porian et al. (2024) ablation
(experiments/studies/porian_ci.py): one learning rate and a long fixed warmup (8 steps, 80%
of step (ii)'s shortest run), D = C / 6N with N the non-embedding count (Kaplan-like).
2 IsoFLOP budgets x 3 model sizes (3.4k, 7k and 12k non-embedding parameters at 6e9 FLOPs,
7k, 12k and 24k at 1.4e10; vocabulary 512), batches of 32 x 64 tokens: 42 to 164 steps per
run, since 6N leaves out the embedding and head FLOPs that dominate at this size (steps
(ii)-(iv) give the same budgets 3-6x fewer tokens). For tests and smoke runs of
`lm sweep study`, not for fitting.

porian_ci_ii and porian_ci_iv start from this file's base, budgets and sizes."""


def get_sweep():
    return {
        "base": {
            "model": {"vocab_size": 512, "max_seq_len": 64, "tie_embeddings": True},
            "data": {"seq_len": 64},
            "train": {"batch_size": 32, "lr": 1e-2, "warmup_steps": 8, "eval_every": 1000,
                      "eval_batches": 2, "checkpoint_every": 1000, "keep_last": 1},
        },
        "kind": "isoflop",
        "n_kind": "non_embedding",
        "flops": "6n",
        "budgets": [6e9, 1.4e10],
        "model_sizes": [[3.4e3, 7e3, 12e3], [7e3, 12e3, 24e3]],
        "family": {"head_dim": 8, "min_aspect": 16, "max_aspect": 64, "ffn_multiple": 16},
    }
