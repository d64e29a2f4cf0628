"""emergence_cpu: six model sizes on the built-in stdlib corpus, each checkpoint kept every
100 steps, for reading few-shot task metrics along the training curves (`lm sweep eval`).

Kaplan-style "n" sweep: 3.4k to 200k non-embedding parameters (1 to 4 layers, vocabulary
512), each trained on the same 1.2M tokens (600 steps of 16 x 128) with learning rate 1e-2
and a 20-step warmup. `keep_every` keeps the checkpoints at 100, 200, ..., 600, and an
evaluation of the held-out split at each gives the held-out loss there.

    nice -n 5 lm sweep run --config experiments/sweeps/emergence_cpu.py --workdir runs/emergence_cpu
    lm sweep eval --workdir runs/emergence_cpu --task indentation brackets induction --limit 200 \
        --plot docs/figures/emergence_cpu.png

On 2 CPU cores other jobs kept at a load of 6-11: 14.6 minutes for the sweep (44 s to 4.6
minutes per run), 3 minutes for the evaluation (all 200 examples of each task at the 36
kept checkpoints). notebooks/emergence.ipynb reads the result.
"""


def get_sweep():
    return {
        "base": {
            "model": {"vocab_size": 512, "max_seq_len": 128},
            "data": {"seq_len": 128},
            "train": {"batch_size": 16, "lr": 1e-2, "warmup_steps": 20, "eval_every": 100,
                      "eval_batches": 8, "checkpoint_every": 100, "keep_every": 100, "keep_last": 1},
        },
        "kind": "n",
        "n_kind": "non_embedding",
        "model_sizes": [3.4e3, 12e3, 24e3, 50e3, 100e3, 200e3],
        "tokens": 600 * 16 * 128,
        "family": {"head_dim": 16, "min_aspect": 16, "max_aspect": 64, "ffn_multiple": 16},
    }
