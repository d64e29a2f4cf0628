"""The 1F1B pipeline schedule: a `jax.custom_vjp` whose backward pass is the schedule.

Under autodiff, GPipe keeps every layer's residuals of every microbatch until the backward
pass: activation memory grows with M. Here the schedule owns the backward pass instead:

    forward   the GPipe forward loop (M + S - 1 iterations); it keeps nothing but its input.
    backward  M + 2S - 2 iterations in three scans; at iteration t, stage s
                forward slot:  recomputes microbatch t - s from the activation the stage
                               above it sent, passes the output on, stashes the input;
                backward slot: differentiates microbatch t - (2S - 2 - s): recomputes its
                               forward from the stashed input (remat per stage), takes the
                               cotangent the stage below sent, passes the input's cotangent
                               up and adds the parameter gradients.
              warm-up: S - 1 iterations of forward slots only; steady state: M iterations of
              one forward and one backward slot each (each device alternates 1F, 1B);
              cool-down: S - 1 iterations of backward slots only.

A microbatch stays in a stage's stash from its forward slot to its backward slot: at most
2(S - 1 - s) + 1 iterations at stage s, so every stage keeps min(M, 2S - 1) stage inputs
(one array for all stages, sharded over `stage`), whatever M is. (Asynchronous 1F1B keeps
S - s: there a hop between neighbours takes one slot, here one lock-step iteration in each
direction.) Each stage's busy share is M / (M + S - 1), GPipe's bubble.

The layer stack's input and output cross from the forward to the backward pass, one
[B, L, D] activation each, because the loss is computed after the stack for the whole batch.
`stage_fn` must not close over traced arrays (their gradients would be lost): it gets
everything it differentiates as arguments.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lm.parallel.schedules import ACTIVATION, STAGED, StageFn, forward_loop, stage_parallel
from lm.parallel.sharding import constrain

STASH = ("layers", None, *ACTIVATION)  # [S, W, b, L, D]
BATCH = (None, *ACTIVATION)  # [M, b, L, D]


def forward_microbatch(t: Any, stage: Any) -> Any:
    """The microbatch stage `stage` runs forward at iteration t (idle unless 0 <= it < M)."""
    return t - stage


def backward_microbatch(t: Any, stage: Any, stages: int) -> Any:
    """The microbatch stage `stage` differentiates at iteration t of the backward pass."""
    return t - (2 * stages - 2 - stage)


def stash_slots(stages: int, microbatches: int) -> int:
    """Stage inputs each stage keeps between a microbatch's forward and backward slot."""
    return min(microbatches, 2 * stages - 1)


def phases(stages: int, microbatches: int) -> list[tuple[range, bool, bool]]:
    """The backward pass's scans: (iterations, runs forward slots, runs backward slots)."""
    s, m = stages, microbatches
    return [(range(0, s - 1), True, False), (range(s - 1, m + s - 1), True, True),
            (range(m + s - 1, m + 2 * s - 2), False, True)]


def run_1f1b(stage_fn: StageFn, params_S: Any, x_MxbxLxD: jax.Array, pos_Mxbxl: jax.Array,
             seg_Mxbxl: jax.Array) -> jax.Array:
    """Apply S stages to M microbatches; the gradient runs the 1F1B schedule.

    `params_S` is a pytree whose leaves have a leading stage axis [S, K, ...]; returns the
    stack's output [M, b, L, D].
    """
    leaves, treedef = jax.tree.flatten(params_S)
    s, m = leaves[0].shape[0], x_MxbxLxD.shape[0]
    run_stages = stage_parallel(lambda p, x, pos, seg: stage_fn(jax.tree.unflatten(treedef, p),
                                                                x, pos, seg))

    @jax.custom_vjp
    def pipeline(p, x, pos, seg):
        return forward_loop(run_stages, [a[:, None] for a in p], x, pos, seg)

    def forward(p, x, pos, seg):
        return pipeline(p, x, pos, seg), (p, x, pos, seg)

    def backward(saved, dy_MxbxLxD):
        return _backward(run_stages, s, m, *saved, dy_MxbxLxD)

    pipeline.defvjp(forward, backward)
    return pipeline(leaves, x_MxbxLxD, pos_Mxbxl, seg_Mxbxl)


