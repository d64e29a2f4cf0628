"""Hugging Face LLaMA `config.json` <-> the `model` section of an lm config.

Reads what transformers 4.x writes (`rope_theta`, `rope_scaling`,
`torch_dtype`) and what 5.x writes (`rope_parameters`, `dtype`). Anything the
lm decoder does not compute (RoPE scaling, attention or MLP biases, another
activation or model type) is refused with a ConfigError naming the field,
never dropped. Weights stored as float16 become float32 (lm keeps float32 or
bfloat16 parameters; the upcast is exact).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections

from lm.config import ConfigError, head_dim

# lm model fields fixed by the checkpoint's shapes and numerics; a user may not override them.
ARCHITECTURE_FIELDS = ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads",
                       "head_dim", "d_ff", "max_seq_len", "rope_theta", "norm_eps", "tie_embeddings")
_PARAM_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float32"}
_DEFAULT_ROPE_THETA = 10000.0  # transformers' LlamaConfig default


def model_fields_from_hf(hf: dict[str, Any], path: Path) -> dict[str, Any]:
    """The lm `model` fields (architecture plus param_dtype) of the HF config `hf` read from `path`."""

    def fail(field: str, message: str) -> None:
        raise ConfigError(f"{path}: field '{field}' {message}")

    def required(field: str) -> Any:
        if field not in hf or hf[field] is None:
            fail(field, "is missing; a LLaMA config.json must give it")
        return hf[field]

    if hf.get("model_type") != "llama":
        fail("model_type", f"is {hf.get('model_type')!r}; only 'llama' (LlamaForCausalLM) converts")
    if hf.get("hidden_act", "silu") != "silu":
        fail("hidden_act", f"is {hf['hidden_act']!r}; the lm MLP is SwiGLU (silu)")
    for field in ("attention_bias", "mlp_bias"):
        if hf.get(field):
            fail(field, "is true; the lm decoder has no bias terms")
    d_model, num_heads = int(required("hidden_size")), int(required("num_attention_heads"))
    per_head = int(hf.get("head_dim") or d_model // num_heads)
    dtype_name = str(hf.get("torch_dtype") or hf.get("dtype") or "float32").removeprefix("torch.")
    if dtype_name not in _PARAM_DTYPES:
        fail("torch_dtype", f"is {dtype_name!r}; supported: {', '.join(_PARAM_DTYPES)}")
    return {
        "vocab_size": int(required("vocab_size")),
        "d_model": d_model,
        "num_layers": int(required("num_hidden_layers")),
        "num_heads": num_heads,
        "num_kv_heads": int(hf.get("num_key_value_heads") or num_heads),
        "head_dim": 0 if per_head * num_heads == d_model else per_head,
        "d_ff": int(required("intermediate_size")),
        "max_seq_len": int(required("max_position_embeddings")),
        "rope_theta": _rope_theta(hf, fail),
        "norm_eps": float(required("rms_norm_eps")),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "param_dtype": _PARAM_DTYPES[dtype_name],
    }


def _rope_theta(hf: dict[str, Any], fail) -> float:
    scaling = hf.get("rope_scaling")
    if scaling:
        kind = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else scaling
        if kind != "default":
            fail("rope_scaling", f"is {scaling!r}; lm implements plain RoPE only (rope_type 'default')")
    parameters = hf.get("rope_parameters")
    if parameters:
        if not isinstance(parameters, dict) or parameters.get("rope_type", "default") != "default":
            fail("rope_parameters", f"is {parameters!r}; lm implements plain RoPE only "
                 "(rope_type 'default')")
        if "rope_theta" in parameters:
            return float(parameters["rope_theta"])
    return float(hf.get("rope_theta") or _DEFAULT_ROPE_THETA)


def hf_config_from_model(m: ml_collections.ConfigDict, *, bos_id: int, eos_id: int) -> dict[str, Any]:
    """A transformers `LlamaConfig` dict (config.json) for the lm model config `m`."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": m.vocab_size,
        "hidden_size": m.d_model,
        "intermediate_size": m.d_ff,
        "num_hidden_layers": m.num_layers,
        "num_attention_heads": m.num_heads,
        "num_key_value_heads": m.num_kv_heads,
        "head_dim": head_dim(m),
        "hidden_act": "silu",
        "max_position_embeddings": m.max_seq_len,
        "rms_norm_eps": m.norm_eps,
        "rope_theta": m.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": m.tie_embeddings,
        "torch_dtype": m.param_dtype,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": None,
        "initializer_range": m.init_std,
        "use_cache": True,
    }
