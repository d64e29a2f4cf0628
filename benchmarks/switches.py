"""Each speed/memory switch of the train step, off and on, measured alternately in one process.

    python benchmarks/switches.py --preset small [--group attention --group remat ...]
        [--rounds 3] [--steps 2] [--batch-size B] [--seq-len L] [--json OUT]
        [--config.section.field=value ...]

Groups (the first variant of each is its baseline; every variant is one config override,
so what is measured is exactly what `lm train` runs with that override):

    attention    model.attention = einsum | blockwise | xla
    remat        model.remat = none | dots | full
    loss_chunk   train.loss_chunk = 0 | seq_len / 4
    dtype        model.compute_dtype = float32 | bfloat16 (f32 master weights either way)
    donation     train.donate_state = true | false
    checkpoint   train.async_checkpoint: no save | a synchronous save | an asynchronous save

For a step group every variant's step is compiled (timed), then the variants run in rounds,
`--steps` steps each per round (A B C A B C ...), so drift in the machine's load falls on all.
Reported: median step s and its ratio to the baseline's (below 1 is faster), compile s,
XLA's buffer assignment of the step (arguments + temporaries + outputs not aliased to
donated arguments: per-variant peak memory on any device), its temporaries and the bytes
of outputs written into donated arguments (JSON: `alias_bytes`), and the loss
after the last step (the same-math switches agree with the baseline; bfloat16 does not).

The checkpoint group runs windows of `--steps` + 2 steps of the baseline config; a window
starts with nothing, a synchronous `Checkpointer.save` or an asynchronous one (into a
temporary directory, kept to one checkpoint) and ends when its steps are done. Reported:
how long the save call blocked the loop, the window's extra wall time over the no-save
window of the same round (what the save cost the steps, including background writing
that competes for the cores), and when the write had finished, from the save call.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import ml_collections

from lm.config import ConfigError, load_config
from lm.train.checkpoint import Checkpointer
from train_step import (aligned, assigned_bytes, compile_train_step, preset_parser, preset_path,
                        shape_overrides, split_overrides, synthetic_batches, write_json)

Variant = tuple[str, list[str]]  # (label, config overrides)


def step_groups(cfg: ml_collections.ConfigDict) -> dict[str, list[Variant]]:
    """The step switches for `cfg`'s shape: group -> variants, baseline first."""
    chunk = max(cfg.data.seq_len // 4, 1)
    return {
        "attention": [(f"attention={k}", [f"--config.model.attention={k}"])
                      for k in ("einsum", "blockwise", "xla")],
        "remat": [(f"remat={k}", [f"--config.model.remat={k}"]) for k in ("none", "dots", "full")],
        "loss_chunk": [("loss_chunk=0", ["--config.train.loss_chunk=0"]),
                       (f"loss_chunk={chunk}", [f"--config.train.loss_chunk={chunk}"])],
        "dtype": [(f"compute_dtype={k}", [f"--config.model.compute_dtype={k}"])
                  for k in ("float32", "bfloat16")],
        "donation": [(f"donate_state={k}", [f"--config.train.donate_state={k}"])
                     for k in ("true", "false")],
    }


GROUPS = ("attention", "remat", "loss_chunk", "dtype", "donation", "checkpoint")


def run_step(compiled: Any, state: Any, batch: dict) -> tuple[Any, float]:
    """One step, waited on; the new state and the loss."""
    state, metrics = compiled(state, batch)
    return state, float(jax.block_until_ready((state, metrics))[1]["loss"])


def measure_steps(configs: dict[str, ml_collections.ConfigDict], rounds: int, steps: int,
                  ) -> list[dict[str, Any]]:
    """Compile every variant, then time them alternately; one row per variant."""
    built = {}
    for label, cfg in configs.items():
        batches = synthetic_batches(4, cfg.train.batch_size, cfg.data.seq_len,
                                    cfg.model.vocab_size, cfg.train.seed)
        state, compiled, compile_s = compile_train_step(cfg, batches[0])
        analysis = compiled.memory_analysis()
        state, _ = run_step(compiled, state, batches[0])  # first run: allocations, caches
        built[label] = {"compiled": compiled, "state": state, "batches": batches, "count": 1,
                        "compile_s": compile_s, "assigned_bytes": assigned_bytes(compiled),
                        "temp_bytes": int(analysis.temp_size_in_bytes),
                        "alias_bytes": int(analysis.alias_size_in_bytes), "times": []}
        print(f"[switches] {label}: compiled in {compile_s:.1f} s", file=sys.stderr, flush=True)
    for _ in range(rounds):
        for b in built.values():
            for _ in range(steps):
                batch = b["batches"][b["count"] % len(b["batches"])]
                start = time.perf_counter()
                b["state"], b["loss"] = run_step(b["compiled"], b["state"], batch)
                b["times"].append(time.perf_counter() - start)
                b["count"] += 1
    base = statistics.median(next(iter(built.values()))["times"])
    rows = []
    for label, b in built.items():
        step_s = statistics.median(b["times"])
        rows.append({"variant": label, "median_step_s": step_s, "step_s": b["times"],
                     "vs_baseline": step_s / base, "compile_s": b["compile_s"],
                     "assigned_bytes": b["assigned_bytes"], "temp_bytes": b["temp_bytes"],
                     "alias_bytes": b["alias_bytes"],
                     "final_loss": b["loss"]})
    return rows


def measure_checkpoint(cfg: ml_collections.ConfigDict, rounds: int, steps: int,
                       directory: Path) -> list[dict[str, Any]]:
    """Windows of steps starting with no save, a synchronous save or an asynchronous one."""
    batches = synthetic_batches(4, cfg.train.batch_size, cfg.data.seq_len, cfg.model.vocab_size,
                                cfg.train.seed)
    state, compiled, _ = compile_train_step(cfg, batches[0])
    state, _ = run_step(compiled, state, batches[0])
    savers = {"sync save": Checkpointer(directory / "sync", keep_last=1, async_save=False),
              "async save": Checkpointer(directory / "async", keep_last=1, async_save=True)}
    window = steps + 2
    results: dict[str, dict[str, list[float]]] = {
        mode: {"window_s": [], "blocked_s": [], "written_s": []}
        for mode in ("no save", *savers)}
    count = 0
    for _ in range(rounds):
        for mode, result in results.items():
            saver = savers.get(mode)
            start = time.perf_counter()
            if saver is not None:
                saver.save(count, state, {"iterator": {"step": count}}, {"benchmark": mode})
                result["blocked_s"].append(time.perf_counter() - start)
            for _ in range(window):
                state, _ = run_step(compiled, state, batches[count % len(batches)])
                count += 1
            result["window_s"].append(time.perf_counter() - start)
            if saver is not None:
                saver.wait()
                result["written_s"].append(time.perf_counter() - start)
    for saver in savers.values():
        saver.close()
    base = results["no save"]["window_s"]
    median = lambda xs: statistics.median(xs) if xs else 0.0  # no save: nothing blocked
    rows = []
    for mode, r in results.items():
        extra = [w - b for w, b in zip(r["window_s"], base)]
        rows.append({"variant": mode, "window_steps": window,
                     "median_window_s": median(r["window_s"]), "median_extra_s": median(extra),
                     "median_blocked_s": median(r["blocked_s"]),
                     "median_written_s": median(r["written_s"]),
                     "window_s": r["window_s"]})
    return rows


def format_steps(groups: dict[str, Sequence[dict[str, Any]]]) -> list[str]:
    """One table of every step group's variants."""
    header = ["group", "variant", "compile s", "step s", "vs baseline", "assigned MiB",
              "temporaries MiB", "final loss"]
    table = [header] + [[group, r["variant"], f"{r['compile_s']:.1f}", f"{r['median_step_s']:.4f}",
                         f"{r['vs_baseline']:.2f}x", f"{r['assigned_bytes'] / 2**20:,.1f}",
                         f"{r['temp_bytes'] / 2**20:,.1f}", f"{r['final_loss']:.5f}"]
                        for group, rows in groups.items() for r in rows]
    return aligned(table)


def format_checkpoint(rows: Sequence[dict[str, Any]]) -> list[str]:
    header = ["checkpoint", "window steps", "window s", "extra s", "save blocked s",
              "written after s"]
    table = [header] + [[r["variant"], str(r["window_steps"]), f"{r['median_window_s']:.3f}",
                         f"{r['median_extra_s']:+.3f}", f"{r['median_blocked_s']:.3f}",
                         f"{r['median_written_s']:.3f}"] for r in rows]
    return aligned(table)


def main(argv: Sequence[str] | None = None) -> int:
    overrides, rest = split_overrides(argv)
    parser = preset_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--group", action="append", choices=GROUPS,
                        help="measure only these groups (repeat; default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of alternating timing")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    args = parser.parse_args(rest)
    if args.rounds < 1 or args.steps < 1:
        parser.error(f"need --rounds >= 1 and --steps >= 1, got {args.rounds} and {args.steps}")
    if len(args.preset) != 1:
        parser.error("give one --preset")
    groups = args.group or list(GROUPS)
    shape = shape_overrides(args) + overrides
    path = preset_path(args.preset[0])
    try:
        base = load_config(path, shape)
        variants = {g: {label: load_config(path, shape + extra) for label, extra in v}
                    for g, v in step_groups(base).items() if g in groups}
    except ConfigError as e:
        print(f"error: preset {args.preset[0]}: {e}", file=sys.stderr)
        return 2

    report: dict[str, Any] = {"preset": args.preset[0], "device_kind": jax.devices()[0].device_kind,
                              "jax_version": jax.__version__, "batch_size": base.train.batch_size,
                              "seq_len": base.data.seq_len, "rounds": args.rounds,
                              "steps": args.steps, "groups": {}}
    lines = [f"{args.preset[0]}: {base.train.batch_size} x {base.data.seq_len} on "
             f"{report['device_kind']}, jax {jax.__version__}; {args.rounds} rounds x "
             f"{args.steps} steps per variant, alternating"]
    for group, configs in variants.items():
        report["groups"][group] = measure_steps(configs, args.rounds, args.steps)
    if report["groups"]:
        lines += format_steps(report["groups"])
    if "checkpoint" in groups:
        with tempfile.TemporaryDirectory(prefix="lm-switches-") as tmp:
            rows = measure_checkpoint(base, args.rounds, args.steps, Path(tmp))
        report["groups"]["checkpoint"] = rows
        lines += format_checkpoint(rows)
    print("\n".join(lines))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
