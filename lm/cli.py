"""The `lm` command: train, sample, quickstart, fit (and sweep).

    lm train --config experiments/configs/tiny.py --config.train.steps=200 --workdir runs/x
    lm train --config experiments/configs/llama_7b.py --compile-only --devices 256 --config.mesh.fsdp=-1
    lm train --config experiments/configs/llama_7b.py --compile-only --topology v5p:4x4x4
    lm sample --workdir runs/x --prompt "def " --max-new-tokens 64
    lm finetune --workdir runs/x --data sft.jsonl --output runs/x-sft [--config.train.steps=300]
    lm sample --workdir runs/x-sft --chat --prompt "Repeat the last word of: a b c"
    lm quickstart [--workdir runs/quickstart] [--config.train.steps=...]
    lm mup coord-check --config FILE --widths 64,128,256,512 --steps 5 --out DIR
    lm fit --csv FILE --n-col COL --c-col COL --loss-col COL --method approach3
    lm sweep plan|run|status|slurm --config experiments/sweeps/NAME.py --workdir DIR
    lm sweep study --config experiments/studies/NAME.py --workdir DIR
    lm sweep eval --workdir DIR --task indentation brackets [--limit N] [--plot PNG]

Bad input exits non-zero with one line naming the field or file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from lm.config import ConfigError, apply_overrides, from_json_dict, load_config, validate


def _split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    overrides = [a for a in argv if a.startswith("--config.")]
    return [a for a in argv if not a.startswith("--config.")], overrides


def _train(args: argparse.Namespace, overrides: list[str]) -> None:
    saved = Path(args.workdir or "") / "config.json"
    if args.config is None and args.workdir and saved.exists():  # resume: the run's own config
        cfg = validate(apply_overrides(from_json_dict(json.loads(saved.read_text())), overrides))
    else:
        cfg = load_config(args.config, overrides)
    topology = getattr(args, "topology", None)
    if topology:
        if getattr(args, "devices", None):
            raise ConfigError("--topology and --devices exclude each other: --topology compiles "
                              "for a TPU slice's chips, --devices for simulated CPU devices")
        if not getattr(args, "compile_only", False):
            raise ConfigError("--topology compiles for a TPU slice without running; it needs "
                              "--compile-only")
        from lm.train.tpu_compile import compile_for_topology, prepare_environment
        prepare_environment()  # before jax starts
        report = compile_for_topology(cfg, topology)
        print(report.table())
        print(json.dumps(report.as_dict()))
        return
    if getattr(args, "devices", None):
        simulate_cpu_devices(args.devices)  # before jax starts
    if getattr(args, "compile_only", False):
        from lm.train.memory import compile_memory_report
        report = compile_memory_report(cfg)
        print(report.table())
        print(json.dumps(report.as_dict()))
        return
    if not args.workdir:
        raise ConfigError("lm train needs --workdir (a new or existing run directory)")
    from lm.parallel.distributed import initialize
    from lm.train.loop import train

    initialize(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
               getattr(args, "process_id", None))
    summary = train(cfg, Path(args.workdir))
    print(json.dumps(summary))


def simulate_cpu_devices(count: int) -> None:
    """Make jax start with `count` CPU devices (to compile for a mesh this host lacks)."""
    if "jax" in sys.modules:
        raise ConfigError("--devices must be applied before jax is imported")
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    os.environ["JAX_PLATFORMS"] = "cpu"


def _sample(args: argparse.Namespace, overrides: list[str]) -> None:
    import jax
    import jax.numpy as jnp

    from lm.data.build import run_tokenizer_path
    from lm.data.tokenizer import Tokenizer
    from lm.sample import generate
    from lm.train.state import read_run_config, restore_params

    workdir = Path(args.workdir)
    cfg = read_run_config(workdir)
    s = cfg.sample
    template = None
    if getattr(args, "chat", False):  # the prompt is a user message, rendered as in fine-tuning
        from lm.finetune.chat import load_template, render, response_text
        template = load_template(workdir)
    graphdef, params, step = restore_params(workdir, cfg, command="lm sample")
    tokenizer = Tokenizer.load(run_tokenizer_path(cfg.data, workdir))
    prompt = [tokenizer.bos_id] + tokenizer.encode(args.prompt)
    if template is not None:
        prompt = render([{"role": "user", "content": args.prompt}], template, tokenizer,
                        generation_prompt=True)[0].tolist()
    max_new = args.max_new_tokens or s.max_new_tokens
    if len(prompt) + max_new > cfg.model.max_seq_len:
        raise ConfigError(f"prompt ({len(prompt)} tokens) plus --max-new-tokens {max_new} exceeds "
                          f"model.max_seq_len={cfg.model.max_seq_len}")
    prompt_BxP = jnp.asarray([prompt] * args.num_samples, jnp.int32)
    temperature = s.temperature if args.temperature is None else args.temperature
    tokens = generate(graphdef, params, prompt_BxP, jax.random.key(args.seed),
                      max_new_tokens=max_new, temperature=temperature,
                      top_k=s.top_k if args.top_k is None else args.top_k,
                      top_p=s.top_p if args.top_p is None else args.top_p)
    for row in jax.device_get(tokens).tolist():
        if tokenizer.eos_id in row:
            row = row[:row.index(tokenizer.eos_id)]
        text = tokenizer.decode(row)
        text = f"{args.prompt}{text}" if template is None else response_text(text, template)
        print(f"--- sample (step {step}) ---\n{text}")


def _quickstart(args: argparse.Namespace, overrides: list[str]) -> None:
    args.config = None
    _train(args, overrides)
    print(f"\nloss plot: {Path(args.workdir) / 'loss.png'}")
    args.prompt, args.max_new_tokens, args.num_samples = "def ", 96, 1
    args.temperature = args.top_k = args.top_p = None
    args.seed = 0
    _sample(args, [])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train or resume a run (config + workdir)")
    train.add_argument("--config", help="experiment file with get_config(); defaults if omitted")
    train.add_argument("--workdir", help="run directory; rerunning resumes")
    train.add_argument("--compile-only", action="store_true",
                       help="compile the train step for the mesh and print per-device memory; "
                            "allocates nothing, needs no data")
    train.add_argument("--devices", type=int,
                       help="simulate this many CPU devices (with --compile-only: size a pod)")
    train.add_argument("--topology",
                       help="with --compile-only: compile with the TPU compiler for this TPU "
                            "slice (v5p:4x4x4, v5e:16x16, ...) and print per-chip HBM, "
                            "collectives and FLOPs; needs pip install -e '.[tpu]'")
    train.add_argument("--coordinator", help="multi-process: host:port of process 0")
    train.add_argument("--num-processes", type=int, help="multi-process: number of processes")
    train.add_argument("--process-id", type=int, help="multi-process: this process's index")
    train.set_defaults(run=_train)

    sample = commands.add_parser("sample", help="generate text from a run's newest checkpoint")
    sample.add_argument("--workdir", required=True)
    sample.add_argument("--prompt", default="")
    sample.add_argument("--max-new-tokens", type=int, default=0)
    sample.add_argument("--num-samples", type=int, default=1)
    sample.add_argument("--temperature", type=float)
    sample.add_argument("--top-k", type=int)
    sample.add_argument("--top-p", type=float)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--chat", action="store_true", help="the prompt is a user message: apply "
                        "the workdir's chat template (lm finetune) and print the response")
    sample.set_defaults(run=_sample)

    quick = commands.add_parser("quickstart", help="train the default model on the Python "
                                "standard library's source (offline, CPU), then sample")
    quick.add_argument("--workdir", default="runs/quickstart")
    quick.set_defaults(run=_quickstart)

    from lm.scaling.cli import register as register_fit
    from lm.sweep.cli import register as register_sweep
    register_fit(commands)
    register_sweep(commands)
    from lm.convert.cli import register as register_convert
    from lm.evaluate_cli import register as register_eval
    register_convert(commands)
    register_eval(commands)
    from lm.data.prepare.cli import register as register_data
    register_data(commands)
    from lm.train.mup_cli import register as register_mup
    register_mup(commands)
    from lm.finetune.cli import register as register_finetune
    register_finetune(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = _split_overrides(argv)
    args = build_parser().parse_args(rest)
    if overrides and args.command == "sample":
        print("lm sample: --config.* overrides are not accepted; the run's config is used",
              file=sys.stderr)
        return 2
    from lm.errors import PREEMPTED_EXIT
    from lm.train.preemption import Preempted
    try:
        args.run(args, overrides)
    except Preempted as err:  # SIGTERM / SIGINT: a checkpoint was saved; rerunning resumes
        print(f"lm {args.command}: {err}", file=sys.stderr)
        return PREEMPTED_EXIT
    except (ConfigError, FileNotFoundError) as err:
        print(f"lm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a named, one-line message for data, checkpoint and divergence errors
        from lm.data.read import DataError
        from lm.train.checkpoint import CheckpointError
        from lm.train.loop import TrainingDiverged
        if isinstance(err, (DataError, CheckpointError, TrainingDiverged)):
            print(f"lm {args.command}: error: {err}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
