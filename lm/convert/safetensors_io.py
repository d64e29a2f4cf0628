"""Read and write safetensors checkpoints, one tensor at a time.

`SafetensorsReader` opens a single ``model.safetensors`` or a sharded set
described by ``model.safetensors.index.json`` and reads a tensor only when
asked, from a memory-mapped shard, so a caller that places each tensor before
reading the next never holds two copies of a model. `write_safetensors`
consumes (name, array) pairs and writes shards of at most `max_shard_bytes`
(a larger single tensor gets a shard of its own), with the index when there
is more than one shard. Uses the numpy API of the `safetensors` package (no
torch needed); bfloat16 arrays are `ml_dtypes.bfloat16`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from lm.files import write_json_atomic
from lm.train.checkpoint import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class SafetensorsReader:
    """Lazy access to the tensors of a checkpoint directory (single file or sharded)."""

    def __init__(self, directory: Path):
        directory = Path(directory)
        index_path, single_path = directory / INDEX_FILE, directory / SINGLE_FILE
        if index_path.exists():
            self._where = _read_index(index_path)
        elif single_path.exists():
            self._where = {name: SINGLE_FILE for name in _keys(single_path)}
        else:
            raise FileNotFoundError(f"{directory} holds neither {SINGLE_FILE} nor {INDEX_FILE}")
        self.directory = directory
        self._open: dict[str, object] = {}

    def __enter__(self) -> SafetensorsReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def names(self) -> list[str]:
        """Every tensor name, sorted."""
        return sorted(self._where)

    def file_of(self, name: str) -> Path:
        """The shard file holding `name`."""
        return self.directory / self._where[name]

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of `name`, from the shard header (no data read)."""
        return tuple(self._handle(name).get_slice(name).get_shape())

    def get(self, name: str) -> np.ndarray:
        """The tensor `name` as a numpy array (read now, from its shard)."""
        if name not in self._where:
            raise CheckpointError(f"tensor '{name}' is not in the checkpoint {self.directory}")
        try:
            return self._handle(name).get_tensor(name)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{self.file_of(name)}: cannot read tensor '{name}' ({err})") from err

    def close(self) -> None:
        self._open.clear()

    def _handle(self, name: str):
        file = self._where[name]
        if file not in self._open:
            path = self.directory / file
            if not path.exists():
                raise CheckpointError(f"{path} is listed in {self.directory / INDEX_FILE} "
                                      f"(for tensor '{name}') but does not exist")
            try:
                self._open[file] = safe_open(path, framework="np")
            except (SafetensorError, OSError) as err:
                raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from err
        return self._open[file]


def _read_index(path: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} is not a safetensors index: it needs a 'weight_map' object "
                              f"of tensor name -> shard file ({type(err).__name__}: {err})") from err
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{path}: 'weight_map' must map tensor names to shard file names")
    return dict(weight_map)


def _keys(path: Path) -> list[str]:
    try:
        with safe_open(path, framework="np") as f:
            return list(f.keys())
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from err


def write_safetensors(tensors: Iterable[tuple[str, np.ndarray]], directory: Path, *,
                      max_shard_bytes: int, metadata: dict[str, str] | None = None) -> list[Path]:
    """Write `tensors` into `directory` as ``model.safetensors``, or as
    ``model-0000K-of-0000N.safetensors`` shards plus ``model.safetensors.index.json``
    when they exceed `max_shard_bytes`. Holds at most one shard in memory; files
    appear under their final names only once every shard is written."""
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", **(metadata or {})}
    temporary: list[tuple[Path, list[str]]] = []
    total = 0
    try:
        for shard in _group(tensors, max_shard_bytes):
            tmp = directory / f".shard-{len(temporary):05d}.{os.getpid()}.tmp"
            save_file(shard, tmp, metadata=metadata)
            temporary.append((tmp, list(shard)))
            total += sum(a.nbytes for a in shard.values())
    except BaseException:
        for tmp, _ in temporary:
            tmp.unlink(missing_ok=True)
        raise
    if len(temporary) == 1:
        final = [directory / SINGLE_FILE]
    else:
        final = [directory / f"model-{k + 1:05d}-of-{len(temporary):05d}.safetensors"
                 for k in range(len(temporary))]
    for (tmp, _), path in zip(temporary, final):
        os.replace(tmp, path)
    if len(final) > 1:
        weight_map = {name: path.name for (_, names), path in zip(temporary, final) for name in names}
        write_json_atomic({"metadata": {"total_size": total}, "weight_map": weight_map},
                          directory / INDEX_FILE)
    return final


def _group(tensors: Iterable[tuple[str, np.ndarray]], max_bytes: int) -> Iterator[dict[str, np.ndarray]]:
    shard: dict[str, np.ndarray] = {}
    seen: set[str] = set()
    size = 0
    for name, array in tensors:
        if name in seen:
            raise ValueError(f"tensor '{name}' given twice")
        seen.add(name)
        if shard and size + array.nbytes > max_bytes:
            yield shard
            shard, size = {}, 0
        shard[name] = np.ascontiguousarray(array)
        size += array.nbytes
    if shard:
        yield shard
