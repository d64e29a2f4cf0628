"""Pipeline parallelism over the `stage` mesh axis: the GPipe, circular and 1F1B schedules.

`Pipeline` is the layer-stack runner the decoder is handed: `pipeline.run(stage_fn,
layer_params, x, positions, segment_ids)` applies the stacked layers through the schedule,
and equals applying them in order. The schedules (S stages, M microbatches, R repeats):

    gpipe     (R = 1):  forward and autodiff backward loops of M + S - 1 iterations each;
                        bubble (S - 1) / (M + S - 1); keeps every microbatch's layer
                        residuals until the backward pass (memory grows with M)
    circular  (R > 1):  R M + S - 1 iterations, bubble (S - 1) / (R M + S - 1); needs M >= S
    1f1b      (R = 1):  GPipe's forward loop; the backward pass is the 1F1B schedule
                        (lm/parallel/one_f_one_b.py), GPipe's bubble, and keeps
                        min(M, 2S - 1) stage inputs per stage, whatever M is

Idle slots compute on stale data and their results are discarded (the bubble costs time,
not correctness). Costs: with R > 1 the [N] layer stack, sharded in contiguous chunks, is
re-laid out as [S, R, K] once per step (an all-to-all of the block parameters); the
embedding, final norm, head and loss are not pipelined and run replicated across stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from lm.parallel.one_f_one_b import (backward_microbatch, forward_microbatch, phases, run_1f1b,
                                     stash_slots)
from lm.parallel.schedules import (ACTIVATION, StageFn, by_stage, forward_loop,
                                   merge_microbatches, split_microbatches, stage_parallel)
from lm.parallel.sharding import constrain

SCHEDULES = ("gpipe", "circular", "1f1b")


class PipelineError(ValueError):
    """A pipeline setting that cannot work; the message names the field and the fix."""


@dataclass(frozen=True)
class Pipeline:
    """A pipeline schedule: `stages` (mesh.stage), `microbatches`, `repeats` and `schedule`
    (one of SCHEDULES; "auto": circular when repeats > 1, else gpipe)."""

    stages: int
    microbatches: int
    repeats: int = 1
    schedule: str = "auto"

    def __post_init__(self) -> None:
        if self.schedule == "auto":
            object.__setattr__(self, "schedule", "circular" if self.repeats > 1 else "gpipe")
        if self.schedule not in SCHEDULES:
            raise PipelineError(f"pipeline.schedule={self.schedule!r} is not one of "
                                f"auto, {', '.join(SCHEDULES)}")
        if (self.schedule == "circular") != (self.repeats > 1):
            raise PipelineError(f"pipeline.schedule={self.schedule!r} does not go with "
                                f"pipeline.repeats={self.repeats}: circular needs repeats > 1, "
                                "gpipe and 1f1b need repeats=1")

    @property
    def iterations(self) -> int:
        """Iterations of the forward loop (and of GPipe's backward loop)."""
        return self.repeats * self.microbatches + self.stages - 1

    @property
    def bubble_fraction(self) -> float:
        """Idle share of stage slots: (S - 1) / (R M + S - 1), for every schedule."""
        return (self.stages - 1) / self.iterations

    @property
    def stash(self) -> int:
        """1F1B: microbatch stage inputs each stage keeps during the backward pass."""
        return stash_slots(self.stages, self.microbatches)

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
        """[iterations, stages] array: the microbatch each stage works on in the forward
        loop, -1 when idle."""
        t = np.arange(self.iterations)[:, None]
        u = t - np.arange(self.stages)[None, :]
        busy = (u >= 0) & (u < self.repeats * self.microbatches)
        return np.where(busy, u % self.microbatches, -1)

    def backward_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """1F1B: two [M + 2S - 2, stages] arrays, the microbatch each stage runs in its
        forward and in its backward slot at each iteration of the backward pass; -1 idle,
        -2 where the phase runs no such slot (forward in cool-down, backward in warm-up)."""
        s, m = self.stages, self.microbatches
        stage, off = np.arange(s), np.full(s, -2)
        busy = lambda mb: np.where((mb >= 0) & (mb < m), mb, -1)
        forward, backward = [], []
        for iterations, runs_forward, runs_backward in phases(s, m):
            for t in iterations:
                forward.append(busy(forward_microbatch(t, stage)) if runs_forward else off)
                backward.append(busy(backward_microbatch(t, stage, s)) if runs_backward else off)
        return np.array(forward).reshape(-1, s), np.array(backward).reshape(-1, s)

    def run(self, stage_fn: StageFn, layer_params: Any, x_BxLxD: jax.Array,
            positions_BxL: jax.Array, segment_ids_BxL: jax.Array) -> jax.Array:
        """Apply the layer stack to `x` through this schedule; equals applying it in order.

        `layer_params` is a pytree whose leaves have a leading `layers` axis of size N;
        `stage_fn(params_K, x, positions, segment_ids)` applies K consecutive layers.
        """
        m = self.microbatches
        x_MxbxLxD = constrain(split_microbatches(x_BxLxD, m), (None, *ACTIVATION))
        pos_Mxbxl = split_microbatches(positions_BxL, m)
        seg_Mxbxl = split_microbatches(segment_ids_BxL, m)
        params_SxR = by_stage(layer_params, self.stages, self.repeats)
        if self.schedule == "1f1b":
            params_S = jax.tree.map(lambda a: a[:, 0], params_SxR)
            out_MxbxLxD = run_1f1b(stage_fn, params_S, x_MxbxLxD, pos_Mxbxl, seg_Mxbxl)
        else:
            out_MxbxLxD = forward_loop(stage_parallel(stage_fn), params_SxR, x_MxbxLxD,
                                       pos_Mxbxl, seg_Mxbxl)
        return constrain(merge_microbatches(out_MxbxLxD), ACTIVATION)


def measured_bubble_fraction(pipeline: Pipeline) -> float:
    """Idle share of the stage slots the schedule runs: the forward loop's (which GPipe's
    and circular's autodiff backward loops mirror), or for 1F1B its backward pass's."""
    if pipeline.schedule != "1f1b":
        return float(np.mean(pipeline.slots() < 0))
    run = np.concatenate(pipeline.backward_slots())
    return float(np.sum(run == -1) / np.sum(run >= -1))
