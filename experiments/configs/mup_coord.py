"""mup_coord: the model family of the muP coordinate check and transfer sweep.

2 layers, 4 heads (head_dim grows with width in the coordinate check), d_ff = 4 d_model,
vocabulary 512, untied embeddings; Adam at lr 1e-2, a rate at which SP's activations blow up
as the model widens and muP's do not:

    lm mup coord-check --config experiments/configs/mup_coord.py --widths 64,128,256,512 \
        --steps 5 --seeds 2 --out runs/mup_coord
"""


def get_config():
    return {
        "model": {"vocab_size": 512, "d_model": 64, "num_layers": 2, "num_heads": 4,
                  "num_kv_heads": 4, "d_ff": 256, "max_seq_len": 128, "tie_embeddings": False},
        "data": {"seq_len": 128},
        "train": {"batch_size": 16, "lr": 1e-2},
    }
