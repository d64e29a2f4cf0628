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
parameter and optimizer-state figures are exact.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from lm.parallel.sharding import use_mesh_rules
from lm.model.sharded_init import abstract_model
from lm.parallel.rules import batch_sharding, param_shardings, train_state_shardings
from lm.parallel.setup import parallelism_from_config
from lm.scaling.counts import param_counts
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

    @property
    def peak_bytes(self) -> int:
        return self.argument_bytes + self.temp_bytes + self.output_bytes - self.alias_bytes

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak_bytes": self.peak_bytes}

    def table(self) -> str:
        rows = [("parameters", self.param_bytes), ("optimizer state", self.opt_state_bytes),
                ("temporaries (activations, grads)", self.temp_bytes),
                ("peak (args + temps + unaliased outputs)", self.peak_bytes)]
        mesh = " x ".join(f"{k} {v}" for k, v in self.mesh.items() if v > 1) or "one device"
        lines = [f"[memory] {self.params:,} parameters on {self.devices} devices ({mesh}; "
                 f"pipeline: {self.pipeline}); compiled in {self.compile_seconds:.1f} s",
                 f"{'per device':<42}{'MiB':>12}"]
        lines += [f"{name:<42}{value / MIB:>12,.1f}" for name, value in rows]
        return "\n".join(lines)


def _shard_bytes(abstract: Any, shardings: Any) -> int:
    """Bytes of one device's shards of every leaf (shards are equal-sized)."""
    leaves = zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings))
    return sum(math.prod(sh.shard_shape(a.shape)) * jnp.dtype(a.dtype).itemsize for a, sh in leaves)


def compile_memory_report(cfg: ml_collections.ConfigDict) -> MemoryReport:
    """Compile `cfg`'s train step for its mesh on the visible devices and report memory."""
    m, t = cfg.model, cfg.train
    layout = parallelism_from_config(cfg)
    mesh, rules, pipeline = layout.mesh, layout.rules, layout.pipeline
    model = abstract_model(m, t.seed)
    graphdef, state = nnx.split(model)
    params = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), state.to_pure_dict())
    param_sh = param_shardings(model, mesh, rules)
    optimizer = make_optimizer(t, params)
    state_sh = train_state_shardings(optimizer, params, param_sh, mesh)
    abstract_state = jax.eval_shape(lambda p: init_train_state(p, optimizer), params)
    abstract_state = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                                  abstract_state, state_sh)
    batch_sh = batch_sharding(mesh, rules)
    token = jax.ShapeDtypeStruct((t.batch_size, cfg.data.seq_len), jnp.int32, sharding=batch_sh)
    batch = {k: token for k in ("inputs", "targets", "positions", "segment_ids")}
    start = time.perf_counter()
    with use_mesh_rules(mesh, rules):
        step = jit_train_step(graphdef, optimizer, t, pipeline,
                              in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None))
        compiled = step.lower(abstract_state, batch).compile()
    seconds = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    describe = ("none" if pipeline is None else
                f"{pipeline.stages} stages x {pipeline.microbatches} microbatches x "
                f"{pipeline.repeats} repeats, bubble {pipeline.bubble_fraction:.1%}")
    return MemoryReport(
        devices=mesh.size, mesh={k: int(v) for k, v in mesh.shape.items()}, pipeline=describe,
        params=param_counts(m).total,
        param_bytes=_shard_bytes(params, param_sh),
        opt_state_bytes=_shard_bytes(abstract_state["opt_state"], state_sh["opt_state"]),
        temp_bytes=int(analysis.temp_size_in_bytes),
        argument_bytes=int(analysis.argument_size_in_bytes),
        output_bytes=int(analysis.output_size_in_bytes),
        alias_bytes=int(analysis.alias_size_in_bytes),
        compile_seconds=seconds)
