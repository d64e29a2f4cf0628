"""Pipeline parallelism over the `stage` mesh axis: GPipe and circular schedules.

The decoder's blocks are stacked on a leading `layers` axis of size N. With S stages
and R repeats (virtual stages per device), the stack is viewed as [R, S, K] with
K = N / (R S): layer r*S*K + s*K + k runs on stage s in its r-th round. The batch is
split into M microbatches (microbatch m is rows m, m+M, m+2M, ... so every microbatch
keeps the batch's data/fsdp sharding). At iteration t, stage s works on microbatch
(t - s) mod M in round (t - s) div M; all stages run at once as one `vmap` over the
stage dimension, which the `layers -> stage` rule shards across devices, and the
activations move one stage down per iteration (a collective permute under the SPMD
partitioner). The last stage's outputs land in a buffer of M microbatches that
feeds stage 0's next round (circular) and holds the final outputs.

    GPipe (R = 1):     iterations M + S - 1, bubble (S - 1) / (M + S - 1)
    circular (R > 1):  iterations R M + S - 1, bubble (S - 1) / (R M + S - 1); needs M >= S

Idle slots compute on stale data and their results are discarded (the bubble costs
time, not correctness). Gradients flow through the schedule by autodiff, so
activation memory is GPipe's: every microbatch's stage inputs live until the
backward pass (less with `model.remat`). 1F1B is not implemented.

Costs: with R > 1 the [N] layer stack, sharded in contiguous chunks, is re-laid out as
[S, R, K] once per step (an all-to-all of the block parameters); the embedding, final
norm, head and loss are not pipelined and run replicated across stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lm.parallel.sharding import active_axes, constrain

StageFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


class PipelineError(ValueError):
    """A pipeline setting that cannot work; the message names the field and the fix."""


@dataclass(frozen=True)
class Pipeline:
    """A pipeline schedule: `stages` (mesh.stage), `microbatches` and `repeats`."""

    stages: int
    microbatches: int
    repeats: int = 1

    @property
    def iterations(self) -> int:
        return self.repeats * self.microbatches + self.stages - 1

    @property
    def bubble_fraction(self) -> float:
        """Idle share of stage-iterations: (S - 1) / (R M + S - 1)."""
        return (self.stages - 1) / self.iterations

    def check(self, num_layers: int, batch_rows: int, batch_ways: int = 1) -> None:
        """Raise PipelineError unless this schedule fits the model and the batch.

        `batch_rows` is the rows of one forward pass (batch_size / grad_accum) and
        `batch_ways` the number of ways each microbatch is split over data and fsdp.
        """
        s, m, r = self.stages, self.microbatches, self.repeats
        if min(s, m, r) < 1:
            raise PipelineError(f"stages={s}, microbatches={m} and repeats={r} must be positive")
        if num_layers % (s * r):
            raise PipelineError(
                f"model.num_layers={num_layers} does not split into mesh.stage={s} x "
                f"pipeline.repeats={r} equal parts; choose stage x repeats dividing {num_layers}")
        if r > 1 and m < s:
            raise PipelineError(
                f"a circular pipeline (pipeline.repeats={r}) needs pipeline.microbatches >= "
                f"mesh.stage, got {m} < {s}; raise pipeline.microbatches")
        if batch_rows % (m * batch_ways):
            raise PipelineError(
                f"{batch_rows} rows per forward pass (train.batch_size / train.grad_accum) do not "
                f"split into pipeline.microbatches={m} microbatches of a multiple of {batch_ways} "
                f"rows (the data x fsdp ways); change the batch size or the microbatches")

    def slots(self) -> np.ndarray:
        """[iterations, stages] array: the microbatch each stage works on, -1 when idle."""
        t = np.arange(self.iterations)[:, None]
        u = t - np.arange(self.stages)[None, :]
        busy = (u >= 0) & (u < self.repeats * self.microbatches)
        return np.where(busy, u % self.microbatches, -1)


def measured_bubble_fraction(pipeline: Pipeline) -> float:
    """Idle share of the stage-iterations in the schedule `run_pipeline` executes."""
    return float(np.mean(pipeline.slots() < 0))


def run_pipeline(stage_fn: StageFn, layer_params: Any, x_BxLxD: jax.Array,
                 positions_BxL: jax.Array, segment_ids_BxL: jax.Array,
                 pipeline: Pipeline) -> jax.Array:
    """Apply the layer stack to `x` through the pipeline; equals applying it in order.

    `layer_params` is a pytree whose leaves have a leading `layers` axis of size N;
    `stage_fn(params_K, x, positions, segment_ids)` applies K consecutive layers.
    """
    s, m, r = pipeline.stages, pipeline.microbatches, pipeline.repeats
    batch = x_BxLxD.shape[0]
    rows = batch // m

    def microbatches(a):  # [B, ...] -> [M, B/M, ...]; microbatch i holds rows i, i+M, ...
        return jnp.swapaxes(a.reshape(rows, m, *a.shape[1:]), 0, 1)

    x_MxbxLxD = constrain(microbatches(x_BxLxD), (None, "batch", "seq", "embed"))
    pos_Mxbxl, seg_Mxbxl = microbatches(positions_BxL), microbatches(segment_ids_BxL)

    def by_stage(a):  # [N, ...] -> [S, R, K, ...]
        a = a.reshape(r, s, a.shape[0] // (r * s), *a.shape[1:])
        return jnp.swapaxes(a, 0, 1)

    params_SxR = jax.tree.map(by_stage, layer_params)
    stage_axis = active_axes("layers")
    run_stages = jax.vmap(stage_fn, spmd_axis_name=stage_axis)
    stages = jnp.arange(s)

    def iteration(carry, t):
        prev_out, buffer = carry
        first = jnp.where(t < m, x_MxbxLxD[t % m], buffer[t % m])
        inputs = jnp.concatenate([first[None], prev_out[:-1]], axis=0)
        inputs = constrain(inputs, ("layers", "batch", "seq", "embed"))
        u = t - stages
        mb, rnd = u % m, jnp.clip(u // m, 0, r - 1)
        params = jax.tree.map(lambda a: jax.vmap(lambda p, i: p[i])(a, rnd), params_SxR)
        out = run_stages(params, inputs, pos_Mxbxl[mb], seg_Mxbxl[mb])
        out = constrain(out, ("layers", "batch", "seq", "embed"))
        done = t - (s - 1)
        slot = done % m
        buffer = buffer.at[slot].set(jnp.where(done >= 0, out[-1], buffer[slot]))
        return (out, buffer), None

    init = (jnp.zeros((s, *x_MxbxLxD.shape[1:]), x_BxLxD.dtype), jnp.zeros_like(x_MxbxLxD))
    (_, out_MxbxLxD), _ = jax.lax.scan(iteration, init, jnp.arange(pipeline.iterations))
    out_BxLxD = jnp.swapaxes(out_MxbxLxD, 0, 1).reshape(batch, *x_BxLxD.shape[1:])
    return constrain(out_BxLxD, ("batch", "seq", "embed"))
