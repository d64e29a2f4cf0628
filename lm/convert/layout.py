"""Where each lm parameter lives in a Hugging Face LLaMA checkpoint, and how it is laid out.

HF `nn.Linear` weights are [out, in]; lm keeps [in, out] with the head axes
split out, and stacks the blocks on a leading `layers` axis:

    lm                              HF (per layer i: model.layers.{i}.)
    embed [V, D]                    model.embed_tokens.weight [V, D]
    blocks.attn.wq [L, D, H, K]     self_attn.q_proj.weight [H*K, D]
    blocks.attn.wk/wv [L, D, KV, K] self_attn.k_proj/v_proj.weight [KV*K, D]
    blocks.attn.wo [L, H, K, D]     self_attn.o_proj.weight [D, H*K]
    blocks.mlp.w_gate/w_up [L, D, F] mlp.gate_proj/up_proj.weight [F, D]
    blocks.mlp.w_down [L, F, D]     mlp.down_proj.weight [D, F]
    blocks.attn_norm.scale [L, D]   input_layernorm.weight [D]
    blocks.mlp_norm.scale [L, D]    post_attention_layernorm.weight [D]
    final_norm.scale [D]            model.norm.weight [D]
    head [D, V] (untied only)       lm_head.weight [V, D]

So an lm weight is the HF weight transposed and reshaped, and back.

Rotary embeddings need no permutation: lm's `apply_rope` and transformers'
`LlamaForCausalLM` both rotate halves (dimension j pairs with j + K/2) with
frequencies theta^(-2j/K), so HF q_proj/k_proj rows map to lm heads in order;
the logits tests in tests/test_convert.py check this to 1e-4. (Meta's
original `consolidated.*.pth` files pair adjacent dimensions instead; they
are not read here: transformers' own conversion script permutes them into
the HF layout first.)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class Tensor(NamedTuple):
    """One HF tensor: its name, the lm parameter path it fills, and the number of
    leading lm axes (after `layers`) that make up nn.Linear's input (None: copied as is)."""

    hf_name: str
    lm_path: tuple[str, ...]
    in_axes: int | None


_LAYER = (
    ("self_attn.q_proj.weight", ("blocks", "attn", "wq"), 1),
    ("self_attn.k_proj.weight", ("blocks", "attn", "wk"), 1),
    ("self_attn.v_proj.weight", ("blocks", "attn", "wv"), 1),
    ("self_attn.o_proj.weight", ("blocks", "attn", "wo"), 2),
    ("mlp.gate_proj.weight", ("blocks", "mlp", "w_gate"), 1),
    ("mlp.up_proj.weight", ("blocks", "mlp", "w_up"), 1),
    ("mlp.down_proj.weight", ("blocks", "mlp", "w_down"), 1),
    ("input_layernorm.weight", ("blocks", "attn_norm", "scale"), None),
    ("post_attention_layernorm.weight", ("blocks", "mlp_norm", "scale"), None),
)
EMBED = Tensor("model.embed_tokens.weight", ("embed",), None)
FINAL_NORM = Tensor("model.norm.weight", ("final_norm", "scale"), None)
HEAD = Tensor("lm_head.weight", ("head",), 1)
# Buffers some older checkpoints carry; they are recomputed from rope_theta, not weights.
IGNORED_SUFFIXES = ("self_attn.rotary_emb.inv_freq",)


def layer_tensors(layer: int) -> list[Tensor]:
    """The HF tensors of block `layer`, each filling row `layer` of a stacked lm parameter."""
    return [Tensor(f"model.layers.{layer}.{suffix}", path, axes) for suffix, path, axes in _LAYER]


def all_tensors(num_layers: int, tied: bool) -> list[Tensor]:
    """Every HF tensor of a model, in the order transformers writes them."""
    tensors = [EMBED] + [t for i in range(num_layers) for t in layer_tensors(i)] + [FINAL_NORM]
    return tensors if tied else tensors + [HEAD]


def hf_shape(lm_shape: tuple[int, ...], in_axes: int | None) -> tuple[int, ...]:
    """The HF shape of one (unstacked) lm parameter of shape `lm_shape`."""
    if in_axes is None:
        return tuple(lm_shape)
    return (math.prod(lm_shape[in_axes:]), math.prod(lm_shape[:in_axes]))


def to_lm(array: np.ndarray, lm_shape: tuple[int, ...], in_axes: int | None) -> np.ndarray:
    """An HF tensor in lm's layout `lm_shape` (a view where numpy can make one)."""
    return array.reshape(lm_shape) if in_axes is None else array.T.reshape(lm_shape)


def to_hf(array: np.ndarray, in_axes: int | None) -> np.ndarray:
    """An (unstacked) lm parameter in HF's layout, as a contiguous array."""
    if in_axes is None:
        return np.ascontiguousarray(array)
    rows = math.prod(array.shape[:in_axes])
    return np.ascontiguousarray(array.reshape(rows, -1).T)
