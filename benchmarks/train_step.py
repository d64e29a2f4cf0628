"""Train-step benchmark: compile time, step time, tokens/s, MFU and peak memory of the real train step.

    python benchmarks/train_step.py --preset tiny --preset small [--steps 10] [--warmup 2]
        [--batch-size B] [--seq-len L] [--json OUT] [--config.section.field=value ...]

Each preset (experiments/configs/<name>.py) is built exactly as `lm.train.loop.train`
builds it: `build_model`, `make_optimizer`, `init_train_state`, and
`lm.train.step.jit_train_step` (`compile_train_step`). Batches are
synthetic random tokens shaped like the loader's (int32 [batch, seq_len], one segment per
row), made and put on the device before timing, so the numbers are the step alone, not the
input pipeline.
`time_train_step(cfg, steps, warmup)` is importable by other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from lm.config import ConfigError, load_config
from lm.scaling.counts import mfu_flops_per_token, param_counts, six_n_flops_per_token
from lm.train.state import build_model
from lm.train.optim import make_optimizer
from lm.train.peak import mfu, peak_flops_per_device
from lm.train.step import init_train_state, jit_train_step

REPO = Path(__file__).resolve().parents[1]


def preset_path(name: str) -> Path:
    """experiments/configs/<name>.py of this repository (a path to a .py file is kept)."""
    return Path(name) if name.endswith(".py") else REPO / "experiments" / "configs" / f"{name}.py"


def synthetic_batches(count: int, batch_size: int, seq_len: int, vocab_size: int,
                      seed: int = 0) -> list[dict[str, jax.Array]]:
    """`count` device batches laid out as the loader's: targets are inputs shifted by one
    over a random token stream, positions 0..L-1 and segment id 1 on every row."""
    rng = np.random.default_rng(seed)
    positions = np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch_size, seq_len))
    segment_ids = np.ones((batch_size, seq_len), np.int32)
    batches = []
    for _ in range(count):
        stream = rng.integers(0, vocab_size, (batch_size, seq_len + 1), dtype=np.int32)
        batches.append(jax.device_put({"inputs": stream[:, :-1], "targets": stream[:, 1:],
                                       "positions": positions, "segment_ids": segment_ids}))
    return batches


def time_train_step(cfg: ml_collections.ConfigDict, steps: int = 10, warmup: int = 2, *,
                    label: str = "", peak: tuple[float, str] | None = None) -> dict[str, Any]:
    """Compile and time the trainer's jitted train step on synthetic batches of `cfg`'s shape.

    `compile_s` is trace + lower + XLA compile (what the first call pays); then `warmup`
    untimed steps, then `steps` timed steps, each waited on with block_until_ready.
    Throughput and MFU use the median step time. `peak` is (FLOP/s per device, source);
    by default `peak_flops_per_device(model.compute_dtype, refresh=True)` (probed again on
    CPU, keeping the best figure this machine has shown).
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    m, t = cfg.model, cfg.train
    batch_size, seq_len = t.batch_size, cfg.data.seq_len

    batches = synthetic_batches(min(warmup + steps, 8), batch_size, seq_len, m.vocab_size, t.seed)
    state, compiled, compile_s = compile_train_step(cfg, batches[0])

    times, metrics = [], None
    for i in range(warmup + steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batches[i % len(batches)])
        jax.block_until_ready((state, metrics))
        if i >= warmup:
            times.append(time.perf_counter() - start)

    step_s = statistics.median(times)
    memory, memory_source = peak_memory(compiled)
    devices = jax.device_count()
    peak_flops, peak_source = (peak if peak is not None else
                               peak_flops_per_device(m.compute_dtype, refresh=True))
    counts = param_counts(m)
    tokens = batch_size * seq_len
    flops_per_token = mfu_flops_per_token(m, seq_len)
    six_n = six_n_flops_per_token(m, non_embedding=True)
    return {
        "preset": label,
        "device_kind": jax.devices()[0].device_kind,
        "device_count": devices,
        "jax_version": jax.__version__,
        "compute_dtype": m.compute_dtype,
        "params_total": counts.total,
        "params_non_embedding": counts.non_embedding,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "grad_accum": t.grad_accum,
        "steps": steps,
        "warmup": warmup,
        "compile_s": compile_s,
        "median_step_s": step_s,
        "min_step_s": min(times),
        "max_step_s": max(times),
        "tokens_per_s": tokens / step_s,
        "model_flops_per_token": flops_per_token,
        "six_n_flops_per_token": six_n,
        "model_tflops_per_s": flops_per_token * tokens / step_s / 1e12,
        "mfu": mfu(flops_per_token * tokens, step_s, devices, peak_flops),
        "mfu_6n": mfu(six_n * tokens, step_s, devices, peak_flops),
        "peak_flops_per_device": peak_flops,
        "peak_source": peak_source,
        "final_loss": float(metrics["loss"]),
        "peak_memory_bytes": memory,
        "peak_memory_source": memory_source,
    }


