"""Quarantine: input that could not become a document, kept with its file, line and reason.

Invalid UTF-8, malformed JSON, a missing or non-string text field, empty and
enormous documents, unreadable files: each becomes one `QuarantineEntry`, written
as one JSON line. Nothing is dropped silently; the run goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lm.files import atomic_write

EXCERPT_CHARS = 200


@dataclass(frozen=True)
class QuarantineEntry:
    """`line` is the 1-based line (or row, or record number) in `file`; None for a whole file."""

    source: str
    file: str
    line: int | None
    reason: str
    excerpt: str = ""


def excerpt_of(raw: bytes | str) -> str:
    """The first `EXCERPT_CHARS` characters, with undecodable bytes shown as U+FFFD."""
    if isinstance(raw, bytes):
        raw = raw[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    return raw[:EXCERPT_CHARS]


def write_quarantine(entries: Iterable[QuarantineEntry], path: Path) -> int:
    """Write entries as JSON lines to `path` atomically; return how many."""
    lines = [json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in entries]
    with atomic_write(path) as f:
        f.write("".join(lines).encode("utf-8"))
    return len(lines)


def merge_quarantine(paths: Sequence[Path], out_path: Path) -> int:
    """Concatenate per-task quarantine files, in the given order, into `out_path` atomically."""
    total = 0
    with atomic_write(out_path) as out:
        for path in paths:
            data = Path(path).read_bytes()
            total += data.count(b"\n")
            out.write(data)
    return total


def read_quarantine(path: Path) -> list[QuarantineEntry]:
    """The entries of a quarantine file."""
    with open(path, encoding="utf-8") as f:
        return [QuarantineEntry(**json.loads(line)) for line in f]
