"""llama_1b: the TinyLlama-1.1B shape (22 layers, d 2048, GQA 32/4, SwiGLU 5632, vocab 32000)."""


def get_config():
    return {
        "model": {"vocab_size": 32000, "d_model": 2048, "num_layers": 22, "num_heads": 32,
                  "num_kv_heads": 4, "d_ff": 5632, "max_seq_len": 2048,
                  "compute_dtype": "bfloat16", "remat": "dots"},
        "data": {"seq_len": 2048},
        "train": {"steps": 100_000, "batch_size": 512, "lr": 4e-4, "warmup_steps": 2000,
                  "min_lr_ratio": 0.1, "weight_decay": 0.1},
    }
