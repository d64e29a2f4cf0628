"""Logical-to-mesh rules, and the shardings of parameters, optimizer state and batches.

Parameters carry logical axis names (their `out_sharding` metadata, e.g.
`('layers', 'embed', 'heads', 'head_dim')`); a rules table maps those names to the
axes of an `lm.parallel.mesh` mesh. The table is data in the config (`mesh.rules`,
overridable as `--config.mesh.rules.embed=fsdp,tensor`); `DEFAULT_RULES` is the
config's default. A different strategy is a different rules table.

Divisibility: a parameter dimension whose size is not divisible by the product of the
mesh axes its rule names is *replicated* along that dimension (the other dimensions keep
their sharding), so any model runs on any mesh; it only saves less memory. The batch is
different: `batch_sharding` assumes the global batch divides by data * fsdp (check with
`check_batch_divisible`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lm.config import default_config
from lm.parallel.sharding import Rules, logical_to_spec

def rules_from_config(rules: ml_collections.ConfigDict | Mapping[str, Sequence[str]],
                      ) -> dict[str, str | tuple[str, ...] | None]:
    """`mesh.rules` (tuples of mesh axes, () = replicate) as a rules table."""
    table = {}
    for name, axes in rules.items():
        axes = tuple(axes)
        table[name] = None if not axes else axes[0] if len(axes) == 1 else axes
    return table


# batch -> (data, fsdp), embed -> fsdp, heads/kv_heads/mlp/vocab -> tensor, layers -> stage
DEFAULT_RULES: Mapping[str, str | tuple[str, ...] | None] = rules_from_config(
    default_config().mesh.rules)


def divisible_spec(shape: Sequence[int], names: Sequence[str | None], mesh: Mesh,
                   rules: Rules) -> PartitionSpec:
    """`logical_to_spec`, replicating every dimension its mesh axes do not divide."""
    spec = logical_to_spec(names, rules)
    entries = []
    for size, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        if axes is not None:
            group = (axes,) if isinstance(axes, str) else tuple(axes)
            if size % math.prod(mesh.shape[a] for a in group):
                axes = None
        entries.append(axes)
    return PartitionSpec(*entries)


def param_shardings(model: nnx.Module | nnx.State, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """NamedShardings matching the pure-dict params (`nnx.state(model).to_pure_dict()`).

    `model` is a (possibly abstract) module or its `nnx.state`; from a graphdef and
    pure-dict params use `nnx.merge(graphdef, params)`. Variables without `out_sharding`
    metadata are replicated.
    """
    state = nnx.state(model) if isinstance(model, nnx.Module) else model

    def sharding(variable: Any) -> NamedSharding:
        if not isinstance(variable, nnx.Variable):
            return replicated(mesh)
        names = variable.get_metadata().get("out_sharding")
        shape = tuple(variable.get_value().shape)
        if not names:
            return NamedSharding(mesh, PartitionSpec())
        return NamedSharding(mesh, divisible_spec(shape, names, mesh, rules))

    flat = [(path, sharding(v)) for path, v in nnx.to_flat_state(state)]
    return nnx.State.from_flat_path(flat).to_pure_dict()


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def opt_state_shardings(optimizer: optax.GradientTransformation, params: Any, shardings: Any,
                        mesh: Mesh) -> Any:
    """Shardings of `optimizer.init(params)`: every params-shaped subtree (Adam's mu, nu, ...)
    is sharded like the params; everything else (step counts) is replicated.

    `params` may be abstract (`jax.ShapeDtypeStruct`s); nothing is computed.
    """
    abstract = jax.eval_shape(optimizer.init, params)
    return optax.tree_map_params(optimizer, lambda _leaf, sharding: sharding, abstract, shardings,
                                 transform_non_params=lambda _leaf: replicated(mesh))


def train_state_shardings(optimizer: optax.GradientTransformation, params: Any, shardings: Any,
                          mesh: Mesh) -> dict[str, Any]:
    """Shardings of `lm.train.step.init_train_state(params, optimizer)`."""
    return {"step": replicated(mesh), "params": shardings,
            "opt_state": opt_state_shardings(optimizer, params, shardings, mesh)}


def batch_sharding(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> NamedSharding:
    """Sharding of [batch, seq] inputs (every array of a training batch)."""
    return NamedSharding(mesh, logical_to_spec(("batch", "seq"), rules))


def batch_ways(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> int:
    """Into how many parts the batch dimension is split over the mesh."""
    axes = batch_sharding(mesh, rules).spec[0]
    group = () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))
    return math.prod(mesh.shape[a] for a in group)


def check_batch_divisible(batch_size: int, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> None:
    """Raise ValueError unless `batch_size` splits evenly over the batch's mesh axes."""
    ways = batch_ways(mesh, rules)
    if batch_size % ways:
        axes = batch_sharding(mesh, rules).spec[0]
        raise ValueError(f"batch size {batch_size} is not divisible by the {ways}-way batch "
                         f"sharding over mesh axes {axes}")
