"""hparams_cpu: learning-rate and batch-size laws (DeepSeek LLM 2024, section 3.1) at CPU scale.

Three compute budgets, 6.25e10, 2.5e11 and 1e12 FLOPs by the exact count, one model each near
its budget's compute-optimal size (3.4k, 12k and 24k non-embedding parameters; porian_cpu's
step (iv) put the optima of 5e11-2e12 at 12k-50k), trained at every learning rate of
5e-3-4e-2 (factor 2) and every batch of 4, 8, 16 and 32 sequences of 128 tokens: 16 members
per budget, 48 runs of 106 to 4,432 steps. (A first grid, 2.5e-3-2e-2 x 8-32 sequences, put
every budget's best run at its largest learning rate and smallest batch.) Tuning the batch
keeps each budget's D (the steps follow) and the held-out rows (eval_batches is scaled so every
member evaluates 32 x 16 rows, lm.sweep.grid). The warmup is a fixed 10 steps for every run,
as DeepSeek's was a fixed 2,000 steps. Vocabulary 512, the built-in stdlib corpus.

`lm fit --sweep DIR --method hparams` fits eta_opt(C) and B_opt(C) to every member.
"""

BATCHES = [4, 8, 16, 32]
LRS = [5e-3, 1e-2, 2e-2, 4e-2]


def get_sweep():
    return {
        "base": {
            "model": {"vocab_size": 512, "max_seq_len": 128},
            "data": {"seq_len": 128},
            "train": {"batch_size": 16, "lr": 1e-2, "warmup_steps": 10, "eval_every": 100000,
                      "eval_batches": 32, "checkpoint_every": 100000, "keep_last": 1},
        },
        "kind": "isoflop",
        "n_kind": "non_embedding",
        "flops": "exact",
        "budgets": [6.25e10, 2.5e11, 1e12],
        "model_sizes": [[3.4e3], [12e3], [24e3]],
        "family": {"head_dim": 16, "min_aspect": 16, "max_aspect": 64, "ffn_multiple": 16},
        "tune": {"train.lr": LRS, "train.batch_size": BATCHES},
    }
