"""lm's train step against reference peers of the same model, timed alternately in one process.

    python benchmarks/compare_peers.py --preset small [--preset tiny] [--rounds 3] [--steps 5]
        [--batch-size B] [--seq-len L] [--json OUT] [--config.section.field=value ...]

For each preset three implementations train the same model with the same optimizer and lr
schedule on the same synthetic batches, from the same weights (lm's initial parameters,
copied into the peers), so their first and last losses agree (a check shown in the table):
- lm: the trainer's real step, built as benchmarks/train_step.py builds it;
- torch: peers/torch_llama.py, a nanoGPT-style PyTorch model (eager, f32, fused AdamW);
- bare: peers/jax_bare.py, pure functions on a dict of arrays, optax, one jitted step.
Each is warmed up (its first call compiles), then they run in rounds, `--steps` steps each
(lm, torch, bare, lm, torch, bare, ...), so drift in the machine's load hits all alike.
Each round starts with a fresh float32 matmul peak probe (lm's `peak_flops_per_device`
with an empty cache); the preset's peak is the best of its rounds, measured under the same
load as the steps. Reported per implementation: median step time over all rounds,
tokens/s, model TFLOP/s and MFU (lm's `mfu_flops_per_token`, one device) against that
peak, and the ratios of lm's tokens/s to each peer's.
Without torch installed the torch peer is left out and says so.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx

from lm.config import ConfigError, load_config
from lm.scaling.counts import mfu_flops_per_token, param_counts
from lm.train.state import build_model
from lm.train.optim import make_optimizer
from lm.train.peak import mfu, peak_flops_per_device
from lm.train.step import init_train_state, jit_train_step
from peers import jax_bare
from train_step import (aligned, preset_parser, preset_path, shape_overrides, split_overrides,
                        synthetic_batches, write_json)

try:
    import torch

    from peers import torch_llama
except ImportError as e:  # CI has no torch: compare lm with the bare-JAX peer only
    torch, torch_llama, TORCH_MISSING = None, None, str(e)
else:
    TORCH_MISSING = ""

WARMUP_STEPS = 2  # untimed calls per implementation; the first one compiles
Step = Callable[[], float]  # one train step on the next batch, waited on; returns the loss


def lm_step(cfg: ml_collections.ConfigDict, graphdef: nnx.GraphDef, params: Any,
            batches: list[dict]) -> Step:
    """The trainer's jitted step (`jit_train_step`) cycling over `batches`."""
    optimizer = make_optimizer(cfg.train, params, cfg.model)
    state = jax.jit(lambda p: init_train_state(p, optimizer))(params)
    train_step = jit_train_step(graphdef, optimizer, cfg.train)
    count = 0

    def step() -> float:
        nonlocal state, count
        state, metrics = train_step(state, batches[count % len(batches)])
        count += 1
        return float(jax.block_until_ready((state, metrics))[1]["loss"])

    return step


def bare_step(cfg: ml_collections.ConfigDict, params: Any, batches: list[dict]) -> Step:
    """The bare-JAX peer's jitted step cycling over `batches`."""
    bare_params, opt_state, train_step = jax_bare.build(cfg, params)
    count = 0

    def step() -> float:
        nonlocal bare_params, opt_state, count
        batch = batches[count % len(batches)]
        bare_params, opt_state, loss = train_step(bare_params, opt_state, batch["inputs"],
                                                  batch["targets"])
        count += 1
        return float(jax.block_until_ready((bare_params, opt_state, loss))[2])

    return step


def torch_step(cfg: ml_collections.ConfigDict, params: Any, batches: list[dict]) -> Step:
    """The PyTorch peer's step cycling over `batches` (CPU, synchronous)."""
    model, optimizer, scheduler = torch_llama.build(cfg, params)
    tensors = [(torch.tensor(np.asarray(b["inputs"]), dtype=torch.int64),
                torch.tensor(np.asarray(b["targets"]), dtype=torch.int64)) for b in batches]
    count = 0

    def step() -> float:
        nonlocal count
        inputs, targets = tensors[count % len(tensors)]
        count += 1
        return float(torch_llama.train_step(model, optimizer, scheduler, inputs, targets,
                                            cfg.train.clip_norm))

    return step


def probe_peak() -> tuple[float, str]:
    """Float32 matmul FLOP/s per device measured now (lm's probe, bypassing its cache);
    on a known accelerator, the datasheet figure."""
    with tempfile.TemporaryDirectory() as fresh:
        return peak_flops_per_device("float32", cache_dir=Path(fresh))


