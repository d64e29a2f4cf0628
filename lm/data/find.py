"""Find the input files of a directory or a glob: which are read, and which are not and why.

A file's *kind* comes from its suffix, compared case-insensitively (`kind_of`):
jsonl (``.jsonl``, also ``.gz`` / ``.zst``), parquet, csv, or text (``.txt .text
.md .rst .py``, also ``.gz`` / ``.zst``). Nothing is dropped silently: every entry
found but not read becomes a `Skipped` with its reason (hidden, unsupported suffix,
broken symbolic link, symbolic link loop, not a regular file, a symbolic link to a
directory, which is not followed, or another path to a file already read). A glob
follows directory links as Python's glob does, so each file is kept once, under
its shortest path (dedup by device and inode).
"""

from __future__ import annotations

import errno
import glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")
PARQUET_SUFFIX = ".parquet"
CSV_SUFFIX = ".csv"
TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst", ".py")
COMPRESSED_SUFFIXES = (".gz", ".zst")
GLOB_CHARS = "*?["
DUPLICATE = "another path to a file already read"


@dataclass(frozen=True)
class Skipped:
    """An entry that is not read: its path and why."""

    path: Path
    reason: str


def kind_of(name: str) -> str | None:
    """"jsonl", "parquet", "csv" or "text" by the file name's suffix (any case); None if unsupported."""
    name = name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIX):
        return "parquet"
    if name.endswith(CSV_SUFFIX):
        return "csv"
    plain = name.rsplit(".", 1)[0] if name.endswith(COMPRESSED_SUFFIXES) else name
    if plain.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def is_compressed(path: Path) -> bool:
    """Whether the file's name ends .gz or .zst (any case)."""
    return path.name.lower().endswith(COMPRESSED_SUFFIXES)


def unsupported_reason(name: str) -> str:
    """Why a file of unsupported suffix is not read, naming the suffix ("no suffix" if none)."""
    suffixes = Path(name.lstrip(".")).suffixes
    if not suffixes:
        return "no suffix"
    n = 2 if suffixes[-1].lower() in COMPRESSED_SUFFIXES and len(suffixes) > 1 else 1
    return f"unsupported suffix {''.join(suffixes[-n:])!r}"


def _kind_reason(name: str, kinds: tuple[str, ...]) -> str:
    kind = kind_of(name)
    return unsupported_reason(name) if kind is None else f"a {kind} file; this source reads {', '.join(kinds)}"


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a regular file (following symbolic links), or None."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        if e.errno == errno.ENOENT and os.path.islink(path):
            return "broken symbolic link"
        return f"cannot read ({e.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def walk_directory(root: Path, kinds: tuple[str, ...]) -> tuple[list[Path], list[Skipped]]:
    """Files under `root` of the given kinds, and everything else found there with its reason,
    both sorted by path relative to `root`. Directory links are listed, not followed."""
    files: list[Path] = []
    skipped: list[Skipped] = []

    def on_error(e: OSError) -> None:
        skipped.append(Skipped(Path(e.filename), f"cannot read ({e.strerror})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        here = Path(dirpath)
        for name in sorted(dirnames):
            if name.startswith("."):
                skipped.append(Skipped(here / name, "hidden directory"))
                dirnames.remove(name)
            elif (here / name).is_symlink():
                skipped.append(Skipped(here / name, "symbolic link to a directory (not followed)"))
        for name in filenames:
            path = here / name
            if name.startswith("."):
                skipped.append(Skipped(path, "hidden file"))
            elif kind_of(name) not in kinds:
                skipped.append(Skipped(path, _kind_reason(name, kinds)))
            elif problem := file_problem(path):
                skipped.append(Skipped(path, problem))
            else:
                files.append(path)
    return _dedupe(root, files, skipped)


def expand_glob(pattern: str, kinds: tuple[str, ...] | None) -> tuple[Path, list[Path], list[Skipped]]:
    """(root, files, skipped) of a glob (``**`` recursive): root is its folder before the first
    wildcard; `kinds` None reads every match, else matches of other kinds are skipped."""
    fixed = pattern[: min(pattern.index(c) for c in GLOB_CHARS if c in pattern)]
    root = Path(fixed) if fixed.endswith("/") else Path(fixed).parent
    files: list[Path] = []
    skipped: list[Skipped] = []
    for match in sorted(glob.glob(pattern, recursive=True)):
        path = Path(match)
        if os.path.isdir(path):
            if not pattern.endswith("**"):  # with a trailing ** every file below is a match of its own
                skipped.append(Skipped(path, "a directory (a glob reads only the files it matches)"))
        elif kinds is not None and kind_of(path.name) not in kinds:
            skipped.append(Skipped(path, _kind_reason(path.name, kinds)))
        elif problem := file_problem(path):
            skipped.append(Skipped(path, problem))
        else:
            files.append(path)
    return (root, *_dedupe(root, files, skipped))


def _dedupe(root: Path, files: list[Path], skipped: list[Skipped]) -> tuple[list[Path], list[Skipped]]:
    """Keep each real file once, under its shortest relative path; list the other paths."""
    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    by_inode: dict[tuple[int, int], list[Path]] = {}
    for f in files:
        st = os.stat(f)
        by_inode.setdefault((st.st_dev, st.st_ino), []).append(f)
    kept = []
    for paths in by_inode.values():
        paths.sort(key=lambda p: (len(p.relative_to(root).parts), rel(p)))
        kept.append(paths[0])
        skipped += [Skipped(p, DUPLICATE) for p in paths[1:]]
    return sorted(kept, key=rel), sorted(skipped, key=lambda s: rel(s.path))