def _backward(run_stages: StageFn, s: int, m: int, params: list, x_MxbxLxD: jax.Array,
              pos_Mxbxl: jax.Array, seg_Mxbxl: jax.Array, dy_MxbxLxD: jax.Array):
    """The 1F1B backward pass: (parameter cotangents, input cotangents, None, None)."""
    w = stash_slots(s, m)
    stages = jnp.arange(s)
    x_MxbxLxD, dy_MxbxLxD = constrain(x_MxbxLxD, BATCH), constrain(dy_MxbxLxD, BATCH)
    act = x_MxbxLxD.shape[1:]

    def per_stage(mask, ndim):  # [S] or [S, W] mask -> broadcastable against an array
        return mask.reshape(mask.shape + (1,) * (ndim - mask.ndim))

    def forward_slot(c, t):
        mb = forward_microbatch(t, stages)
        valid, mb = (mb >= 0) & (mb < m), jnp.clip(mb, 0, m - 1)
        first = constrain(x_MxbxLxD[jnp.clip(t, 0, m - 1)], ACTIVATION)
        inputs = constrain(jnp.concatenate([first[None], c["f"][:-1]], axis=0), STAGED)
        out = run_stages(params, inputs, pos_Mxbxl[mb], seg_Mxbxl[mb])
        write = (jnp.arange(w)[None, :] == (mb % w)[:, None]) & valid[:, None]  # [S, W]
        stash = jnp.where(per_stage(write, c["stash"].ndim), inputs[:, None], c["stash"])
        stash = constrain(stash, STASH)
        return {**c, "f": constrain(out, STAGED), "stash": stash}

    def backward_slot(c, t):
        mb = backward_microbatch(t, stages, s)
        valid, mb = (mb >= 0) & (mb < m), jnp.clip(mb, 0, m - 1)
        top = constrain(dy_MxbxLxD[jnp.clip(t - (s - 1), 0, m - 1)], ACTIVATION)  # last stage's
        g = constrain(jnp.concatenate([c["g"][1:], top[None]], axis=0), STAGED)
        read = jnp.arange(w)[None, :] == (mb % w)[:, None]  # exactly one slot per stage
        x_in = jnp.sum(jnp.where(per_stage(read, c["stash"].ndim), c["stash"], 0), axis=1)
        pos, seg = pos_Mxbxl[mb], seg_Mxbxl[mb]
        _, vjp = jax.vjp(lambda p, x: run_stages(p, x, pos, seg), params, x_in)
        d_params, d_in = vjp(g)
        grads = [acc + jnp.where(per_stage(valid, d.ndim), d, 0)
                 for acc, d in zip(c["grads"], d_params)]
        done = backward_microbatch(t, 0, s)  # stage 0's microbatch: its input cotangent is final
        i = jnp.clip(done, 0, m - 1)
        dx = constrain(c["dx"].at[i].set(jnp.where(done >= 0, d_in[0], c["dx"][i])), BATCH)
        return {**c, "g": constrain(d_in, STAGED), "grads": grads, "dx": dx}

    def body(do_forward, do_backward):
        def step(c, t):
            c = forward_slot(c, t) if do_forward else c
            return (backward_slot(c, t) if do_backward else c), None
        return step

    carry = {"f": jnp.zeros((s, *act), x_MxbxLxD.dtype),
             "g": jnp.zeros((s, *act), dy_MxbxLxD.dtype),
             "stash": jnp.zeros((s, w, *act), x_MxbxLxD.dtype),
             "grads": [jnp.zeros_like(a) for a in params],
             "dx": constrain(jnp.zeros_like(x_MxbxLxD), BATCH)}
    for iterations, do_forward, do_backward in phases(s, m):
        carry, _ = jax.lax.scan(body(do_forward, do_backward), carry,
                                jnp.arange(iterations.start, iterations.stop))
    return carry["grads"], carry["dx"], None, None
