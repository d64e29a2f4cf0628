"""mup_transfer_cpu: does the best learning rate hold as the model widens? SP against muP.

Four widths, d_model 32, 64, 128 and 256 (8x), at a fixed depth of 2 layers with 16-dim
heads (so the head count grows with width, as in microsoft/mup's transformer examples) and
d_ff = 8/3 d_model; each trained on the same 204,800 tokens of the built-in stdlib corpus
(200 steps of 8 x 128) at every learning rate of 6.25e-4 to 8e-2 (factor 2), under SP and
under muP with the 32-wide model as the proxy (model.mup_base_width=32; at the proxy the two
parametrizations are the same model). 4 widths x 8 rates x 2 = 64 runs, a constant
learning rate after a 20-step warmup so that the comparison is about the rate itself.
Vocabulary 512, untied embeddings (so muP models can be exported to HF).

    lm sweep run --config experiments/sweeps/mup_transfer_cpu.py --workdir runs/mup_transfer_cpu
    lm mup transfer --sweep runs/mup_transfer_cpu --out runs/mup_transfer_cpu/transfer

`lm mup transfer` reports, per parametrization, the best learning rate at each width and how many
grid steps (factors of 2) it moves from the narrowest to the widest model.
"""

LRS = [6.25e-4, 1.25e-3, 2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2, 8e-2]
# the non-embedding parameter counts of d_model 32, 64, 128, 256 at 2 layers (head_dim 16,
# d_ff 80, 176, 336, 688): the planner finds exactly these shapes
WIDTH_PARAMS = [23_712, 100_672, 389_760, 1_582_336]


def get_sweep():
    return {
        "base": {
            "model": {"vocab_size": 512, "max_seq_len": 128, "tie_embeddings": False,
                      "mup_base_width": 32},
            "data": {"seq_len": 128},
            "train": {"batch_size": 8, "warmup_steps": 20, "schedule": "constant",
                      "eval_every": 100000, "eval_batches": 16, "checkpoint_every": 100000,
                      "keep_last": 1},
        },
        "kind": "n",
        "n_kind": "non_embedding",
        "model_sizes": WIDTH_PARAMS,
        "tokens": 204_800,
        "family": {"head_dim": 16, "ffn_multiple": 16, "num_layers": 2},
        "tune": {"model.parametrization": ["sp", "mup"], "train.lr": LRS},
    }
