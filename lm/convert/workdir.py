"""Writing a run's workdir from converted parameters: `write_workdir` creates the
checkpoint `lm convert from-hf` leaves (step 0, a fresh optimizer state, the data
iterator at its start), config.json and experiment.py. Reading one back is
lm.train.state's (`read_run_config`, `restore_params`)."""

from __future__ import annotations

import json
import pprint
from pathlib import Path
from typing import Any

import ml_collections

from lm.config import to_json_dict
from lm.files import atomic_write, write_json_atomic
from lm.train.checkpoint import Checkpointer
from lm.train.optim import make_optimizer
from lm.train.step import init_train_state

# The data state of a run that has consumed no batches (lm.data.loader's documented format).
FRESH_DATA_STATE = {"iterator": {"next_index": 0}}


def write_workdir(cfg: ml_collections.ConfigDict, params: dict[str, Any], workdir: Path,
                  meta: dict[str, Any]) -> None:
    """Write a step-0 checkpoint of `params` (fresh optimizer state, data at its start), then
    config.json and experiment.py, into `workdir`. The tokenizer is placed by the caller."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = init_train_state(params, make_optimizer(cfg.train, params, cfg.model))
    checkpointer = Checkpointer(workdir / "checkpoints", keep_last=cfg.train.keep_last, async_save=False)
    try:
        checkpointer.save(0, state, FRESH_DATA_STATE, meta)
    finally:
        checkpointer.close()
    write_json_atomic(to_json_dict(cfg), workdir / "config.json")
    with atomic_write(workdir / "experiment.py") as f:
        f.write(_experiment_file(cfg, meta).encode("utf-8"))


def _experiment_file(cfg: ml_collections.ConfigDict, meta: dict[str, Any]) -> str:
    body = pprint.pformat(to_json_dict(cfg), indent=1, width=100, sort_dicts=True)
    return (f'"""The config of the lm run in this directory ({json.dumps(meta)}).\n\n'
            "Continue training with `lm train --config <this file> --workdir <this directory>`;\n"
            'model and data fields must stay as they are, train and sample fields may change.\n"""\n\n\n'
            f"def get_config():\n    return {body}\n")
