"""muP, the maximal-update parametrization (Yang et al. 2022, "Tensor Programs V"), for Adam.

A muP model is described relative to a proxy ("base") shape: `model.mup_base_width` is the
proxy's d_model and `model.mup_base_head_dim` its head dim. With the width multiplier
m = d_model / mup_base_width, every hidden matrix (attention wq, wk, wv, wo and the MLP's
w_gate, w_up, w_down, whose fan-in grows with width) gets

- an init standard deviation divided by sqrt(m) (variance ~ 1/fan_in), and
- an Adam learning rate divided by m (`lr_multipliers`, applied by lm.train.optim),

while the embedding, the norms' scales and the output head keep SP's init and learning rate.
The logits are multiplied by 1/m (`output_multiplier`, folded into the head matrix), and
attention logits are scaled by sqrt(base_head_dim) / head_dim instead of 1/sqrt(head_dim),
1/head_dim up to a constant that makes the proxy's attention SP's (`attention_scale`).

At m = 1 with head_dim = base head dim, a muP model *is* the SP model with the same init
and learning rate: the proxy is tuned in SP terms, and the best learning rate then holds as
the model widens. The rules assume d_ff and num_heads x head_dim grow with d_model (the
usual sweep); the learning-rate multiplier of w_down and wo uses d_model's multiplier.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import ml_collections

from lm.config import head_dim

# parameters whose fan-in grows with width ("hidden" matrices in muP's terms)
HIDDEN_MATRICES = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


def is_mup(m: ml_collections.ConfigDict) -> bool:
    return m.parametrization == "mup"


def width_multiplier(m: ml_collections.ConfigDict) -> float:
    """d_model / mup_base_width under muP; 1 under SP."""
    return m.d_model / m.mup_base_width if is_mup(m) else 1.0


def base_head_dim(m: ml_collections.ConfigDict) -> int:
    """The proxy's head dim: `mup_base_head_dim`, or mup_base_width // num_heads when 0."""
    return m.mup_base_head_dim or max(1, m.mup_base_width // m.num_heads)


def hidden_init_std(m: ml_collections.ConfigDict, std: float) -> float:
    """The init std of a hidden matrix whose SP std is `std`: divided by sqrt(m) under muP."""
    return std / math.sqrt(width_multiplier(m))


def output_multiplier(m: ml_collections.ConfigDict) -> float:
    """The factor on the logits: 1 / m under muP, 1 under SP."""
    return 1.0 / width_multiplier(m)


def attention_scale(m: ml_collections.ConfigDict) -> float:
    """The factor on q.k: 1/sqrt(head_dim) under SP, sqrt(base_head_dim)/head_dim under muP."""
    k = head_dim(m)
    return math.sqrt(base_head_dim(m)) / k if is_mup(m) else 1.0 / math.sqrt(k)


def lr_multiplier_of(path: tuple, m: ml_collections.ConfigDict) -> float:
    """The Adam learning-rate multiplier of the parameter at `path` (a pytree key path)."""
    names = [str(getattr(p, "key", p)) for p in path]
    return 1.0 / width_multiplier(m) if any(n in HIDDEN_MATRICES for n in names) else 1.0


def lr_multipliers(params: Any, m: ml_collections.ConfigDict) -> Any:
    """A pytree like `params` holding each parameter's learning-rate multiplier (floats)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: lr_multiplier_of(path, m), params)
