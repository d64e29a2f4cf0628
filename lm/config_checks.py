"""Field checks shared by the config validator: the one-line error, positivity, the mesh
and pipeline sections, and the skipped-batch ranges."""

from __future__ import annotations

from typing import Sequence

import ml_collections

from lm.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor", "stage")  # the device mesh's axes, in order


def fail(field: str, message: str) -> None:
    raise ConfigError(f"config field {field!r}: {message}")  # repr: one line whatever was typed


def check_positive(cfg: ml_collections.ConfigDict, fields: Sequence[str]) -> None:
    for name in fields:
        section, key = name.split(".")
        value = cfg[section][key]
        if value <= 0:
            fail(name, f"must be positive, got {value!r}")


def skip_ranges(t: ml_collections.ConfigDict) -> list[tuple[int, int]]:
    """`train.skip_batches` as sorted (start, end) ranges of data-stream batch positions."""
    ranges = []
    for item in t.skip_batches:
        start, _, end = str(item).partition(":")
        if not (start.isdigit() and end.isdigit() and int(start) < int(end)):
            fail("train.skip_batches", f"{item!r} is not START:END with 0 <= START < END (batch "
                  "positions, END excluded)")
        ranges.append((int(start), int(end)))
    return sorted(ranges)


def validate_mesh(cfg: ml_collections.ConfigDict) -> None:
    sizes = {axis: cfg.mesh[axis] for axis in MESH_AXES}
    for axis, size in sizes.items():
        if size == 0 or size < -1:
            fail(f"mesh.{axis}", f"must be a positive size or -1 (all remaining devices), got {size}")
        if cfg.mesh.dcn[axis] < 1:
            fail(f"mesh.dcn.{axis}", f"must be a positive factor, got {cfg.mesh.dcn[axis]}")
    if list(sizes.values()).count(-1) > 1:
        fail("mesh", f"at most one axis may be -1, got {sizes}")
    for name, axes in cfg.mesh.rules.items():
        unknown = [a for a in axes if a not in MESH_AXES]
        if unknown or len(set(axes)) != len(axes):
            fail(f"mesh.rules.{name}", f"{tuple(axes)} must name distinct mesh axes from "
                  f"{MESH_AXES}, or be () to replicate")
    p = cfg.pipeline
    if p.microbatches < 0:
        fail("pipeline.microbatches", f"must be >= 0 (0: one per stage), got {p.microbatches}")
    if p.repeats < 1:
        fail("pipeline.repeats", f"must be >= 1, got {p.repeats}")
    if p.schedule != "auto" and (p.schedule == "circular") != (p.repeats > 1):
        fail("pipeline.schedule", f"{p.schedule!r} does not go with pipeline.repeats={p.repeats}: "
              "circular needs repeats > 1, gpipe and 1f1b need repeats=1")
