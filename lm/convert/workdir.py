"""A run's workdir as the converters and `lm eval` read and write it: its config, its
tokenizer, and parameters restored without first initialising a random model.

`write_workdir` creates the checkpoint `lm convert from-hf` leaves (step 0, a
fresh optimizer state, the data iterator at its start); `restore_params`
reads the newest checkpoint's parameters into abstract shapes, so memory holds
the train state once (parameters and optimizer moments), never a random
model beside it.
"""

from __future__ import annotations

import json
import pprint
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from lm.config import from_json_dict, to_json_dict
from lm.files import atomic_write, write_json_atomic
from lm.model.decoder import Decoder
from lm.train.checkpoint import Checkpointer
from lm.train.optim import make_optimizer
from lm.train.step import init_train_state

# The data state of a run that has consumed no batches (lm.data.loader's documented format).
FRESH_DATA_STATE = {"iterator": {"next_index": 0}}


def read_config(workdir: Path) -> ml_collections.ConfigDict:
    """The validated config.json of the run in `workdir`."""
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; is {workdir} a run's workdir?")
    return from_json_dict(json.loads(path.read_text()))


def abstract_model(m: ml_collections.ConfigDict) -> tuple[nnx.GraphDef, dict[str, Any]]:
    """The graph definition and parameter shapes/dtypes of model config `m` (nothing allocated)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(m, rngs=nnx.Rngs(0))))
    return graphdef, state.to_pure_dict()


def _abstract_state(cfg: ml_collections.ConfigDict, shapes: dict[str, Any]) -> Any:
    optimizer = make_optimizer(cfg.train, shapes)
    zeros = lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return jax.eval_shape(lambda: init_train_state(zeros(), optimizer))


def restore_params(workdir: Path, cfg: ml_collections.ConfigDict) -> tuple[nnx.GraphDef, dict[str, Any], int]:
    """The graph definition, newest checkpoint's parameters and its step of the run in `workdir`."""
    graphdef, shapes = abstract_model(cfg.model)
    checkpointer = Checkpointer(Path(workdir) / "checkpoints", keep_last=cfg.train.keep_last)
    try:
        step = checkpointer.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {Path(workdir) / 'checkpoints'}; train first")
        state, _, _ = checkpointer.restore(step, _abstract_state(cfg, shapes))
    finally:
        checkpointer.close()
    return graphdef, state["params"], step


def write_workdir(cfg: ml_collections.ConfigDict, params: dict[str, Any], workdir: Path,
                  meta: dict[str, Any]) -> None:
    """Write a step-0 checkpoint of `params` (fresh optimizer state, data at its start), then
    config.json and experiment.py, into `workdir`. The tokenizer is placed by the caller."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = init_train_state(params, make_optimizer(cfg.train, params))
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
