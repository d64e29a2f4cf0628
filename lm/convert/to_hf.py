"""Export an lm workdir's newest checkpoint as a Hugging Face LLaMA directory.

    lm convert to-hf WORKDIR DST_DIR [--max-shard-bytes N]

DST_DIR gets config.json (`LlamaForCausalLM`), model.safetensors (or shards
of at most N bytes plus model.safetensors.index.json), the run's
sentencepiece tokenizer.model and, from it, tokenizer.json,
tokenizer_config.json and special_tokens_map.json, so
`transformers.AutoModelForCausalLM` and `AutoTokenizer` load it with no custom
code and encode text exactly as lm does (lm/convert/hf_tokenizer.py; a
tokenizer it cannot match, such as a unigram one, is refused). Tensors keep
the run's param_dtype. Each tensor is laid out for HF (see lm/convert/layout.py) only
when its shard is written, so memory holds the parameters plus one shard.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np

from lm.config import ConfigError, head_dim
from lm.convert import layout
from lm.convert.hf_config import hf_config_from_model
from lm.convert.hf_tokenizer import hf_tokenizer_files, write_tokenizer_files
from lm.convert.safetensors_io import write_safetensors
from lm.model import mup
from lm.train.state import read_run_config, restore_params
from lm.data.build import run_tokenizer_path
from lm.data.tokenizer import Tokenizer
from lm.files import write_json_atomic


def hf_tensors(params: dict[str, Any], m: ml_collections.ConfigDict) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, HF-layout numpy array) for every parameter, made one at a time; muP's
    multipliers are folded in (`mup_fold_factors`)."""
    factors = mup_fold_factors(m)
    for tensor in layout.all_tensors(m.num_layers, m.tie_embeddings):
        value = params
        for key in tensor.lm_path:
            value = value[key]
        parts = tensor.hf_name.split(".")
        if parts[:2] == ["model", "layers"]:
            value = value[int(parts[2])]
        value = np.asarray(jax.device_get(value))
        if tensor.lm_path[-1] in factors:  # in float32, then back to the stored dtype
            value = (value.astype(np.float32) * factors[tensor.lm_path[-1]]).astype(value.dtype)
        yield tensor.hf_name, layout.to_hf(value, tensor.in_axes)


def mup_fold_factors(m: ml_collections.ConfigDict) -> dict[str, float]:
    """The weights that carry a muP model's multipliers for a plain LLaMA: the head takes the
    output multiplier, and wq takes attention_scale * sqrt(head_dim), since transformers
    scales q.k by 1/sqrt(head_dim) (RoPE is linear, so scaling q before it is the same).
    Empty under SP. A tied muP model cannot fold its multiplier into a shared matrix:
    refused with the way out."""
    if not mup.is_mup(m):
        return {}
    if m.tie_embeddings:
        raise ConfigError("model.parametrization='mup' with model.tie_embeddings=true cannot be "
                          "exported: the output multiplier would have to be folded into the "
                          "embedding the head shares; train muP models with tie_embeddings=false "
                          "to export them")
    return {"head": mup.output_multiplier(m), "wq": mup.attention_scale(m) * math.sqrt(head_dim(m))}


def convert_to_hf(workdir: Path, dst: Path, *, max_shard_bytes: int) -> dict[str, Any]:
    """Write the newest checkpoint of the run in `workdir` to the new HF directory `dst`."""
    workdir, dst = Path(workdir), Path(dst)
    cfg = read_run_config(workdir)
    mup_fold_factors(cfg.model)  # a tied muP model is refused before anything is written
    if dst.exists() and any(dst.iterdir()):
        raise ConfigError(f"DST_DIR {dst} is not empty; choose a new directory")
    tokenizer = Tokenizer.load(run_tokenizer_path(cfg.data, workdir))
    tokenizer_files = hf_tokenizer_files(tokenizer.path, cfg.model.max_seq_len)  # refuses before writing
    _, params, step = restore_params(workdir, cfg)
    dst.mkdir(parents=True, exist_ok=True)
    files = write_safetensors(hf_tensors(params, cfg.model), dst, max_shard_bytes=max_shard_bytes)
    write_tokenizer_files(tokenizer_files, dst)
    hf = hf_config_from_model(cfg.model, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
    write_json_atomic(hf, dst / "config.json")  # last: its presence marks a complete export
    return {"directory": str(dst), "step": step, "files": [f.name for f in files]}
