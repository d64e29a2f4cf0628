"""The built-in default corpus: the Python standard library's own source files.

It needs no download, is tens of MB of real code on a typical install, and is
identified exactly by the manifest's sha256 fingerprint (it differs between
Python versions and builds, so always record the manifest next to results).
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from lm.data.read import Document
from lm.files import write_json_atomic

# Third-party packages may be installed inside the stdlib directory.
NOT_STDLIB_DIRS = ("site-packages", "dist-packages")


def stdlib_corpus() -> tuple[list[Document], dict]:
    """Every ``.py`` file of the running interpreter's standard library, plus a manifest.

    Documents are in sorted relative-path order and their ids are the relative
    paths. The manifest lists every included file, the excluded
    site-packages/dist-packages directories and any file that is not valid
    UTF-8, each with the reason, and a sha256 fingerprint of the included
    (path, content) pairs.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    included: list[tuple[str, bytes, str]] = []
    excluded: list[dict] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        for name in [d for d in dirnames if d in NOT_STDLIB_DIRS]:
            dirnames.remove(name)
            excluded.append(
                {"path": (rel_dir / name).as_posix(), "reason": "third-party packages, not the standard library"}
            )
        for name in filenames:
            if not name.endswith(".py"):
                continue
            rel = (rel_dir / name).as_posix()
            data = (Path(dirpath) / name).read_bytes()
            try:
                included.append((rel, data, data.decode("utf-8")))
            except UnicodeDecodeError as e:
                excluded.append({"path": rel, "reason": f"not valid UTF-8 ({e.reason} at byte {e.start})"})
    included.sort(key=lambda item: item[0])
    excluded.sort(key=lambda entry: entry["path"])
    documents = [Document(id=rel, text=text) for rel, _, text in included]
    files = [{"path": rel, "bytes": len(data)} for rel, data, _ in included]
    manifest = {
        "root": str(root),
        "python": sys.version,
        "num_files": len(files),
        "num_bytes": sum(f["bytes"] for f in files),
        "sha256": fingerprint((rel, data) for rel, data, _ in included),
        "files": files,
        "excluded": excluded,
    }
    return documents, manifest


def fingerprint(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (relative path, content) pairs in the given order.

    Each path and content is length-prefixed, so moving bytes between a path
    and its content, or between files, changes the fingerprint.
    """
    digest = hashlib.sha256()
    for rel, data in files:
        for part in (rel.encode("utf-8"), data):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
    return digest.hexdigest()


def write_manifest(manifest: dict, path: Path) -> None:
    """Write a corpus manifest as JSON, atomically."""
    write_json_atomic(manifest, path)
