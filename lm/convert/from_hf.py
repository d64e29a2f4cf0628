"""Import a Hugging Face LLaMA checkpoint directory into an lm workdir.

    lm convert from-hf SRC_DIR DST_WORKDIR [--config FILE] [--config.S.F=V ...]

SRC_DIR is what `LlamaForCausalLM.save_pretrained` writes: config.json,
model.safetensors or sharded safetensors with model.safetensors.index.json,
and tokenizer.model (sentencepiece) when the model has one. DST_WORKDIR gets

    config.json        the run's config: model fields from SRC/config.json; data,
                       train and sample from the defaults, --config FILE and the
                       overrides (give the data for continued pretraining here)
    experiment.py      the same config as an experiment file, so that
                       `lm train --config DST/experiment.py --workdir DST` continues
    tokenizer/         tokenizer.model copied from SRC (lm train and lm sample use it)
    checkpoints/0      the converted parameters, a fresh optimizer state, and the
                       data iterator at its start

The checkpoint fixes the architecture: a --config.model override of one of
`ARCHITECTURE_FIELDS` that disagrees with SRC is an error, while compute
dtype, remat and param dtype may be chosen. Tensors are read one at a time
from the memory-mapped shards and copied into their stacked lm parameter,
so host memory holds the lm parameters plus one tensor, never two models
(writing the checkpoint adds the optimizer's two moment buffers, which
`lm train` restores with the parameters).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from lm.config import ConfigError, apply_overrides, call_python_file, default_config, merge, validate
from lm.convert import layout
from lm.convert.hf_config import ARCHITECTURE_FIELDS, model_fields_from_hf
from lm.convert.safetensors_io import SafetensorsReader
from lm.convert.workdir import write_workdir
from lm.train.state import abstract_params
from lm.data.tokenizer import Tokenizer
from lm.train.checkpoint import CheckpointError

TOKENIZER_FILE = "tokenizer.model"


def read_hf_config(src: Path) -> tuple[dict[str, Any], Path]:
    """SRC/config.json as a dict, and its path."""
    path = Path(src) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; SRC_DIR must be a Hugging Face model "
                                "directory (config.json + safetensors)")
    try:
        return json.loads(path.read_text()), path
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err})") from err


def build_config(src: Path, config_file: str | None, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Defaults, then `config_file`, then SRC's architecture, then `overrides`; validated,
    with the architecture fields checked against SRC."""
    hf, hf_path = read_hf_config(src)
    fields = model_fields_from_hf(hf, hf_path)
    cfg = default_config()
    if config_file is not None:
        value = call_python_file(config_file, "get_config", kind="config")
        merge(cfg, value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value)
    merge(cfg, {"model": fields})
    validate(apply_overrides(cfg, overrides))
    for name in ARCHITECTURE_FIELDS:
        if cfg.model[name] != fields[name]:
            raise ConfigError(f"config field 'model.{name}': {cfg.model[name]!r} disagrees with "
                              f"{hf_path} ({fields[name]!r}); the checkpoint fixes it, drop the override")
    return cfg


def read_params(reader: SafetensorsReader, m: ml_collections.ConfigDict) -> dict[str, Any]:
    """The lm parameters (numpy, `m.param_dtype`) from an HF checkpoint, one tensor at a time."""
    _, shapes = abstract_params(m)
    params = jax.tree.map(lambda s: np.empty(s.shape, s.dtype), shapes)
    expected = layout.all_tensors(m.num_layers, m.tie_embeddings)
    for tensor in expected:
        target = _at(params, tensor.lm_path)
        layer = _layer_of(tensor.hf_name)
        row_shape = target.shape if layer is None else target.shape[1:]
        array = _read(reader, tensor.hf_name, layout.hf_shape(row_shape, tensor.in_axes))
        value = layout.to_lm(array, row_shape, tensor.in_axes)
        if layer is None:
            target[...] = value
        else:
            target[layer] = value
        del array, value
    names = set(reader.names())
    if m.tie_embeddings and layout.HEAD.hf_name in reader:
        head = _read(reader, layout.HEAD.hf_name, params["embed"].shape)
        if not np.array_equal(head.astype(params["embed"].dtype), params["embed"]):
            raise CheckpointError(f"{reader.file_of(layout.HEAD.hf_name)}: config.json says "
                                  "tie_word_embeddings but lm_head.weight differs from the embedding")
        names.discard(layout.HEAD.hf_name)
    unused = sorted(names - {t.hf_name for t in expected}
                    - {n for n in names if n.endswith(layout.IGNORED_SUFFIXES)})
    if unused:
        raise CheckpointError(f"{reader.directory}: {len(unused)} tensors have no place in a LLaMA "
                              f"decoder, e.g. {unused[:3]}; is config.json (model_type llama) right?")
    return params