def compile_train_step(cfg: ml_collections.ConfigDict, batch: dict[str, jax.Array],
                       ) -> tuple[dict[str, Any], Any, float]:
    """`cfg`'s initial train state and its step jitted as the trainer jits it
    (`jit_train_step`), compiled for `batch`'s shapes; and the compile seconds
    (trace + lower + XLA compile: what the first call pays)."""
    m, t = cfg.model, cfg.train
    graphdef, params = build_model(m, t.seed)
    optimizer = make_optimizer(t, params, m)
    state = jax.jit(lambda p: init_train_state(p, optimizer))(params)
    del params  # the state holds its own copy
    train_step = jit_train_step(graphdef, optimizer, t)
    start = time.perf_counter()
    compiled = train_step.lower(state, batch).compile()
    return state, compiled, time.perf_counter() - start


def assigned_bytes(compiled: Any) -> int:
    """XLA's buffer assignment of a compiled step: arguments + temporaries + the outputs not
    aliased to (donated) arguments."""
    a = compiled.memory_analysis()
    return int(a.argument_size_in_bytes + a.temp_size_in_bytes + a.output_size_in_bytes
               - a.alias_size_in_bytes)


def peak_memory(compiled: Any) -> tuple[int, str]:
    """Peak bytes per device: the allocator's high-water mark where the device reports one
    (GPU, TPU), else XLA's buffer assignment of the compiled step (arguments + temporaries
    + outputs not aliased to inputs)."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "allocator peak"
    return assigned_bytes(compiled), "XLA buffer assignment"


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A header (devices, jax, peak per dtype and its source) and one aligned row per preset."""
    first = rows[0]
    lines = [f"device: {first['device_kind']} x {first['device_count']}   jax {first['jax_version']}"]
    for dtype in dict.fromkeys(r["compute_dtype"] for r in rows):
        r = next(r for r in rows if r["compute_dtype"] == dtype)
        lines.append(f"peak {dtype}: {r['peak_flops_per_device'] / 1e12:.3f} TFLOP/s per device "
                     f"({r['peak_source']})")
    lines.append("MFU = model FLOPs per step / (median step s x devices x peak); "
                 "MFU(model): mfu_flops_per_token (causal half, no embedding lookup); "
                 "MFU(6N): 6 x non-embedding params")
    lines.append(f"peak memory per device: {first['peak_memory_source']}")
    header = ["preset", "params total/non-emb", "batch x seq", "compile s", "step s",
              "tokens/s", "model TFLOP/s", "MFU(model)", "MFU(6N)", "peak GiB"]
    table = [header] + [[
        r["preset"],
        f"{_millions(r['params_total'])} / {_millions(r['params_non_embedding'])}",
        f"{r['batch_size']} x {r['seq_len']}",
        f"{r['compile_s']:.2f}",
        f"{r['median_step_s']:.4f}",
        f"{r['tokens_per_s']:,.0f}",
        f"{r['model_tflops_per_s']:.4f}",
        f"{100 * r['mfu']:.1f}%",
        f"{100 * r['mfu_6n']:.1f}%",
        f"{r['peak_memory_bytes'] / 2**30:.2f}",
    ] for r in rows]
    return "\n".join(lines + aligned(table))


def aligned(table: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines, each column left-aligned to its widest cell."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]


def write_json(path: Path | None, result: Any) -> None:
    """Write a benchmark's result as indented JSON to `path` (parents created); None: nothing."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))


def split_overrides(argv: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(`--config.section.field=value` overrides, the other arguments) of a command line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if a.startswith("--config.")]
    return overrides, [a for a in argv if not a.startswith("--config.")]


def preset_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options the train-step benchmarks share: --preset (repeatable),
    --batch-size, --seq-len and --json; `shape_overrides` turns the shape into overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", action="append", required=True,
                        help="experiments/configs/<name>.py (repeat for several)")
    parser.add_argument("--batch-size", type=int, help="override train.batch_size")
    parser.add_argument("--seq-len", type=int, help="override data.seq_len")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    return parser


def shape_overrides(args: argparse.Namespace) -> list[str]:
    return ([f"--config.train.batch_size={args.batch_size}"] if args.batch_size else []) + \
           ([f"--config.data.seq_len={args.seq_len}"] if args.seq_len else [])


def main(argv: Sequence[str] | None = None) -> int:
    overrides, rest = split_overrides(argv)
    parser = preset_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    args = parser.parse_args(rest)
    shape = shape_overrides(args)

    rows = []
    for name in args.preset:
        try:
            cfg = load_config(preset_path(name), shape + overrides)
        except ConfigError as e:
            print(f"error: preset {name}: {e}", file=sys.stderr)
            return 2
        print(f"[bench] {name}: {cfg.train.batch_size} x {cfg.data.seq_len}, "
              f"{args.warmup} warmup + {args.steps} timed steps", file=sys.stderr, flush=True)
        rows.append(time_train_step(cfg, args.steps, args.warmup, label=name))
    print(format_table(rows))
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
