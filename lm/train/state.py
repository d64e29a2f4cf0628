"""A run's state: building the model, the train state's layout and initialisation, the one
restore path for parameters, and reading a run's config.

- `build_model`: graph definition and freshly initialised parameters on one device (tests,
  benchmarks, peers).
- `state_layout`: for a mesh, the optimizer, parameter and train-state shardings and the
  abstract (shape-only, sharded) train state. The trainer restores into it and the memory
  report compiles against it; `init_state` materialises it, each parameter created on the
  devices that own it.
- `restore_params`: the newest checkpoint's parameters read into abstract shapes, never
  building a random model first (lm sample, lm eval, lm convert to-hf).
- `read_run_config`: the validated config.json of a run.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable

import jax
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh

from lm.config import from_json_dict
from lm.model.decoder import Decoder
from lm.model.sharded_init import abstract_model, shard_params_init
from lm.parallel.rules import param_shardings, train_state_shardings
from lm.parallel.sharding import Rules
from lm.train.checkpoint import Checkpointer
from lm.train.optim import make_optimizer
from lm.train.step import init_train_state


def build_model(m: ml_collections.ConfigDict, seed: int) -> tuple[nnx.GraphDef, Any]:
    """The model's graph definition and freshly initialised parameters (a pure dict)."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Decoder(m, rngs=nnx.Rngs(seed))))

    @jax.jit
    def init() -> Any:
        return nnx.state(Decoder(m, rngs=nnx.Rngs(seed))).to_pure_dict()

    return graphdef, init()


def abstract_params(m: ml_collections.ConfigDict, seed: int = 0) -> tuple[nnx.GraphDef, dict[str, Any]]:
    """The graph definition and parameter shapes/dtypes of model config `m` (nothing allocated)."""
    graphdef, state = nnx.split(abstract_model(m, seed))
    return graphdef, jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), state.to_pure_dict())


@dataclasses.dataclass(frozen=True)
class StateLayout:
    """How a run's train state lies on a mesh; `abstract_state` carries the shardings."""

    graphdef: nnx.GraphDef
    optimizer: optax.GradientTransformation
    param_shardings: Any
    state_shardings: Any
    abstract_state: Any


def state_layout(cfg: ml_collections.ConfigDict, mesh: Mesh, rules: Rules) -> StateLayout:
    """The optimizer, shardings and abstract train state of `cfg` on `mesh` (no allocation)."""
    model = abstract_model(cfg.model, cfg.train.seed)
    graphdef, _ = nnx.split(model)
    _, params = abstract_params(cfg.model, cfg.train.seed)
    param_sh = param_shardings(model, mesh, rules)
    optimizer = make_optimizer(cfg.train, params, cfg.model)
    state_sh = train_state_shardings(optimizer, params, param_sh, mesh)
    abstract = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                            jax.eval_shape(lambda p: init_train_state(p, optimizer), params), state_sh)
    return StateLayout(graphdef, optimizer, param_sh, state_sh, abstract)


def init_state(cfg: ml_collections.ConfigDict, layout: StateLayout, mesh: Mesh, rules: Rules) -> Any:
    """A fresh train state laid out as `layout` says; the parameters equal `build_model`'s."""
    _, params, _ = shard_params_init(cfg.model, cfg.train.seed, mesh, rules)
    return jax.jit(lambda p: init_train_state(p, layout.optimizer),
                   out_shardings=layout.state_shardings)(params)


def read_run_config(workdir: Path) -> ml_collections.ConfigDict:
    """The validated config.json of the run in `workdir`."""
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; is {workdir} a run's workdir?")
    return from_json_dict(json.loads(path.read_text()))


def restore_params(workdir: Path, cfg: ml_collections.ConfigDict, *, command: str = "lm",
                   step: int | None = None) -> tuple[nnx.GraphDef, dict[str, Any], int]:
    """The graph definition, the parameters of checkpoint `step` (default: the newest) and
    its step, for the run in `workdir`, on one device whatever mesh saved them. The checkpoint
    is verified against its checksums but never moved aside (a trainer may be running);
    `command` names the warnings."""
    graphdef, shapes = abstract_params(cfg.model)
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    optimizer = make_optimizer(cfg.train, shapes, cfg.model)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=one_device),
                            jax.eval_shape(lambda p: init_train_state(p, optimizer), shapes))
    warn: Callable[[str], None] = lambda message: print(  # noqa: E731
        f"{command}: warning: {message}", file=sys.stderr, flush=True)
    checkpointer = Checkpointer(Path(workdir) / "checkpoints", keep_last=cfg.train.keep_last)
    try:
        step = checkpointer.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {Path(workdir) / 'checkpoints'}; train first")
        state, _, _ = checkpointer.restore(step, abstract, warn=warn)
    finally:
        checkpointer.close()
    return graphdef, state["params"], step
