"""lm's decoder as bare JAX: pure functions on a dict of arrays, optax AdamW, one jitted step.

The minimal hand-written loop a researcher would write, without flax or lm's trainer: a
Python loop over layers (unrolled by jit, no scan), plain 2-D matmuls,
`jax.nn.dot_product_attention(is_causal=True)`, rotate-half RoPE, SwiGLU, float32
throughout. Every row is one whole sequence (positions 0..L-1, no packing), the layout of
benchmarks/train_step.py's synthetic batches. The step is mean cross-entropy, then
`optax.clip_by_global_norm` and `optax.adamw` (lm's weight-decay mask, and lm's
learning-rate schedule `lm.train.optim.lr_schedule`), jitted with the params and
optimizer state donated.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lm.config import head_dim
from lm.train.optim import lr_schedule
from peers import check_supported as check_peer_config

Params = dict[str, Any]
TrainStep = Callable[[Params, Any, jax.Array, jax.Array], tuple[Params, Any, jax.Array]]


def check_supported(cfg: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the first config field this peer does not model."""
    check_peer_config(cfg, "bare-JAX")


def param_shapes(m: ml_collections.ConfigDict) -> Params:
    """The parameter layout: embed, a list of per-layer dicts, final_norm, head if untied."""
    d, f, hk, kvk = m.d_model, m.d_ff, m.num_heads * head_dim(m), m.num_kv_heads * head_dim(m)
    layer = {"attn_norm": (d,), "wq": (d, hk), "wk": (d, kvk), "wv": (d, kvk), "wo": (hk, d),
             "mlp_norm": (d,), "w_gate": (d, f), "w_up": (d, f), "w_down": (f, d)}
    shapes = {"embed": (m.vocab_size, d), "layers": [dict(layer) for _ in range(m.num_layers)],
              "final_norm": (d,)}
    if not m.tie_embeddings:
        shapes["head"] = (d, m.vocab_size)
    return shapes


def num_params(params: Params) -> int:
    return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(params))


def from_lm_params(params: Any, m: ml_collections.ConfigDict) -> Params:
    """lm's parameter dict (`build_model`'s layout, layers stacked) in this peer's layout."""
    blocks = params["blocks"]
    attn, mlp = blocks["attn"], blocks["mlp"]
    flat = lambda a: np.asarray(a).reshape(a.shape[0], -1)  # [D, H, K] -> [D, H*K]
    layers = [{"attn_norm": blocks["attn_norm"]["scale"][i], "wq": flat(attn["wq"][i]),
               "wk": flat(attn["wk"][i]), "wv": flat(attn["wv"][i]),
               "wo": np.asarray(attn["wo"][i]).reshape(-1, attn["wo"].shape[-1]),
               "mlp_norm": blocks["mlp_norm"]["scale"][i], "w_gate": mlp["w_gate"][i],
               "w_up": mlp["w_up"][i], "w_down": mlp["w_down"][i]}
              for i in range(attn["wq"].shape[0])]
    out = {"embed": params["embed"], "layers": layers, "final_norm": params["final_norm"]["scale"]}
    if "head" in params:
        out["head"] = params["head"]
    out = jax.tree.map(lambda a: jnp.array(a, jnp.float32), out)  # fresh buffers (the step donates)
    wanted = param_shapes(m)
    got = jax.tree.map(lambda a: a.shape, out)
    if got != wanted:
        raise ValueError(f"lm parameters convert to shapes {got}, but model config gives "
                         f"{wanted}; build both from the same model config")
    return out


def rms_norm(x_BxLxD: jax.Array, scale_D: jax.Array, eps: float) -> jax.Array:
    return x_BxLxD * jax.lax.rsqrt(jnp.mean(x_BxLxD * x_BxLxD, -1, keepdims=True) + eps) * scale_D


def apply_rope(x_BxLxHxK: jax.Array, theta: float) -> jax.Array:
    """Rotate-half RoPE at positions 0..L-1."""
    length, half = x_BxLxHxK.shape[1], x_BxLxHxK.shape[-1] // 2
    inv_freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle_Lx1xK2 = jnp.arange(length, dtype=jnp.float32)[:, None, None] * inv_freq
    cos, sin = jnp.cos(angle_Lx1xK2), jnp.sin(angle_Lx1xK2)
    x1, x2 = x_BxLxHxK[..., :half], x_BxLxHxK[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def forward(params: Params, tokens_BxL: jax.Array, m: ml_collections.ConfigDict) -> jax.Array:
    """Float32 logits [B, L, vocab]."""
    b, length = tokens_BxL.shape
    h, kv, k, eps = m.num_heads, m.num_kv_heads, head_dim(m), m.norm_eps
    x = params["embed"][tokens_BxL]
    for p in params["layers"]:
        n = rms_norm(x, p["attn_norm"], eps)
        q = apply_rope((n @ p["wq"]).reshape(b, length, h, k), m.rope_theta)
        key = apply_rope((n @ p["wk"]).reshape(b, length, kv, k), m.rope_theta)
        value = (n @ p["wv"]).reshape(b, length, kv, k)
        y = jax.nn.dot_product_attention(q, key, value, is_causal=True)
        x = x + y.reshape(b, length, h * k) @ p["wo"]
        n = rms_norm(x, p["mlp_norm"], eps)
        x = x + (jax.nn.silu(n @ p["w_gate"]) * (n @ p["w_up"])) @ p["w_down"]
    x = rms_norm(x, params["final_norm"], eps)
    return x @ (params["embed"].T if m.tie_embeddings else params["head"])


def loss_fn(params: Params, inputs_BxL: jax.Array, targets_BxL: jax.Array,
            m: ml_collections.ConfigDict) -> jax.Array:
    """Mean next-token cross-entropy in nats."""
    logits = forward(params, inputs_BxL, m)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets_BxL).mean()


def make_optimizer(t: ml_collections.ConfigDict, params: Params) -> optax.GradientTransformation:
    """Clip by global norm, then AdamW on lm's lr schedule with lm's decay mask."""

    def decays(path: tuple, _leaf: Any) -> bool:
        name = str(getattr(path[-1], "key", path[-1]))
        if name == "embed":
            return t.decay_embeddings
        return t.decay_norms if name.endswith("norm") else True

    mask = jax.tree_util.tree_map_with_path(decays, params)
    adamw = optax.adamw(lr_schedule(t), b1=t.b1, b2=t.b2, eps=t.eps,
                        weight_decay=t.weight_decay, mask=mask)
    return optax.chain(optax.clip_by_global_norm(t.clip_norm), adamw) if t.clip_norm > 0 else adamw


def make_train_step(m: ml_collections.ConfigDict,
                    optimizer: optax.GradientTransformation) -> TrainStep:
    """`step(params, opt_state, inputs, targets) -> (params, opt_state, loss)`, jitted,
    params and optimizer state donated."""

    def step(params, opt_state, inputs_BxL, targets_BxL):
        loss, grads = jax.value_and_grad(loss_fn)(params, inputs_BxL, targets_BxL, m)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1))


def build(cfg: ml_collections.ConfigDict, lm_params: Any) -> tuple[Params, Any, TrainStep]:
    """Params converted from lm's `lm_params`, a fresh optimizer state, and the jitted step."""
    check_supported(cfg)
    params = from_lm_params(lm_params, cfg.model)
    optimizer = make_optimizer(cfg.train, params)
    return params, optimizer.init(params), make_train_step(cfg.model, optimizer)
