"""Atomic file writes (readers never see a partial file, a crash leaves the old one), and
`json_safe` for the JSON records written with them."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary file next to `path` for binary writing; on success fsync it and
    rename it to `path`, on error delete it. Readers never see a partial file."""
    path = Path(path)
    # Not tempfile.mkstemp: its 0600 mode would stick to the final file.
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp_path, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    with atomic_write(path) as f:
        f.write((json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def json_safe(value: Any) -> Any:
    """`value` for json.dumps(allow_nan=False): arrays and tuples as lists, numpy scalars as
    Python's, non-finite floats as None, paths as strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value
