"""Per-device memory of a training config, from an ahead-of-time compile (`--compile-only`).

Nothing is allocated: parameters, optimizer state and the batch are abstract
(`jax.ShapeDtypeStruct` with their shardings), the train step is lowered and
compiled for the configured mesh, and XLA's buffer assignment reports the rest.

    parameters, optimizer state   exact bytes of each device's shards
    temporaries                   XLA's temp buffers: activations kept for the backward
                                  pass, gradients, collectives' buffers
    peak                          arguments + temporaries + outputs not aliased to inputs

To describe a pod from one machine, `lm train --compile-only --devices 256` compiles
for 256 simulated CPU devices (jax reads the count when it starts). CPU and GPU/TPU
compilers fuse differently, so temporaries are an estimate for the accelerator; the
parameter and optimizer-state figures are exact. `--topology v5p:4x4x4` compiles the
same step with the TPU compiler instead (lm.train.tpu_compile). Both also count the
step's collectives (lm.train.hlo).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from lm.parallel.sharding import use_mesh_rules
from lm.model.sharded_init import abstract_model
from lm.parallel.pipeline import Pipeline
from lm.parallel.rules import batch_sharding, param_shardings, replicated, train_state_shardings
from lm.parallel.setup import Parallelism, parallelism_from_config
from lm.scaling.counts import param_counts
from lm.train.hlo import collectives_table, count_collectives
from lm.train.optim import make_optimizer
from lm.train.step import init_train_state, jit_train_step

MIB = 1024 ** 2


@dataclass(frozen=True)
class MemoryReport:
    devices: int
    mesh: dict[str, int]
    pipeline: str
    params: int
    param_bytes: int
    opt_state_bytes: int
    temp_bytes: int
    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    compile_seconds: float
    # per-step counts and per-device bytes of each collective kind (lm.train.hlo)
    collectives: dict[str, dict[str, int]] = field(default_factory=dict)
    unread_loops: int = 0  # while loops of unread trip count (their collectives counted once)

    @property
    def peak_bytes(self) -> int:
        return self.argument_bytes + self.temp_bytes + self.output_bytes - self.alias_bytes

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak_bytes": self.peak_bytes}

    def rows(self) -> list[tuple[str, int]]:
        return [("parameters", self.param_bytes), ("optimizer state", self.opt_state_bytes),
                ("temporaries (activations, grads)", self.temp_bytes),
                ("peak (args + temps + unaliased outputs)", self.peak_bytes)]

    def describe_mesh(self) -> str:
        return " x ".join(f"{k} {v}" for k, v in self.mesh.items() if v > 1) or "one device"

    def table(self) -> str:
        lines = [f"[memory] {self.params:,} parameters on {self.devices} devices "
                 f"({self.describe_mesh()}; pipeline: {self.pipeline}); "
                 f"compiled in {self.compile_seconds:.1f} s",
                 f"{'per device':<42}{'MiB':>12}"]
        lines += [f"{name:<42}{value / MIB:>12,.1f}" for name, value in self.rows()]
        if self.collectives:
            lines.append(collectives_table(self.collectives))
        return "\n".join(lines)


def _shard_bytes(abstract: Any, shardings: Any) -> int:
    """Bytes of one device's shards of every leaf (shards are equal-sized)."""
    leaves = zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings))
    return sum(math.prod(sh.shard_shape(a.shape)) * jnp.dtype(a.dtype).itemsize for a, sh in leaves)


@dataclass(frozen=True)
class CompiledStep:
    """The train step lowered (and compiled) ahead of time, with what it was built for."""
    compiled: Any  # jax.stages.Compiled; None until `compile_lowered`
    lowered: Any  # jax.stages.Lowered: the program before partitioning and optimisation
    layout: Parallelism
    params: Any  # abstract parameters (ShapeDtypeStructs)
    param_shardings: Any
    state: Any  # abstract train state, shardings attached
    state_shardings: Any
    seconds: float


