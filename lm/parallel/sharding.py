"""Logical axis names, and the one place they meet a device mesh.

Parameters and activations are annotated with logical names (`batch`,
`seq`, `embed`, `heads`, `kv_heads`, `head_dim`, `mlp`, `vocab`, `layers`).
A table of rules maps each logical name to mesh axes; changing the
parallelism strategy changes the rules, never the model code. Outside
`use_mesh_rules` every annotation is a no-op, so the model runs unchanged on
one device.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Mapping, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Rules = Mapping[str, str | tuple[str, ...] | None]

_ACTIVE: contextvars.ContextVar[tuple[Mesh, Rules] | None] = contextvars.ContextVar(
    "lm_mesh_rules", default=None)


def logical_to_spec(names: Sequence[str | None], rules: Rules) -> PartitionSpec:
    """Map logical axis names to a PartitionSpec; unknown or unmapped names replicate."""
    used: set[str] = set()
    spec = []
    for name in names:
        axes = rules.get(name) if name is not None else None
        if axes is None:
            spec.append(None)
            continue
        axes = (axes,) if isinstance(axes, str) else tuple(axes)
        axes = tuple(a for a in axes if a not in used)  # a mesh axis shards one dim only
        used.update(axes)
        spec.append(axes[0] if len(axes) == 1 else (axes or None))
    return PartitionSpec(*spec)


@contextlib.contextmanager
def use_mesh_rules(mesh: Mesh, rules: Rules) -> Iterator[None]:
    """Within this context, `constrain` places activations on `mesh` by `rules`."""
    token = _ACTIVE.set((mesh, rules))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_axes(name: str) -> str | tuple[str, ...] | None:
    """The mesh axes the active rules map logical axis `name` to (None without a mesh)."""
    active = _ACTIVE.get()
    if active is None:
        return None
    axes = active[1].get(name)
    if axes is None or isinstance(axes, str):
        return axes
    return tuple(axes) or None


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Annotate activation `x` with logical axis `names` (a no-op without a mesh)."""
    active = _ACTIVE.get()
    if active is None:
        return x
    mesh, rules = active
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(names, rules)))
