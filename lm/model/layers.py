"""Decoder building blocks: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU MLP.

Shapes are in the names: B batch, L query length, S key length, D d_model,
H query heads, G query heads per kv head, KV kv heads, K head_dim, F d_ff.
Parameters are stored in `param_dtype` and cast to `compute_dtype` where they
are used; norms, softmax and the loss run in float32.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from lm.parallel.sharding import constrain

Initializer = Callable[..., jax.Array]


def logical_param(rngs: nnx.Rngs, init: Initializer, shape: tuple[int, ...],
                  names: tuple[str, ...], dtype: jnp.dtype) -> nnx.Param:
    """A parameter carrying logical axis names (placed on devices by lm.parallel, not here)."""
    return nnx.Param(init(rngs.params(), shape, dtype), out_sharding=names, eager_sharding=False)


class RMSNorm(nnx.Module):
    """Root-mean-square norm with a learned scale, computed in float32."""

    def __init__(self, dim: int, *, eps: float, param_dtype: jnp.dtype):
        self.scale = nnx.Param(jnp.ones((dim,), param_dtype), out_sharding=("embed",),
                               eager_sharding=False)
        self.eps = eps

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        x32 = x_BxLxD.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...].astype(jnp.float32)).astype(x_BxLxD.dtype)


def apply_rope(x_BxLxHxK: jax.Array, positions_BxL: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding, rotate-half layout (first half pairs with second half)."""
    half = x_BxLxHxK.shape[-1] // 2
    inv_freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle_BxLx1xK2 = positions_BxL.astype(jnp.float32)[:, :, None, None] * inv_freq
    sin, cos = jnp.sin(angle_BxLx1xK2), jnp.cos(angle_BxLx1xK2)
    x = x_BxLxHxK.astype(jnp.float32)
    # [x1 cos - x2 sin, x2 cos + x1 sin] as x * [cos, cos] + [x2, x1] * [-sin, sin]: the same
    # numbers, and the gradient is one fused multiply-add of a half swap, not slices + pads
    # (4-5% of the small preset's CPU step).
    swapped = jnp.concatenate([x[..., half:], x[..., :half]], axis=-1)
    cos2, sin2 = jnp.concatenate([cos, cos], axis=-1), jnp.concatenate([-sin, sin], axis=-1)
    return (x * cos2 + swapped * sin2).astype(x_BxLxHxK.dtype)


def project(x: jax.Array, w: jax.Array, contract: int = 1,
            preferred_element_type: jnp.dtype | None = None) -> jax.Array:
    """Contract the last `contract` dims of `x` with the first `contract` dims of `w`.

    Computed as one 2-D matmul: every leading dim of `x` (batch, sequence) is a row.
    The same product written as a 3-D einsum ("bld,df->blf") has a weight gradient
    that contracts two dims; XLA:CPU canonicalises it by transposing the activations
    inside the elementwise fusion that produces them, a slow strided copy (23% of the
    `small` preset's CPU step, benchmarks/compare_peers.py). In 2-D the gradients are
    plain transposed-operand GEMMs. On GPU and TPU both forms give the same matmuls.
    `preferred_element_type` is the product's dtype (float32 logits from bf16 inputs).
    """
    lead, inner = x.shape[:x.ndim - contract], w.shape[:contract]
    if x.shape[x.ndim - contract:] != inner:
        raise ValueError(f"cannot contract x{x.shape} with w{w.shape} over {contract} dims")
    size = math.prod(inner)
    y = jnp.dot(x.reshape(-1, size), w.reshape(size, -1),
                preferred_element_type=preferred_element_type)
    return y.reshape(*lead, *w.shape[contract:])


def attention_mask(segment_ids_BxL: jax.Array) -> jax.Array:
    """Causal mask within packed segments: query i sees key j iff j <= i and same segment."""
    length = segment_ids_BxL.shape[1]
    causal_LxS = jnp.tril(jnp.ones((length, length), dtype=bool))
    same_BxLxS = segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
    return causal_LxS[None] & same_BxLxS


