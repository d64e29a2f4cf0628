"""From a config to a ready layout: the mesh, the sharding rules and the pipeline schedule.

`parallelism_from_config` is what `lm train` (and `--compile-only`) call; every
impossible combination fails here, before anything is compiled, with a ConfigError
naming the field to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jax
import ml_collections
from jax.sharding import Mesh

from lm.config_checks import MESH_AXES
from lm.errors import ConfigError
from lm.parallel.sharding import Rules
from lm.parallel.mesh import make_mesh
from lm.parallel.pipeline import Pipeline, PipelineError
from lm.parallel.rules import batch_ways, check_batch_divisible, rules_from_config


@dataclass(frozen=True)
class Parallelism:
    mesh: Mesh
    rules: Rules
    pipeline: Pipeline | None  # None when mesh.stage == 1


def parallelism_from_config(cfg: ml_collections.ConfigDict,
                            devices: Sequence[jax.Device] | None = None) -> Parallelism:
    """The mesh over `devices` (default: all), rules and pipeline of `cfg`, checked."""
    sizes = {axis: cfg.mesh[axis] for axis in MESH_AXES}
    try:
        mesh = make_mesh(sizes, devices, dcn_sizes=dict(cfg.mesh.dcn))
    except ValueError as err:
        raise ConfigError(f"config section 'mesh': {err}") from err
    rules = rules_from_config(cfg.mesh.rules)
    rows = cfg.train.batch_size // cfg.train.grad_accum
    try:
        check_batch_divisible(rows, mesh, rules)
    except ValueError as err:
        raise ConfigError(f"config field 'train.batch_size': {err} (per gradient-accumulation "
                          f"step; train.grad_accum={cfg.train.grad_accum})") from err
    stages = mesh.shape["stage"]
    if stages == 1:
        return Parallelism(mesh, rules, None)
    if rules.get("layers") != "stage":
        raise ConfigError(f"config field 'mesh.rules.layers': a pipeline over mesh.stage={stages} "
                          f"needs layers -> ('stage',), got {rules.get('layers')!r}")
    try:
        pipeline = Pipeline(stages, cfg.pipeline.microbatches or stages, cfg.pipeline.repeats,
                            cfg.pipeline.schedule)
        pipeline.check(cfg.model.num_layers, rows, batch_ways(mesh, rules))
    except PipelineError as err:
        raise ConfigError(f"config section 'pipeline': {err}") from err
    return Parallelism(mesh, rules, pipeline)
