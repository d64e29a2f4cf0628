"""epochs_cpu: data-constrained scaling (Muennighoff et al. 2023) at CPU scale: what 1, 2, 4,
8 and 16 epochs of a fixed set of unique tokens cost against fresh data.

Every run draws its tokens from the same 131,072 unique tokens of the built-in stdlib corpus
(64 steps of 16 x 128; `data.unique_tokens`, lm.data.repeat) and trains on U x R of them, R in
1, 2, 4, 8, 16, the documents reshuffled every epoch; beside each R > 1 a baseline trains on
U x R unique tokens once (`unique_baseline`), so each repeated run has a fresh-data twin of the
same D. Three model sizes, 3.4k, 12k and 50k non-embedding parameters (38, 11 and 2.6 unique
tokens per parameter), each with a cosine schedule over its own run, learning rate 1e-2 (the
best of porian_cpu's grid at these sizes) and a 10-step warmup. 27 runs, 64 to 1,024 steps.
Vocabulary 512. The held-out set is the corpus's held-out split (disjoint from every subset),
32 x 16 rows of 128 tokens.

`lm fit --sweep DIR --method data_constrained` fits R*_D (the paper: 15.4).
"""


def get_sweep():
    return {
        "base": {
            "model": {"vocab_size": 512, "max_seq_len": 128},
            "data": {"seq_len": 128},
            "train": {"batch_size": 16, "lr": 1e-2, "warmup_steps": 10, "eval_every": 100000,
                      "eval_batches": 32, "checkpoint_every": 100000, "keep_last": 1},
        },
        "kind": "epochs",
        "n_kind": "non_embedding",
        "model_sizes": [3.4e3, 12e3, 50e3],
        "unique_tokens": 131072,
        "epochs": [1, 2, 4, 8, 16],
        "unique_baseline": True,
        "family": {"head_dim": 16, "min_aspect": 16, "max_aspect": 64, "ffn_multiple": 16},
    }