def _layer_of(hf_name: str) -> int | None:
    parts = hf_name.split(".")
    return int(parts[2]) if parts[:2] == ["model", "layers"] else None


def _at(tree: dict[str, Any], path: tuple[str, ...]) -> np.ndarray:
    for key in path:
        tree = tree[key]
    return tree


def _read(reader: SafetensorsReader, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in reader:
        raise CheckpointError(f"tensor '{name}' is missing from the checkpoint in {reader.directory}")
    if reader.shape(name) != tuple(shape):
        raise CheckpointError(f"{reader.file_of(name)}: tensor '{name}' has shape {reader.shape(name)}"
                              f" but config.json implies {tuple(shape)}")
    return reader.get(name)


def place_tokenizer(cfg: ml_collections.ConfigDict, src: Path, dst: Path) -> Tokenizer:
    """Copy SRC's tokenizer.model into dst/tokenizer/ (unless data.tokenizer_path names one),
    point the config at it, and check it against the model config."""
    if cfg.data.tokenizer_path:
        tokenizer = Tokenizer.load(Path(cfg.data.tokenizer_path))
    else:
        source = Path(src) / TOKENIZER_FILE
        if not source.exists():
            raise FileNotFoundError(
                f"{source} does not exist; lm needs a sentencepiece tokenizer for this model: "
                "pass --config.data.tokenizer_path=FILE")
        target = Path(dst) / "tokenizer" / TOKENIZER_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        tokenizer = Tokenizer.load(target)
        if cfg.data.prepared_dir:  # runs read the tokenizer from prepared_dir otherwise
            cfg.data.tokenizer_path = str(target.absolute())
    if tokenizer.vocab_size != cfg.model.vocab_size:
        raise ConfigError(f"tokenizer {tokenizer.path} has {tokenizer.vocab_size} pieces but the model's "
                          f"vocab_size is {cfg.model.vocab_size}; lm needs them equal")
    return tokenizer


def _check_special_ids(hf: dict[str, Any], hf_path: Path, tokenizer: Tokenizer) -> None:
    for field, mine in (("bos_token_id", tokenizer.bos_id), ("eos_token_id", tokenizer.eos_id)):
        theirs = hf.get(field)
        if isinstance(theirs, int) and theirs != mine:
            raise ConfigError(f"{hf_path}: field '{field}' is {theirs} but tokenizer {tokenizer.path} "
                              f"has id {mine}; lm uses the tokenizer's BOS/EOS")


def convert_from_hf(src: Path, dst: Path, *, config_file: str | None = None,
                    overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Convert the HF LLaMA directory `src` into a new lm workdir `dst`; returns a summary."""
    src, dst = Path(src), Path(dst)
    if (dst / "config.json").exists() or (dst / "checkpoints").exists():
        raise ConfigError(f"DST_WORKDIR {dst} already holds a run; choose a new directory")
    cfg = build_config(src, config_file, overrides)
    tokenizer = place_tokenizer(cfg, src, dst)
    _check_special_ids(*read_hf_config(src), tokenizer)
    with SafetensorsReader(src) as reader:
        params = read_params(reader, cfg.model)
    meta = {"converted_from": str(src.absolute()), "format": "huggingface-llama"}
    write_workdir(cfg, params, dst, meta)
    count = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    return {"workdir": str(dst), "step": 0, "parameters": count, "tokenizer": str(tokenizer.path),
            "continue_with": f"lm train --config {dst / 'experiment.py'} --workdir {dst}"}
