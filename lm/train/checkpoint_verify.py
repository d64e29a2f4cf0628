"""What lm.train.checkpoint checks that orbax does not: a checksum manifest per step,
whether a failed restore is a config mismatch rather than damage, and a full disk.

Orbax (0.12) does not checksum array data: tensorstore's OCDBT checks its manifest
and b-tree nodes, but a flipped byte inside a stored chunk restores silently as a
wrong number. So after orbax has finished a step, `write_manifest` records every
file's size and sha256 in `<step>/lm_checksums.json` (written atomically), and
`verify_manifest` compares them before a restore.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax

from lm.files import write_json_atomic

MANIFEST = "lm_checksums.json"
FORMAT = "lm-checkpoint-checksums/1"
ALGORITHM = "sha256"  # with SHA extensions hashlib's sha256 is faster than blake2b
_DISK_FULL = os.strerror(errno.ENOSPC)  # "No space left on device" (also in tensorstore's errors)


class Corrupt(Exception):
    """A checkpoint's files are damaged; `reason` names the file (relative to the step)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _files(step_dir: Path) -> list[str]:
    """The step's files, relative and sorted, without the manifest and its temporaries."""
    names = []
    for root, _, files in os.walk(step_dir):
        for name in files:
            if root == str(step_dir) and (name == MANIFEST or name.startswith(f".{MANIFEST}.")):
                continue
            names.append(os.path.relpath(os.path.join(root, name), step_dir))
    return sorted(names)


def _digest(path: Path, algorithm: str = ALGORITHM) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _digests(step_dir: Path, names: list[str], algorithm: str = ALGORITHM) -> list[str]:
    """Files hashed in parallel (hashlib and reads release the GIL)."""
    workers = max(1, min(8, os.cpu_count() or 1, len(names)))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="lm-checksum") as pool:
        return list(pool.map(lambda n: _digest(step_dir / n, algorithm), names))


def write_manifest(step_dir: Path) -> None:
    """Record every file of the finished step `step_dir` (size and sha256), atomically."""
    step_dir = Path(step_dir)
    names = _files(step_dir)
    sizes = [(step_dir / n).stat().st_size for n in names]
    files = {n: [size, digest] for n, size, digest in zip(names, sizes, _digests(step_dir, names))}
    write_json_atomic({"format": FORMAT, "algorithm": ALGORITHM, "files": files}, step_dir / MANIFEST)


def verify_manifest(step_dir: Path) -> bool:
    """True when every file in the manifest is there with its size and checksum; False
    when the step has no manifest (an older run, or a stop right after the save).
    Raises Corrupt naming the first bad file otherwise."""
    step_dir = Path(step_dir)
    try:
        text = (step_dir / MANIFEST).read_text()
    except FileNotFoundError:
        return False
    try:
        manifest = json.loads(text)
        algorithm = manifest["algorithm"]
        files = {str(n): (int(size), str(digest)) for n, (size, digest) in manifest["files"].items()}
        if manifest["format"] != FORMAT or algorithm not in hashlib.algorithms_available:
            raise ValueError(f"unknown format {manifest['format']!r} or algorithm {algorithm!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise Corrupt(f"its checksum manifest {MANIFEST} is unreadable ({err})") from err
    problems, to_hash = [], []
    for name, (size, digest) in sorted(files.items()):
        try:
            actual = (step_dir / name).stat().st_size
        except FileNotFoundError:
            problems.append(f"{name} is missing")
            continue
        if actual < size:
            problems.append(f"{name} is truncated ({actual} of {size} bytes)")
        elif actual > size:
            problems.append(f"{name} has {actual} bytes, {size} expected")
        else:
            to_hash.append(name)
    if not problems:  # only hash when the sizes are right: a cheap check first
        for name, digest in zip(to_hash, _digests(step_dir, to_hash, algorithm)):
            if digest != files[name][1]:
                problems.append(f"{name} does not match its checksum")
    if problems:
        more = f" (and {len(problems) - 1} more damaged files)" if len(problems) > 1 else ""
        raise Corrupt(problems[0] + more)
    return True


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey / FlattenedIndexKey, GetAttrKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def describe_mismatch(state_dir: Path, abstract_state: Any) -> str | None:
    """How the saved train state's arrays (names and shapes, from orbax's metadata) differ
    from `abstract_state`'s; None when they agree or the metadata cannot be read."""
    import orbax.checkpoint as ocp

    handler = ocp.StandardCheckpointHandler()
    try:
        saved_tree = handler.metadata(Path(state_dir)).tree
        saved = {getattr(leaf, "name", None) or ".".join(map(_key_name, path)):
                 tuple(getattr(leaf, "shape", ()) or ())
                 for path, leaf in jax.tree_util.tree_flatten_with_path(saved_tree)[0]}
    except Exception:  # unreadable metadata is damage, not a mismatch
        return None
    finally:
        handler.close()
    wanted = {".".join(map(_key_name, path)): tuple(getattr(leaf, "shape", ()) or ())
              for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_state)[0]}
    diffs = [f"{n} is {saved[n]} in the checkpoint but {wanted[n]} in this run"
             for n in sorted(saved.keys() & wanted.keys()) if saved[n] != wanted[n]]
    diffs += [f"this run has {n}, the checkpoint does not" for n in sorted(wanted.keys() - saved.keys())]
    diffs += [f"the checkpoint has {n}, this run does not" for n in sorted(saved.keys() - wanted.keys())]
    if not diffs:
        return None
    return "; ".join(diffs[:3]) + (f" (and {len(diffs) - 3} more differences)" if len(diffs) > 3 else "")


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` (or an exception it was raised from) is ENOSPC, as an OSError or as
    tensorstore's "RESOURCE_EXHAUSTED: ... No space left on device" ValueError."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        if _DISK_FULL in str(err) or f"os_error_code='{errno.ENOSPC}'" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def one_line(err: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, shortened (tensorstore's messages run to pages)."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(err).__name__}: " + (text if len(text) <= limit else text[:limit] + "...")
