"""A recipe's input files: which are read, which are not and why, and what changed since planning.

`source_files` expands a source's path: a file (read whatever its suffix), a directory
(files of the source's format, or of any known format for "auto") or a glob (every
match with an explicit format; with "auto", matches of a known suffix). Everything
found but not read is listed with its reason (`lm.data.find`), and the report shows it.

`scan_inputs` records each source's files with their size and modification time
(``tasks/inputs.json`` of a run directory). A rerun scans again and `input_changes`
says what differs (a file grew, shrank or was modified, a new file matches, a file is
gone). The run then refuses to go on: its tasks were cut from the old files, so it would
silently leave the change out. ``--replan`` discards the run's work and plans again.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from lm.data.find import GLOB_CHARS, Skipped, expand_glob, file_problem, kind_of, walk_directory
from lm.data.read import DataError

KINDS = ("jsonl", "parquet", "csv", "text")
_LISTED = 3  # file names shown per kind of change


def file_format(path: Path, fmt: str) -> str:
    """The format of `path`: `fmt` unless "auto", else by suffix (unknown suffixes are text)."""
    if fmt != "auto":
        return fmt
    return kind_of(path.name) or "text"


def source_files(path: str, fmt: str, exclude: Path | None = None) -> tuple[Path, list[Path], list[Skipped]]:
    """(root, files, skipped) of a source path, files sorted by their path relative to root;
    nothing under `exclude` (the run's own output directory) is read. Raises DataError when
    nothing can be read, naming what was skipped."""
    kinds = KINDS if fmt == "auto" else (fmt,)
    if any(c in path for c in GLOB_CHARS):
        root, files, skipped = expand_glob(path, kinds if fmt == "auto" else None)
    elif Path(path).is_dir():
        root = Path(path)
        files, skipped = walk_directory(root, kinds)
    elif Path(path).is_file():
        root, files, skipped = Path(path).parent, [Path(path)], []
    elif os.path.lexists(path):
        raise DataError(f"source path {path}: {file_problem(Path(path))}")
    else:
        raise DataError(f"source path {path}: no such file, directory or matching glob")
    if exclude is not None:
        files, skipped = _outside(exclude, root, files, skipped)
    if not files:
        counts = Counter(s.reason for s in skipped)
        listed = f" (not read: {', '.join(f'{n} {reason}' for reason, n in counts.items())})" if counts else ""
        raise DataError(f"source path {path}: no readable files of format {fmt!r}{listed}")
    return root, files, skipped


def _outside(exclude: Path, root: Path, files: list[Path], skipped: list[Skipped]) -> tuple[list, list]:
    """`files` and `skipped` without what lies in `exclude` (which is then listed once)."""
    out = os.path.realpath(exclude)

    def inside(p: Path) -> bool:
        return os.path.commonpath([out, os.path.realpath(p)]) == out

    kept = [f for f in files if not inside(f)]
    left = [s for s in skipped if not inside(s.path)]
    real_root = os.path.realpath(root)
    if (len(kept) < len(files) or len(left) < len(skipped)) and os.path.commonpath([out, real_root]) == real_root:
        left.append(Skipped(root / os.path.relpath(out, real_root), "the output directory of this run"))
    return kept, sorted(left, key=lambda s: s.path.as_posix())


def scan_inputs(sources, run_dir: Path | None = None) -> dict:
    """{"sources": [{name, path, root, files: [[file, bytes, mtime_ns]], skipped: [[file, reason]]}]}
    for the recipe's `sources` (SourceSpec), file paths relative to each root; nothing in
    `run_dir` is read."""
    scanned = []
    for source in sources:
        entry = {"name": source.name, "path": source.path, "root": "", "files": [], "skipped": []}
        if not source.path.startswith("hf:"):
            root, files, skipped = source_files(source.path, source.format, run_dir)
            stats = [f.stat() for f in files]
            entry.update(root=str(root),
                         files=[[f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns]
                                for f, st in zip(files, stats)],
                         skipped=[[s.path.relative_to(root).as_posix(), s.reason] for s in skipped])
        scanned.append(entry)
    return {"sources": scanned}


def input_changes(old: dict, new: dict) -> list[str]:
    """What differs between two scans, one line per changed source (empty if nothing)."""
    lines = []
    for before, now in zip(old["sources"], new["sources"]):
        was = {f: (size, mtime) for f, size, mtime in before["files"]}
        is_ = {f: (size, mtime) for f, size, mtime in now["files"]}
        changed = []
        for f in sorted(was.keys() & is_.keys()):
            (a, _), (b, _) = was[f], is_[f]
            if was[f] != is_[f]:
                changed.append(f"{f} changed size {a} -> {b} bytes" if a != b else f"{f} was modified")
        parts = _cap(changed)
        for label, names in (("new", sorted(is_.keys() - was.keys())), ("gone", sorted(was.keys() - is_.keys()))):
            if names:
                parts.append(f"{label}: {', '.join(_cap(names))}")
        if parts:
            lines.append(f"source {now['name']!r}: {'; '.join(parts)}")
    return lines


def _cap(items: list[str]) -> list[str]:
    return items[:_LISTED] + ([f"and {len(items) - _LISTED} more"] if len(items) > _LISTED else [])


def skipped_files(inputs: dict) -> list[dict]:
    """Every file not read, as {"source", "path", "reason"}, in source order."""
    return [{"source": s["name"], "path": f, "reason": reason} for s in inputs["sources"] for f, reason in s["skipped"]]