def time_alternately(steps: dict[str, Step], rounds: int, per_round: int,
                     ) -> tuple[dict[str, list[float]], dict[str, float], list[tuple[float, str]]]:
    """Seconds of each step, running a peak probe and then `per_round` steps of each
    implementation in turn per round; each implementation's last loss; the probes'
    (FLOP/s, source)."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    last_loss, probes = {}, []
    for _ in range(rounds):
        probes.append(probe_peak())
        for name, step in steps.items():
            for _ in range(per_round):
                start = time.perf_counter()
                last_loss[name] = step()
                times[name].append(time.perf_counter() - start)
    return times, last_loss, probes


def compare_preset(cfg: ml_collections.ConfigDict, label: str, rounds: int,
                   per_round: int) -> dict[str, Any]:
    """Build lm and its peers for `cfg`, warm each up, time them alternately; one result dict."""
    m, t = cfg.model, cfg.train
    batch_size, seq_len = t.batch_size, cfg.data.seq_len
    graphdef, params = build_model(m, t.seed)
    host_params = jax.tree.map(np.asarray, params)  # the peers' copy; lm's state is donated
    batches = synthetic_batches(8, batch_size, seq_len, m.vocab_size, t.seed)
    builders = {"lm": lambda: lm_step(cfg, graphdef, params, batches)}
    if torch_llama is not None:
        builders["torch"] = lambda: torch_step(cfg, host_params, batches)
    builders["bare"] = lambda: bare_step(cfg, host_params, batches)
    steps, first = {}, {}
    for name, build in builders.items():
        steps[name] = build()
        start = time.perf_counter()
        first[name] = {"first_loss": steps[name](), "first_step_s": time.perf_counter() - start}
        for _ in range(WARMUP_STEPS - 1):
            steps[name]()
    times, last_loss, probes = time_alternately(steps, rounds, per_round)
    peak, source = max(probes)

    tokens, flops_per_token = batch_size * seq_len, mfu_flops_per_token(m, seq_len)
    rows = []
    for name, seconds in times.items():
        step_s = statistics.median(seconds)
        rows.append({"impl": name, **first[name], "last_loss": last_loss[name],
                     "median_step_s": step_s,
                     "min_step_s": min(seconds), "max_step_s": max(seconds), "step_s": seconds,
                     "tokens_per_s": tokens / step_s,
                     "model_tflops_per_s": flops_per_token * tokens / step_s / 1e12,
                     "mfu": mfu(flops_per_token * tokens, step_s, 1, peak)})
    speed = {r["impl"]: r["tokens_per_s"] for r in rows}
    return {"preset": label, "params_total": param_counts(m).total, "batch_size": batch_size,
            "seq_len": seq_len, "model_flops_per_token": flops_per_token, "rounds": rounds,
            "steps_per_round": per_round, "peak_flops": peak, "peak_source": source,
            "peak_probes": [flops for flops, _ in probes], "rows": rows,
            "ratios": {f"lm/{peer}": speed["lm"] / speed[peer] for peer in speed if peer != "lm"}}


def format_report(report: dict[str, Any]) -> str:
    """A header (machine, versions, peak, load), one row per preset and implementation."""
    lines = [f"device: {report['device_kind']} ({report['cpu_count']} cores)   "
             f"jax {report['jax_version']}   "
             f"torch {report['torch_version']} ({report['torch_threads']} threads)",
             "peak float32, the best of one fresh probe per round: " +
             ", ".join(f"{p['preset']} {p['peak_flops'] / 1e12:.3f} TFLOP/s ({p['peak_source']})"
                       for p in report["presets"]),
             f"load average (1 min) before / after: {report['load_before']:.2f} / "
             f"{report['load_after']:.2f}",
             "MFU = mfu_flops_per_token x batch x seq / (median step s x peak), one device; "
             "ratios: lm tokens/s over the peer's"]
    header = ["preset", "impl", "params", "batch x seq", "first step s", "step s", "tokens/s",
              "TFLOP/s", "MFU", "first loss", "last loss"]
    table = [header]
    for p in report["presets"]:
        for r in p["rows"]:
            table.append([p["preset"], r["impl"], f"{p['params_total'] / 1e6:.2f}M",
                          f"{p['batch_size']} x {p['seq_len']}", f"{r['first_step_s']:.2f}",
                          f"{r['median_step_s']:.4f}", f"{r['tokens_per_s']:,.0f}",
                          f"{r['model_tflops_per_s']:.4f}", f"{100 * r['mfu']:.1f}%",
                          f"{r['first_loss']:.5f}", f"{r['last_loss']:.5f}"])
    lines += aligned(table)
    for p in report["presets"]:
        ratios = ", ".join(f"{k} = {v:.2f}x" for k, v in p["ratios"].items())
        lines.append(f"{p['preset']}: tokens/s {ratios}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    overrides, rest = split_overrides(argv)
    parser = preset_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of alternating timing")
    parser.add_argument("--steps", type=int, default=5,
                        help="timed steps per implementation per round")
    args = parser.parse_args(rest)
    if args.rounds < 1 or args.steps < 1:
        parser.error(f"need --rounds >= 1 and --steps >= 1, got {args.rounds} and {args.steps}")
    shape = shape_overrides(args)
    configs = {}
    for name in args.preset:
        try:
            configs[name] = load_config(preset_path(name), shape + overrides)
            jax_bare.check_supported(configs[name])
        except (ConfigError, ValueError) as e:
            print(f"error: preset {name}: {e}", file=sys.stderr)
            return 2
    if TORCH_MISSING:
        print(f"[peers] torch is not importable ({TORCH_MISSING}); the torch peer is left out",
              file=sys.stderr)

    load_before = os.getloadavg()[0]
    report: dict[str, Any] = {
        "device_kind": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "torch_version": torch.__version__ if torch is not None else "absent",
        "load_before": load_before, "presets": []}
    for name, cfg in configs.items():
        print(f"[peers] {name}: {cfg.train.batch_size} x {cfg.data.seq_len}, {WARMUP_STEPS} warmup "
              f"+ {args.rounds} rounds x {args.steps} steps each", file=sys.stderr, flush=True)
        report["presets"].append(compare_preset(cfg, name, args.rounds, args.steps))
    report["load_after"] = os.getloadavg()[0]
    report["torch_threads"] = torch.get_num_threads() if torch is not None else 0  # as build set
    print(format_report(report))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