def compile_train_step(cfg: ml_collections.ConfigDict,
                       devices: Sequence[jax.Device] | None = None) -> CompiledStep:
    """Compile `cfg`'s train step -- the trainer's `jit_train_step`, its shardings and its
    arguments (state, batch, spike limits) -- for `cfg`'s mesh over `devices` (default: the
    visible ones; or a TPU topology's compile-only devices, lm.train.tpu_compile)."""
    return compile_lowered(lower_train_step(cfg, devices))


def compile_lowered(step: CompiledStep) -> CompiledStep:
    start = time.perf_counter()
    compiled = step.lowered.compile()
    return replace(step, compiled=compiled, seconds=step.seconds + time.perf_counter() - start)


def lower_train_step(cfg: ml_collections.ConfigDict,
                     devices: Sequence[jax.Device] | None = None) -> CompiledStep:
    """`compile_train_step` up to the compile: the lowered step and its sharded arguments."""
    m, t = cfg.model, cfg.train
    layout = parallelism_from_config(cfg, devices)
    mesh, rules, pipeline = layout.mesh, layout.rules, layout.pipeline
    model = abstract_model(m, t.seed)
    graphdef, state = nnx.split(model)
    params = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), state.to_pure_dict())
    param_sh = param_shardings(model, mesh, rules)
    optimizer = make_optimizer(t, params, m)
    state_sh = train_state_shardings(optimizer, params, param_sh, mesh)
    abstract_state = jax.eval_shape(lambda p: init_train_state(p, optimizer), params)
    abstract_state = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                                  abstract_state, state_sh)
    batch_sh = batch_sharding(mesh, rules)
    token = jax.ShapeDtypeStruct((t.batch_size, cfg.data.seq_len), jnp.int32, sharding=batch_sh)
    batch = {k: token for k in ("inputs", "targets", "positions", "segment_ids")}
    scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=replicated(mesh))
    limits = {"loss": scalar, "grad_norm": scalar}  # as lm.train.loop passes them
    start = time.perf_counter()
    with use_mesh_rules(mesh, rules):
        step = jit_train_step(graphdef, optimizer, t, pipeline, out_shardings=(state_sh, None),
                              in_shardings=(state_sh, batch_sh, replicated(mesh)))
        lowered = step.lower(abstract_state, batch, limits)
    return CompiledStep(None, lowered, layout, params, param_sh, abstract_state, state_sh,
                        time.perf_counter() - start)


def describe_pipeline(pipeline: Pipeline | None) -> str:
    return ("none" if pipeline is None else
            f"{pipeline.stages} stages x {pipeline.microbatches} microbatches x "
            f"{pipeline.repeats} repeats, bubble {pipeline.bubble_fraction:.1%}")


def compile_memory_report(cfg: ml_collections.ConfigDict,
                          devices: Sequence[jax.Device] | None = None,
                          step: CompiledStep | None = None) -> MemoryReport:
    """Compile `cfg`'s train step for its mesh (on `devices`, default the visible ones) and
    report per-device memory; `step` reuses a compile."""
    step = step or compile_train_step(cfg, devices)
    mesh = step.layout.mesh
    report = MemoryReport(
        devices=mesh.size, mesh={k: int(v) for k, v in mesh.shape.items()},
        pipeline=describe_pipeline(step.layout.pipeline),
        params=param_counts(cfg.model).total,
        param_bytes=_shard_bytes(step.params, step.param_shardings),
        opt_state_bytes=_shard_bytes(step.state["opt_state"], step.state_shardings["opt_state"]),
        temp_bytes=0, argument_bytes=0, output_bytes=0, alias_bytes=0,
        compile_seconds=step.seconds)
    if step.compiled is None:  # lowered only (the compile failed): the state's shards alone
        return report
    analysis = step.compiled.memory_analysis()
    collectives, unread_loops = count_collectives(step.compiled.as_text())
    return replace(
        report, temp_bytes=int(analysis.temp_size_in_bytes),
        argument_bytes=int(analysis.argument_size_in_bytes),
        output_bytes=int(analysis.output_size_in_bytes),
        alias_bytes=int(analysis.alias_size_in_bytes),
        collectives={kind: stats.as_dict() for kind, stats in collectives.items()},
        unread_loops=unread_loops)
