"""The array plumbing every pipeline schedule shares, and the forward loop (GPipe, circular).

The decoder's blocks are stacked on a leading `layers` axis of size N. With S stages and
R repeats (virtual stages per device), the stack is viewed as [S, R, K] with K = N / (R S):
layer r*S*K + s*K + k runs on stage s in its r-th round. The batch is split into M
microbatches (microbatch m is rows m, m+M, m+2M, ... so every microbatch keeps the batch's
data/fsdp sharding). All stages run at once as one `vmap` over the stage dimension, which
the `layers -> stage` rule shards across devices; activations move one stage down per
iteration (a collective permute under the SPMD partitioner).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from lm.parallel.sharding import active_axes, constrain

# stage_fn(params_K, x_bxLxD, positions_bxL, segment_ids_bxL) applies K consecutive layers
StageFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]

ACTIVATION = ("batch", "seq", "embed")
STAGED = ("layers", *ACTIVATION)  # one activation per stage: [S, b, L, D]


def split_microbatches(a: jax.Array, microbatches: int) -> jax.Array:
    """[B, ...] -> [M, B/M, ...]; microbatch i holds rows i, i+M, i+2M, ..."""
    rows = a.shape[0] // microbatches
    return jnp.swapaxes(a.reshape(rows, microbatches, *a.shape[1:]), 0, 1)


def merge_microbatches(a: jax.Array) -> jax.Array:
    """The inverse of `split_microbatches`: [M, B/M, ...] -> [B, ...]."""
    return jnp.swapaxes(a, 0, 1).reshape(-1, *a.shape[2:])


def by_stage(layer_params: Any, stages: int, repeats: int) -> Any:
    """Every leaf [N, ...] -> [S, R, K, ...]: layer r*S*K + s*K + k at [s, r, k]."""

    def split(a):
        a = a.reshape(repeats, stages, a.shape[0] // (repeats * stages), *a.shape[1:])
        return jnp.swapaxes(a, 0, 1)

    return jax.tree.map(split, layer_params)


def stage_parallel(stage_fn: StageFn) -> StageFn:
    """`stage_fn` over a leading stage dimension of params, activations and token ids,
    sharded like the `layers` axis (each device runs its own stage)."""
    return jax.vmap(stage_fn, spmd_axis_name=active_axes("layers"))


def forward_loop(run_stages: StageFn, params_SxR: Any, x_MxbxLxD: jax.Array,
                 pos_Mxbxl: jax.Array, seg_Mxbxl: jax.Array) -> jax.Array:
    """The GPipe (R = 1) or circular (R > 1) forward schedule: R M + S - 1 iterations; at
    iteration t stage s works on microbatch (t - s) mod M in round (t - s) div M. Idle slots
    compute on stale data whose results are never used. Returns [M, b, L, D].

    `run_stages` is `stage_parallel(stage_fn)`; `params_SxR` comes from `by_stage`.
    """
    s, r = jax.tree.leaves(params_SxR)[0].shape[:2]
    m = x_MxbxLxD.shape[0]
    x_MxbxLxD = constrain(x_MxbxLxD, (None, *ACTIVATION))
    stages = jnp.arange(s)

    def iteration(carry, t):
        prev_out, buffer = carry
        first = jnp.where(t < m, x_MxbxLxD[t % m], buffer[t % m])
        inputs = constrain(jnp.concatenate([first[None], prev_out[:-1]], axis=0), STAGED)
        u = t - stages
        mb, rnd = u % m, jnp.clip(u // m, 0, r - 1)
        params = jax.tree.map(lambda a: jax.vmap(lambda p, i: p[i])(a, rnd), params_SxR)
        out = constrain(run_stages(params, inputs, pos_Mxbxl[mb], seg_Mxbxl[mb]), STAGED)
        done = t - (s - 1)
        slot = done % m
        buffer = buffer.at[slot].set(jnp.where(done >= 0, out[-1], buffer[slot]))
        return (out, buffer), None

    init = (jnp.zeros((s, *x_MxbxLxD.shape[1:]), x_MxbxLxD.dtype), jnp.zeros_like(x_MxbxLxD))
    (_, out_MxbxLxD), _ = jax.lax.scan(iteration, init, jnp.arange(r * m + s - 1))
    return out_MxbxLxD
