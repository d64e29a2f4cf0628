"""tiny: about 100k parameters, for tests and smoke runs."""


def get_config():
    return {
        "model": {"vocab_size": 512, "d_model": 64, "num_layers": 2, "num_heads": 4,
                  "num_kv_heads": 2, "d_ff": 128, "max_seq_len": 512, "tie_embeddings": True},
        "data": {"seq_len": 128},
        "train": {"steps": 200, "batch_size": 16, "lr": 1e-2, "warmup_steps": 20,
                  "eval_every": 50, "checkpoint_every": 50},
    }
