"""The device mesh: four named axes in a fixed order.

    data    pure data parallelism (parameters replicated, batch split)
    fsdp    data parallelism with parameters and optimizer state sharded (ZeRO-3 style)
    tensor  Megatron-style splitting of heads / MLP width / vocabulary
    stage   pipeline stages: the stacked `layers` axis split across devices

Every mesh has all four axes, in this order, so one rules table (lm.parallel.rules)
works for any mesh; unused axes have size 1.

Axis types: the mesh is built with `AxisType.Auto` on every axis, deliberately.
`jax.make_mesh` defaults to `AxisType.Explicit` in jax 0.10, where shardings are part of
the array types and every op must agree on them (mismatches are errors, not silent
resharding). This framework instead places arrays with `jit` in/out shardings and hints
activations with `with_sharding_constraint` (`lm.parallel.sharding.constrain`), leaving the
rest to the GSPMD/Shardy partitioner -- the Auto mode -- so the model code stays
sharding-agnostic and runs unchanged on one device.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

from lm.config_checks import MESH_AXES



def resolve_axis_sizes(axis_sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Sizes of (data, fsdp, tensor, stage); missing axes are 1, and one -1 takes the rest."""
    unknown = sorted(set(axis_sizes) - set(MESH_AXES))
    if unknown:
        raise ValueError(f"unknown mesh axes {unknown}; the axes are {list(MESH_AXES)}")
    sizes = [int(axis_sizes.get(name, 1)) for name in MESH_AXES]
    described = ", ".join(f"{n}={s}" for n, s in zip(MESH_AXES, sizes))
    fill = [i for i, s in enumerate(sizes) if s == -1]
    if len(fill) > 1:
        raise ValueError(f"mesh axis sizes ({described}): at most one axis may be -1")
    bad = [MESH_AXES[i] for i, s in enumerate(sizes) if s == 0 or s < -1]
    if bad:
        raise ValueError(f"mesh axis sizes ({described}): sizes must be positive or -1, "
                         f"not for {bad}")
    known = math.prod(s for s in sizes if s != -1)
    if fill:
        if num_devices % known:
            raise ValueError(f"mesh axis sizes ({described}) do not divide the {num_devices} "
                             f"devices: the fixed axes multiply to {known}")
        sizes[fill[0]] = num_devices // known
    elif known != num_devices:
        raise ValueError(f"mesh axis sizes ({described}) multiply to {known}, but there are "
                         f"{num_devices} devices")
    return tuple(sizes)


def make_mesh(axis_sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None,
              dcn_sizes: Mapping[str, int] | None = None) -> Mesh:
    """A mesh over `devices` (default: all) with axes (data, fsdp, tensor, stage), all Auto.

    `axis_sizes` names some of the axes (others are 1); one size may be -1 to use the
    remaining devices. Without `dcn_sizes` the sizes multiply to the number of devices.

    `dcn_sizes` (a hybrid mesh) gives each axis a factor across granules -- TPU slices, or
    processes (hosts) elsewhere: axis size = axis_sizes[a] * dcn_sizes[a], and the
    `axis_sizes` then describe one granule's devices. Neighbours along an axis stay inside
    a granule as long as possible, so the fast interconnect carries the chatty axes.
    """
    devices = list(jax.devices() if devices is None else devices)
    axis_types = (AxisType.Auto,) * len(MESH_AXES)
    dcn = resolve_dcn_sizes(dcn_sizes or {})
    if math.prod(dcn) > 1:
        granules = math.prod(dcn)
        if len(devices) % granules:
            raise ValueError(f"mesh.dcn factors {dict(zip(MESH_AXES, dcn))} multiply to {granules}, "
                             f"which does not divide the {len(devices)} devices")
        sizes = resolve_axis_sizes(axis_sizes, len(devices) // granules)
        by_process = not hasattr(devices[0], "slice_index")
        try:
            grid = mesh_utils.create_hybrid_device_mesh(sizes, dcn, devices,
                                                        process_is_granule=by_process)
        except (ValueError, AssertionError) as err:
            raise ValueError(f"cannot lay out mesh sizes {dict(zip(MESH_AXES, sizes))} within each "
                             f"of {granules} {'processes' if by_process else 'slices'} x dcn "
                             f"{dict(zip(MESH_AXES, dcn))}: {err}") from err
        return Mesh(grid, MESH_AXES, axis_types=axis_types)
    sizes = resolve_axis_sizes(axis_sizes, len(devices))
    try:  # lets jax pick a topology-aware device order (matters on TPU/GPU slices)
        return jax.make_mesh(sizes, MESH_AXES, axis_types=axis_types, devices=devices)
    except (ValueError, NotImplementedError):
        return Mesh(np.asarray(devices, dtype=object).reshape(sizes), MESH_AXES,
                    axis_types=axis_types)


def resolve_dcn_sizes(dcn_sizes: Mapping[str, int]) -> tuple[int, ...]:
    """Across-granule factors of (data, fsdp, tensor, stage); missing axes are 1."""
    unknown = sorted(set(dcn_sizes) - set(MESH_AXES))
    if unknown:
        raise ValueError(f"unknown mesh.dcn axes {unknown}; the axes are {list(MESH_AXES)}")
    sizes = tuple(int(dcn_sizes.get(name, 1)) for name in MESH_AXES)
    if min(sizes) < 1:
        raise ValueError(f"mesh.dcn factors must be positive, got {dict(zip(MESH_AXES, sizes))}")
    return sizes
