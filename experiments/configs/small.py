"""small: about 34M parameters (26M non-embedding); the CPU benchmark shape."""


def get_config():
    return {
        "model": {"vocab_size": 8192, "d_model": 512, "num_layers": 8, "num_heads": 8,
                  "num_kv_heads": 8, "d_ff": 1408, "max_seq_len": 1024,
                  # CPU-tuned (benchmarks/compare_peers.py): causal blocks skipped, layers unrolled
                  "attention": "blockwise", "attention_block": 128, "scan_unroll": 8},
        "data": {"seq_len": 256},
        "train": {"steps": 2000, "batch_size": 8, "lr": 1e-3, "warmup_steps": 200},
    }
