"""isoflop_cpu: an IsoFLOP sweep (Chinchilla approach 2) that runs on a laptop CPU.

Three budgets, 5e11, 1.5e12 and 5e12 FLOPs by the exact count (D = C / exact FLOPs per
token, so the runs of one budget take about the same time), five model sizes each from
3.4k to 440k non-embedding parameters, shifted up one size per budget so that each
budget's optimum lies inside its sizes (in trial runs the best held-out loss came at
12k-13k for 5e11 and 27k-50k for 1.5e12);
vocabulary 1,024, batch 16 x 128 tokens, 154 to 3,831 steps, on the built-in stdlib
corpus (12.5M training tokens, so no run repeats data).

Time on 2 CPU cores with `--parallel 1`: about 26 minutes on an otherwise idle machine,
38 while other work holds one core (measured step times of 0.03-0.5 s, 15-20 s per run
to start and compile, 35 s to prepare the data).
"""


def get_sweep():
    return {
        "base": {
            "model": {"vocab_size": 1024, "max_seq_len": 128},
            "data": {"seq_len": 128},
            "train": {"batch_size": 16, "lr": 3e-3, "warmup_steps": 20, "eval_every": 100,
                      "eval_batches": 4, "checkpoint_every": 250},
        },
        "kind": "isoflop",
        "n_kind": "non_embedding",
        "flops": "exact",
        "budgets": [5e11, 1.5e12, 5e12],
        "model_sizes": [
            [3.4e3, 12e3, 24e3, 50e3, 100e3],
            [12e3, 24e3, 50e3, 100e3, 200e3],
            [24e3, 50e3, 100e3, 200e3, 440e3],
        ],
        "family": {"head_dim": 16, "min_aspect": 16, "max_aspect": 64, "ffn_multiple": 16},
    }
