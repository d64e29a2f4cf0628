"""`lm convert from-hf | to-hf`: Hugging Face LLaMA checkpoints in and out of lm workdirs.

    lm convert from-hf SRC_DIR DST_WORKDIR [--config FILE] [--config.data.sources="['x.jsonl']" ...]
    lm convert to-hf WORKDIR DST_DIR [--max-shard-bytes N]
"""

from __future__ import annotations

import argparse
import json

from lm.config import ConfigError

DEFAULT_MAX_SHARD_BYTES = 5 * 2**30  # transformers' own default shard size is 5 GB


def _from_hf(args: argparse.Namespace, overrides: list[str]) -> None:
    from lm.convert.from_hf import convert_from_hf

    print(json.dumps(convert_from_hf(args.src, args.dst, config_file=args.config, overrides=overrides)))


def _to_hf(args: argparse.Namespace, overrides: list[str]) -> None:
    from lm.convert.to_hf import convert_to_hf

    if overrides:
        raise ConfigError("lm convert to-hf takes no --config.* overrides; the run's config is used")
    if args.max_shard_bytes <= 0:
        raise ConfigError(f"--max-shard-bytes must be positive, got {args.max_shard_bytes}")
    print(json.dumps(convert_to_hf(args.workdir, args.dst, max_shard_bytes=args.max_shard_bytes)))


def register(commands: argparse._SubParsersAction) -> None:
    """Add `convert from-hf` and `convert to-hf` to the `lm` command."""
    convert = commands.add_parser("convert", help="Hugging Face LLaMA checkpoints in and out")
    which = convert.add_subparsers(dest="direction", required=True)
    from_hf = which.add_parser("from-hf", help="an HF LLaMA directory -> a new lm workdir "
                               "(--config.* overrides set its data and training config)")
    from_hf.add_argument("src", metavar="SRC_DIR")
    from_hf.add_argument("dst", metavar="DST_WORKDIR")
    from_hf.add_argument("--config", help="experiment file for the non-model fields; the model "
                         "fields come from SRC_DIR/config.json")
    from_hf.set_defaults(run=_from_hf)
    to_hf = which.add_parser("to-hf", help="a workdir's newest checkpoint -> an HF LLaMA directory")
    to_hf.add_argument("workdir", metavar="WORKDIR")
    to_hf.add_argument("dst", metavar="DST_DIR")
    to_hf.add_argument("--max-shard-bytes", type=int, default=DEFAULT_MAX_SHARD_BYTES,
                       help="write several safetensors shards and an index above this size")
    to_hf.set_defaults(run=_to_hf)