def attend(q_BxLxHxK: jax.Array, k_BxSxKVxK: jax.Array, v_BxSxKVxK: jax.Array,
           mask_BxLxS: jax.Array, scale: float | None = None) -> jax.Array:
    """Softmax attention with grouped-query heads; logits (q.k times `scale`, default
    1/sqrt(head_dim)) and softmax in float32."""
    b, length, heads, dim = q_BxLxHxK.shape
    kv_heads = k_BxSxKVxK.shape[2]
    q_BxLxKVxGxK = q_BxLxHxK.reshape(b, length, kv_heads, heads // kv_heads, dim)
    logits = jnp.einsum("blkgd,bskd->bkgls", q_BxLxKVxGxK, k_BxSxKVxK,
                        preferred_element_type=jnp.float32) * _scale(scale, dim)
    logits = jnp.where(mask_BxLxS[:, None, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v_BxSxKVxK.dtype)
    out = jnp.einsum("bkgls,bskd->blkgd", probs, v_BxSxKVxK)
    return out.reshape(b, length, heads, dim)


def attend_blockwise(q_BxLxHxK: jax.Array, k_BxLxKVxK: jax.Array, v_BxLxKVxK: jax.Array,
                     mask_BxLxL: jax.Array, block: int, scale: float | None = None) -> jax.Array:
    """Causal self-attention that skips the key blocks above the diagonal.

    Queries are split into blocks of `block` positions; block i attends to keys
    [0, end of block i) only, so the logits, softmax and both attention matmuls
    cover (n + 1) / 2n of the L x L square for n blocks (3/4 at L = 2 x block)
    instead of all of it. The keys a block skips are exactly those the causal
    mask removes, so the result equals `attend` (same mask, same float32 softmax).
    Heads are moved in front of the sequence once, so each block's matmuls are
    plain batched GEMMs over [batch, kv_heads].
    """
    b, length, heads, dim = q_BxLxHxK.shape
    kv_heads = k_BxLxKVxK.shape[2]
    group = heads // kv_heads
    q_BxKVxGxLxK = q_BxLxHxK.reshape(b, length, kv_heads, group, dim).transpose(0, 2, 3, 1, 4)
    k_BxKVxLxK = k_BxLxKVxK.transpose(0, 2, 1, 3)
    v_BxKVxLxK = v_BxLxKVxK.transpose(0, 2, 1, 3)
    outs = []
    for start in range(0, length, block):
        end = min(start + block, length)
        logits = jnp.einsum("bkgqd,bksd->bkgqs", q_BxKVxGxLxK[:, :, :, start:end],
                            k_BxKVxLxK[:, :, :end], preferred_element_type=jnp.float32) * _scale(scale, dim)
        mask_Bx1x1xQxS = mask_BxLxL[:, None, None, start:end, :end]
        logits = jnp.where(mask_Bx1x1xQxS, logits, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(logits, axis=-1).astype(v_BxLxKVxK.dtype)
        outs.append(jnp.einsum("bkgqs,bksd->bkgqd", probs, v_BxKVxLxK[:, :, :end]))
    out_BxKVxGxLxK = jnp.concatenate(outs, axis=3)
    return out_BxKVxGxLxK.transpose(0, 3, 1, 2, 4).reshape(b, length, heads, dim)


def attend_fused(q_BxLxHxK: jax.Array, k_BxSxKVxK: jax.Array, v_BxSxKVxK: jax.Array,
                 mask_BxLxS: jax.Array, implementation: str, scale: float | None = None) -> jax.Array:
    """`attend` through `jax.nn.dot_product_attention` ("xla" or "cudnn" kernels)."""
    return jax.nn.dot_product_attention(q_BxLxHxK, k_BxSxKVxK, v_BxSxKVxK, scale=scale,
                                        mask=mask_BxLxS[:, None], implementation=implementation)


def _scale(scale: float | None, dim: int) -> float:
    return 1.0 / math.sqrt(dim) if scale is None else scale


class KVCache(NamedTuple):
    """Keys and values of one layer for decoding; `index` is the next free slot."""

    k_BxSxKVxK: jax.Array
    v_BxSxKVxK: jax.Array
    index: jax.Array


class Attention(nnx.Module):
    """Multi-head attention with `num_kv_heads` grouped key/value heads and RoPE."""

    def __init__(self, *, d_model: int, num_heads: int, num_kv_heads: int, head_dim: int,
                 rope_theta: float, init_std: float, out_std: float,
                 param_dtype: jnp.dtype, compute_dtype: jnp.dtype, rngs: nnx.Rngs,
                 kernel: str = "einsum", block: int = 128, scale: float | None = None):
        init, out_init = nnx.initializers.normal(init_std), nnx.initializers.normal(out_std)
        d, h, kv, k = d_model, num_heads, num_kv_heads, head_dim
        self.kernel, self.block = kernel, block
        self.scale = scale  # on q.k; None: 1/sqrt(head_dim) (muP: lm.model.mup.attention_scale)
        self.wq = logical_param(rngs, init, (d, h, k), ("embed", "heads", "head_dim"), param_dtype)
        self.wk = logical_param(rngs, init, (d, kv, k), ("embed", "kv_heads", "head_dim"), param_dtype)
        self.wv = logical_param(rngs, init, (d, kv, k), ("embed", "kv_heads", "head_dim"), param_dtype)
        self.wo = logical_param(rngs, out_init, (h, k, d), ("heads", "head_dim", "embed"), param_dtype)
        self.rope_theta = rope_theta
        self.compute_dtype = compute_dtype

    def __call__(self, x_BxLxD: jax.Array, positions_BxL: jax.Array, segment_ids_BxL: jax.Array,
                 cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
        dt = self.compute_dtype
        q = project(x_BxLxD, self.wq[...].astype(dt))
        k = project(x_BxLxD, self.wk[...].astype(dt))
        v = project(x_BxLxD, self.wv[...].astype(dt))
        q = constrain(apply_rope(q, positions_BxL, self.rope_theta), ("batch", "seq", "heads", "head_dim"))
        k = constrain(apply_rope(k, positions_BxL, self.rope_theta), ("batch", "seq", "kv_heads", "head_dim"))
        v = constrain(v, ("batch", "seq", "kv_heads", "head_dim"))
        if cache is None:
            mask_BxLxS = attention_mask(segment_ids_BxL)
        else:
            cache = self._update_cache(cache, k, v)
            k, v = cache.k_BxSxKVxK, cache.v_BxSxKVxK
            key_pos_S = jnp.arange(k.shape[1])
            mask_BxLxS = key_pos_S[None, None, :] <= positions_BxL[:, :, None]
        if self.kernel == "blockwise" and cache is None:
            out = attend_blockwise(q, k, v, mask_BxLxS, self.block, self.scale)
        elif self.kernel in ("einsum", "blockwise"):
            out = attend(q, k, v, mask_BxLxS, self.scale)
        else:
            out = attend_fused(q, k, v, mask_BxLxS, self.kernel, self.scale)
        y = project(out, self.wo[...].astype(dt), contract=2)
        return y, cache

    @staticmethod
    def _update_cache(cache: KVCache, k: jax.Array, v: jax.Array) -> KVCache:
        start = (0, cache.index, 0, 0)
        return KVCache(jax.lax.dynamic_update_slice(cache.k_BxSxKVxK, k.astype(cache.k_BxSxKVxK.dtype), start),
                       jax.lax.dynamic_update_slice(cache.v_BxSxKVxK, v.astype(cache.v_BxSxKVxK.dtype), start),
                       cache.index + k.shape[1])


class MLP(nnx.Module):
    """SwiGLU feed-forward: down(silu(x W_gate) * (x W_up))."""

    def __init__(self, *, d_model: int, d_ff: int, init_std: float, out_std: float,
                 param_dtype: jnp.dtype, compute_dtype: jnp.dtype, rngs: nnx.Rngs):
        init, out_init = nnx.initializers.normal(init_std), nnx.initializers.normal(out_std)
        self.w_gate = logical_param(rngs, init, (d_model, d_ff), ("embed", "mlp"), param_dtype)
        self.w_up = logical_param(rngs, init, (d_model, d_ff), ("embed", "mlp"), param_dtype)
        self.w_down = logical_param(rngs, out_init, (d_ff, d_model), ("mlp", "embed"), param_dtype)
        self.compute_dtype = compute_dtype

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        dt = self.compute_dtype
        gate_BxLxF = project(x_BxLxD, self.w_gate[...].astype(dt))
        up_BxLxF = project(x_BxLxD, self.w_up[...].astype(dt))
        h_BxLxF = constrain(jax.nn.silu(gate_BxLxF) * up_BxLxF, ("batch", "seq", "mlp"))
        return project(h_BxLxF, self.w_down[...].astype(dt))
