"""porian_cpu_i: step (i) of Porian et al. (2024)'s Figure 1 at CPU scale, the Kaplan-like
setup: C counts 6 N D with the non-embedding N (the head's FLOPs left out), one learning rate
(3e-3) for every size and a fixed warmup of 100 steps (409,600 tokens), which is a third or
more of the largest models' runs at the smallest budget, as KM's 3,000-step warmup was for
their small models.

Three budgets, 1.25e11, 2.5e11 and 5e11 FLOPs by 6 N D, four or five model sizes each from
3.4k to 200k non-embedding parameters (under this accounting the optimum of the middle budget
sits near 9k, so it keeps the smallest size), vocabulary 512, batch 16 x 128 tokens, on the
built-in stdlib corpus. Part of experiments/studies/porian_cpu.py."""


def get_sweep():
    return {
        "base": {
            "model": {"vocab_size": 512, "max_seq_len": 128},
            "data": {"seq_len": 128},
            "train": {"batch_size": 16, "lr": 3e-3, "warmup_steps": 100, "eval_every": 200,
                      "eval_batches": 8, "checkpoint_every": 1000, "keep_last": 1},
        },
        "kind": "isoflop",
        "n_kind": "non_embedding",
        "flops": "6n",
        "budgets": [1.25e11, 2.5e11, 5e11],
        "model_sizes": [
            [3.4e3, 12e3, 24e3, 50e3],
            [3.4e3, 12e3, 24e3, 50e3, 100e3],
            [24e3, 50e3, 100e3, 200e3],
        ],
        "family": {"head_dim": 16, "min_aspect": 16, "max_aspect": 64, "ffn_multiple": 16},
    }
