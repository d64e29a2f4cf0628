"""llama_7b: the LLaMA-2-7B shape (32 layers, d 4096, 32 heads, SwiGLU 11008, vocab 32000;
6,738,415,616 parameters)."""


def get_config():
    return {
        "model": {"vocab_size": 32000, "d_model": 4096, "num_layers": 32, "num_heads": 32,
                  "num_kv_heads": 32, "d_ff": 11008, "max_seq_len": 4096, "norm_eps": 1e-5,
                  "compute_dtype": "bfloat16", "remat": "full"},
        "data": {"seq_len": 4096},
        "train": {"steps": 500_000, "batch_size": 1024, "lr": 3e-4, "warmup_steps": 2000,
                  "min_lr_ratio": 0.1, "weight_decay": 0.1},
    }
