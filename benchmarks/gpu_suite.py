"""One GPU benchmark run: the train-step table for presets up to the 1B shape, in bf16, and
the effect of each optimisation on the 1B shape, in about 5 minutes on one H100/H200.

    python benchmarks/gpu_suite.py [--json runs/bench/gpu.json]      # on the GPU machine
    python benchmarks/gpu_suite.py --smoke                           # on CPU: tiny shapes, 1 step

Rows (each is benchmarks/train_step.py's `time_train_step` with overrides):

    tiny, small             overhead-bound and mid-size shapes, bf16
    llama_1b  base          TinyLlama-1.1B shape, 8 x 2048, bf16, remat dots, einsum attention
    llama_1b  +blockwise    lm's blockwise causal attention (128-position blocks)
    llama_1b  +cudnn        jax.nn.dot_product_attention with the cuDNN kernel
    llama_1b  +cudnn+chunk  ... plus the chunked loss (no full f32 logits)
    llama_1b  +cudnn+chunk, remat none   (if it fits)

A row that fails (out of memory, a kernel the device lacks) prints its error and the
suite goes on, so one run always gives a table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Sequence

from lm.config import load_config

HERE = Path(__file__).resolve().parent
BF16 = ["--config.model.compute_dtype=bfloat16"]
LLAMA_1B = ["--config.train.batch_size=8", "--config.data.seq_len=2048"]
CUDNN = ["--config.model.attention=cudnn"]
CHUNK = ["--config.train.loss_chunk=512"]

ROWS: list[tuple[str, str, list[str]]] = [
    ("tiny", "tiny", BF16 + ["--config.train.batch_size=64"]),
    ("small", "small", BF16 + ["--config.train.batch_size=64"]),
    ("llama_1b base", "llama_1b", LLAMA_1B),
    ("llama_1b +blockwise", "llama_1b", LLAMA_1B + ["--config.model.attention=blockwise"]),
    ("llama_1b +cudnn", "llama_1b", LLAMA_1B + CUDNN),
    ("llama_1b +cudnn+chunk", "llama_1b", LLAMA_1B + CUDNN + CHUNK),
    ("llama_1b +cudnn+chunk remat none", "llama_1b", LLAMA_1B + CUDNN + CHUNK
     + ["--config.model.remat=none"]),
]
# CPU smoke test of the same rows: tiny shapes, XLA attention instead of cuDNN
SMOKE = ["--config.model.d_model=64", "--config.model.num_layers=2", "--config.model.num_heads=4",
         "--config.model.num_kv_heads=2", "--config.model.d_ff=128", "--config.model.vocab_size=512",
         "--config.train.batch_size=2", "--config.data.seq_len=64", "--config.model.max_seq_len=64"]


def load_train_step_module():
    spec = importlib.util.spec_from_file_location("bench_train_step", HERE / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smoke_overrides(overrides: list[str]) -> list[str]:
    """The row's switches on a tiny shape that runs on CPU (cuDNN becomes XLA's kernel)."""
    kept = [o for o in overrides if "batch_size" not in o and "seq_len" not in o]
    kept = [o.replace("attention=cudnn", "attention=xla") for o in kept]
    return kept + SMOKE + ["--config.train.loss_chunk=32" if any("loss_chunk" in o for o in kept) else
                           "--config.train.loss_chunk=0"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, 1 step (CPU check)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    bench = load_train_step_module()
    steps, warmup = (1, 0) if args.smoke else (args.steps, 2)
    rows, failures, start = [], [], time.perf_counter()
    for label, preset, overrides in ROWS:
        overrides = smoke_overrides(overrides) if args.smoke else overrides
        try:
            cfg = load_config(bench.preset_path(preset), overrides)
            rows.append(bench.time_train_step(cfg, steps, warmup, label=label))
            print(f"[suite] {label}: {rows[-1]['tokens_per_s']:,.0f} tokens/s, "
                  f"MFU {100 * rows[-1]['mfu']:.1f}%", file=sys.stderr, flush=True)
        except Exception as err:  # report and go on: one run must give a table
            failures.append({"row": label, "error": f"{type(err).__name__}: {err}"[:500]})
            traceback.print_exc(limit=2)
    print(bench.format_table(rows) if rows else "no row ran")
    for f in failures:
        print(f"FAILED {f['row']}: {f['error']}")
    print(f"suite wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "failures": failures}, indent=1))
    return 1 if failures and not rows else 0


if __name__ == "__main__":
    sys.exit(main())
