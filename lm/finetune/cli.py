"""`lm finetune`: instruction tuning from a run or converted model into a new workdir.

    lm finetune --workdir SRC --data FILE.jsonl --output DIR [--config FILE] [--config.S.F=V ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _finetune(args: argparse.Namespace, overrides: list[str]) -> None:
    from lm.finetune.finetune import finetune

    summary = finetune(Path(args.workdir), Path(args.data), Path(args.output),
                       config_file=args.config, overrides=overrides)
    print(json.dumps(summary))


def register(commands: argparse._SubParsersAction) -> None:
    """Add `finetune` to the `lm` command."""
    parser = commands.add_parser(
        "finetune", help="instruction-tune a run's newest checkpoint on Alpaca or chat JSONL "
        "(loss on response tokens only) into a new workdir; rerunning resumes")
    parser.add_argument("--workdir", required=True, metavar="SRC",
                        help="the run (or lm convert from-hf workdir) to start from")
    parser.add_argument("--data", required=True, metavar="FILE.jsonl",
                        help="one example a line: {instruction, input, output} or {messages: [...]}")
    parser.add_argument("--output", required=True, metavar="DIR", help="the fine-tune's workdir")
    parser.add_argument("--config", help="experiment file whose get_config() overrides SRC's config "
                        "(train.steps, train.lr, data.seq_len, ...)")
    parser.set_defaults(run=_finetune)
