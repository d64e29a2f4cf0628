"""Export an lm workdir's newest checkpoint as a Hugging Face LLaMA directory.

    lm convert to-hf WORKDIR DST_DIR [--max-shard-bytes N]

DST_DIR gets config.json (`LlamaForCausalLM`), model.safetensors (or shards
of at most N bytes plus model.safetensors.index.json), the run's
sentencepiece tokenizer.model, tokenizer_config.json and
special_tokens_map.json, so `transformers.AutoModelForCausalLM` and
`AutoTokenizer` load it with no custom code. Tensors keep the run's
param_dtype. Each tensor is laid out for HF (see lm/convert/layout.py) only
when its shard is written, so memory holds the parameters plus one shard.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from lm.config import ConfigError
from lm.convert import layout
from lm.convert.hf_config import hf_config_from_model
from lm.convert.safetensors_io import write_safetensors
from lm.train.state import read_run_config, restore_params
from lm.data.build import run_tokenizer_path
from lm.data.tokenizer import Tokenizer
from lm.files import write_json_atomic


def hf_tensors(params: dict[str, Any], m: ml_collections.ConfigDict) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, HF-layout numpy array) for every parameter, made one at a time."""
    for tensor in layout.all_tensors(m.num_layers, m.tie_embeddings):
        value = params
        for key in tensor.lm_path:
            value = value[key]
        parts = tensor.hf_name.split(".")
        if parts[:2] == ["model", "layers"]:
            value = value[int(parts[2])]
        yield tensor.hf_name, layout.to_hf(np.asarray(jax.device_get(value)), tensor.in_axes)


def tokenizer_files(model_path: Path, max_len: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """tokenizer_config.json and special_tokens_map.json for transformers' LlamaTokenizer
    over the sentencepiece model at `model_path`. `add_prefix_space` follows the model's
    add_dummy_prefix, so transformers encodes as sentencepiece does (checked for lm's
    tokenizers, which add no prefix; with a prefix, transformers 5 still differs from
    sentencepiece on text that starts with a space)."""
    model_bytes = model_path.read_bytes()
    processor = spm.SentencePieceProcessor(model_proto=model_bytes)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    special = {"bos_token": processor.id_to_piece(processor.bos_id()),
               "eos_token": processor.id_to_piece(processor.eos_id()),
               "unk_token": processor.id_to_piece(processor.unk_id())}
    config = {
        "tokenizer_class": "LlamaTokenizer",
        **special,
        "pad_token": None,
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": False,
        "legacy": False,
        "add_prefix_space": proto.normalizer_spec.add_dummy_prefix,
    }
    return config, special


def convert_to_hf(workdir: Path, dst: Path, *, max_shard_bytes: int) -> dict[str, Any]:
    """Write the newest checkpoint of the run in `workdir` to the new HF directory `dst`."""
    workdir, dst = Path(workdir), Path(dst)
    cfg = read_run_config(workdir)
    if dst.exists() and any(dst.iterdir()):
        raise ConfigError(f"DST_DIR {dst} is not empty; choose a new directory")
    tokenizer = Tokenizer.load(run_tokenizer_path(cfg.data, workdir))
    _, params, step = restore_params(workdir, cfg)
    dst.mkdir(parents=True, exist_ok=True)
    files = write_safetensors(hf_tensors(params, cfg.model), dst, max_shard_bytes=max_shard_bytes)
    shutil.copyfile(tokenizer.path, dst / "tokenizer.model")
    tok_config, special = tokenizer_files(tokenizer.path, cfg.model.max_seq_len)
    write_json_atomic(tok_config, dst / "tokenizer_config.json")
    write_json_atomic(special, dst / "special_tokens_map.json")
    hf = hf_config_from_model(cfg.model, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
    write_json_atomic(hf, dst / "config.json")  # last: its presence marks a complete export
    return {"directory": str(dst), "step": step, "files": [f.name for f in files]}
