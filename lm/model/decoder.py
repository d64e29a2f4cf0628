"""The LLaMA-style decoder: embeddings, a scanned stack of pre-norm blocks, final norm, head."""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from lm.config import head_dim
from lm.model import mup
from lm.model.layers import MLP, Attention, KVCache, RMSNorm, logical_param, project
from lm.parallel.sharding import constrain

REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    # Keep the projection matmuls, recompute attention and elementwise work.
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def remat_unroll(scan_unroll: int, num_layers: int) -> int:
    """Layers per scan iteration under remat: at most half the stack, so the scan stays a
    loop of two or more iterations. Unrolled into straight-line code (one iteration or
    none), XLA schedules the recomputation next to the forward pass and keeps every
    activation anyway: remat then saves no memory (measured: small preset, 8 layers,
    temporaries 1,439 MiB with remat none, full or dots when fully unrolled; 764 MiB
    with full remat at unroll 4, 414 MiB at unroll 1)."""
    return max(1, min(scan_unroll, num_layers // 2))


class LayerRunner(Protocol):
    """Runs the stacked blocks another way than the plain layer scan (a pipeline schedule,
    `lm.parallel.pipeline.Pipeline`): `stage_fn(params_K, x, positions, segment_ids)` applies
    K consecutive layers, `layer_params` has a leading `layers` axis; the result must equal
    applying every layer in order."""

    def run(self, stage_fn: Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array],
            layer_params: Any, x_BxLxD: jax.Array, positions_BxL: jax.Array,
            segment_ids_BxL: jax.Array) -> jax.Array: ...


class Block(nnx.Module):
    """One pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, m: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        pdt, cdt = jnp.dtype(m.param_dtype), jnp.dtype(m.compute_dtype)
        std = mup.hidden_init_std(m, m.init_std)  # m.init_std under SP
        out_std = std / math.sqrt(2 * m.num_layers)
        self.attn_norm = RMSNorm(m.d_model, eps=m.norm_eps, param_dtype=pdt)
        self.attn = Attention(d_model=m.d_model, num_heads=m.num_heads, num_kv_heads=m.num_kv_heads,
                              head_dim=head_dim(m), rope_theta=m.rope_theta, init_std=std,
                              out_std=out_std, param_dtype=pdt, compute_dtype=cdt, rngs=rngs,
                              kernel=m.attention, block=m.attention_block,
                              scale=mup.attention_scale(m))
        self.mlp_norm = RMSNorm(m.d_model, eps=m.norm_eps, param_dtype=pdt)
        self.mlp = MLP(d_model=m.d_model, d_ff=m.d_ff, init_std=std, out_std=out_std,
                       param_dtype=pdt, compute_dtype=cdt, rngs=rngs)

    def __call__(self, x_BxLxD: jax.Array, positions_BxL: jax.Array, segment_ids_BxL: jax.Array,
                 cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
        x_BxLxD, cache, _ = self.with_branches(x_BxLxD, positions_BxL, segment_ids_BxL, cache)
        return x_BxLxD, cache

    def with_branches(self, x_BxLxD: jax.Array, positions_BxL: jax.Array, segment_ids_BxL: jax.Array,
                      cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None, dict]:
        """The block's output and cache, and its two residual branches' outputs {"attn", "mlp"}
        (what the muP coordinate check measures)."""
        attn_BxLxD, cache = self.attn(self.attn_norm(x_BxLxD), positions_BxL, segment_ids_BxL, cache)
        x_BxLxD = constrain(x_BxLxD + attn_BxLxD, ("batch", "seq", "embed"))
        mlp_BxLxD = self.mlp(self.mlp_norm(x_BxLxD))
        x_BxLxD = constrain(x_BxLxD + mlp_BxLxD, ("batch", "seq", "embed"))
        return x_BxLxD, cache, {"attn": attn_BxLxD, "mlp": mlp_BxLxD}


class Decoder(nnx.Module):
    """Decoder-only transformer; blocks are stacked on a leading `layers` axis and scanned."""

    def __init__(self, m: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        pdt = jnp.dtype(m.param_dtype)
        self.compute_dtype = jnp.dtype(m.compute_dtype)
        self.remat = m.remat
        self.scan_unroll = m.scan_unroll
        self.output_multiplier = mup.output_multiplier(m)  # 1 under SP
        init = nnx.initializers.normal(m.init_std)
        self.embed = logical_param(rngs, init, (m.vocab_size, m.d_model), ("vocab", "embed"), pdt)

        @nnx.split_rngs(splits=m.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def stacked_blocks(rngs: nnx.Rngs) -> Block:
            return Block(m, rngs=rngs)

        self.blocks = stacked_blocks(rngs)
        self.final_norm = RMSNorm(m.d_model, eps=m.norm_eps, param_dtype=pdt)
        self.head = (None if m.tie_embeddings else
                     logical_param(rngs, init, (m.d_model, m.vocab_size), ("embed", "vocab"), pdt))

    def __call__(self, tokens_BxL: jax.Array, positions_BxL: jax.Array,
                 segment_ids_BxL: jax.Array, runner: LayerRunner | None = None) -> jax.Array:
        """Float32 logits [B, L, vocab] for packed sequences (segment 0 is padding).

        With `runner` (a pipeline schedule), the blocks run through `runner.run`.
        """
        return self.logits(self.hidden(tokens_BxL, positions_BxL, segment_ids_BxL, runner))

    def hidden(self, tokens_BxL: jax.Array, positions_BxL: jax.Array,
               segment_ids_BxL: jax.Array, runner: LayerRunner | None = None) -> jax.Array:
        """The final-norm hidden states [B, L, D] (what the head turns into logits)."""
        x_BxLxD, _ = self._forward(tokens_BxL, positions_BxL, segment_ids_BxL, None, runner)
        return x_BxLxD

    def head_matrix(self) -> jax.Array:
        """The output projection [D, vocab] in the compute dtype (the embedding's transpose when
        tied), times muP's output multiplier."""
        head_DxV = self.embed[...].T if self.head is None else self.head[...]
        if self.output_multiplier != 1.0:
            head_DxV = head_DxV * self.output_multiplier
        return head_DxV.astype(self.compute_dtype)

    def logits(self, x_BxLxD: jax.Array) -> jax.Array:
        """Float32 logits of hidden states."""
        logits = project(x_BxLxD, self.head_matrix(), preferred_element_type=jnp.float32)
        return constrain(logits, ("batch", "seq", "vocab"))

    def decode(self, tokens_BxL: jax.Array, positions_BxL: jax.Array,
               cache: KVCache) -> tuple[jax.Array, KVCache]:
        """Logits for new tokens at absolute `positions`, attending to and extending `cache`.

        `cache` holds every layer stacked on a leading axis (see `init_cache`).
        """
        segment_ids_BxL = jnp.ones_like(tokens_BxL)
        x_BxLxD, cache = self._forward(tokens_BxL, positions_BxL, segment_ids_BxL, cache)
        return self.logits(x_BxLxD), cache

    def init_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty KV cache for `batch` sequences of up to `max_len` tokens."""
        wk = self.blocks.attn.wk
        layers, _, kv_heads, dim = wk.shape
        zeros = jnp.zeros((layers, batch, max_len, kv_heads, dim), self.compute_dtype)
        return KVCache(zeros, zeros, jnp.zeros((layers,), jnp.int32))

    def _forward(self, tokens_BxL, positions_BxL, segment_ids_BxL, cache, runner=None):
        dt = self.compute_dtype
        # FSDP: gather the table's embed dim before the lookup (the batch uses that mesh axis)
        table_VxD = constrain(self.embed[...].astype(dt), ("vocab", None))
        x_BxLxD = jnp.take(table_VxD, tokens_BxL, axis=0)
        x_BxLxD = constrain(x_BxLxD, ("batch", "seq", "embed"))
        block_def, block_state = nnx.split(self.blocks)

        def apply_layers(state, x, positions, segment_ids, layer_cache):
            def layer(x, layer_inputs):
                return nnx.merge(block_def, layer_inputs[0])(x, positions, segment_ids, layer_inputs[1])

            unroll = self.scan_unroll
            if self.remat != "none":
                layer = jax.checkpoint(layer, policy=REMAT_POLICIES[self.remat], prevent_cse=False)
                unroll = remat_unroll(unroll, jax.tree.leaves(state)[0].shape[0])
            return jax.lax.scan(layer, x, (state, layer_cache), unroll=unroll)

        if runner is None or cache is not None:
            x_BxLxD, cache = apply_layers(block_state, x_BxLxD, positions_BxL, segment_ids_BxL, cache)
        else:
            stage = lambda state, x, pos, seg: apply_layers(state, x, pos, seg, None)[0]
            x_BxLxD = runner.run(stage, block_state, x_BxLxD, positions_BxL, segment_ids_BxL)
        return self.final_norm(x_BxLxD), cache
