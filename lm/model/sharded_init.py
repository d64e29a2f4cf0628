"""The Decoder built without memory (shapes only) or already sharded on a mesh: parameters
are created on the devices that own them (`lm.parallel.rules` says which), so no device
ever holds the whole model."""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
from flax import nnx
from jax.sharding import Mesh

from lm.model.decoder import Decoder
from lm.parallel.rules import DEFAULT_RULES, param_shardings
from lm.parallel.sharding import Rules


def abstract_model(m: ml_collections.ConfigDict, seed: int = 0) -> nnx.Module:
    """The Decoder with shape-only parameters (and their logical-name metadata)."""
    return nnx.eval_shape(lambda: Decoder(m, rngs=nnx.Rngs(seed)))


def shard_params_init(m: ml_collections.ConfigDict, seed: int, mesh: Mesh,
                      rules: Rules = DEFAULT_RULES) -> tuple[nnx.GraphDef, Any, Any]:
    """Like `lm.train.loop.build_model`, but each parameter is created already sharded.

    The init is jitted with `out_shardings`, so each device computes only its own shards
    (threefry RNG is partitionable) and no device ever holds the whole model. Returns
    (graphdef, params, param_shardings); the values equal `build_model(m, seed)`'s.
    """
    abstract = abstract_model(m, seed)
    graphdef, _ = nnx.split(abstract)
    shardings = param_shardings(abstract, mesh, rules)

    def init() -> Any:
        return nnx.state(Decoder(m, rngs=nnx.Rngs(seed))).to_pure_dict()

    return graphdef, jax.jit(init, out_shardings=shardings)(), shardings
