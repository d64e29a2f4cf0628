"""Line- or paragraph-level dedup across documents, in two passes.

Units: a *line* is the text between newlines; a *paragraph* is the text between blank
lines (a newline, optional spaces or tabs, a newline). A unit's key is BLAKE2b-64 of
its normalised text (``exact.normalize``, UTF-8); units that normalise to nothing (blank, or
only punctuation) are never counted or removed.

1. Per shard, ``LineCounter`` counts in how many documents each unit occurs (a unit
   repeated inside one document counts once) and writes the counts (.npz).
2. ``merge_line_counts`` adds all shards' counts and keeps the keys of units that occur
   in more than ``max_occurrences`` documents.
3. ``RepeatedLineRemover`` (a pipeline modifier) removes every occurrence of those
   units, the first included: the modifier sees one document at a time and no corpus
   order, and a line repeated across that many documents is boilerplate (menus,
   cookie notices, copyright lines) rather than content any one copy owns.
"""

from __future__ import annotations

import array
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lm.data.dedup import store
from lm.data.dedup.exact import normalize, normalize_lines

UNITS = ("line", "paragraph")
_COUNTS_KIND = "unit_counts"
_FREQUENT_KIND = "frequent_units"
_PARAGRAPH_BREAK = re.compile(r"(\n[^\S\n]*\n\s*)")


def _check_unit(unit: str) -> None:
    if unit not in UNITS:
        raise ValueError(f"line dedup unit={unit!r}; use 'line' or 'paragraph'")


def split_units(text: str, unit: str) -> list[tuple[str, str]]:
    """``text`` as (unit, separator after it) pairs; joining them gives ``text`` back."""
    _check_unit(unit)
    if unit == "line":
        pieces = text.split("\n")
        return [(p, "\n") for p in pieces[:-1]] + [(pieces[-1], "")]
    parts = _PARAGRAPH_BREAK.split(text)
    return list(zip(parts[::2], parts[1::2] + [""]))


def _key(normalized: str) -> int | None:
    if not normalized:
        return None
    return int.from_bytes(hashlib.blake2b(normalized.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little")


def unit_keys(text: str, unit: str) -> tuple[list[tuple[str, str]], list[int | None]]:
    """``split_units(text, unit)`` and each unit's key: BLAKE2b-64 of its normalised text
    (UTF-8), or None when it normalises to nothing."""
    pieces = split_units(text, unit)
    if unit == "line":
        return pieces, [_key(line) for line in normalize_lines(text)]
    return pieces, [_key(normalize(piece)) for piece, _ in pieces]


class LineCounter:
    """Counts, over the documents of one shard, how many documents contain each unit."""

    def __init__(self, unit: str = "line"):
        _check_unit(unit)
        self.unit = unit
        self._keys = array.array("Q")

    def add(self, text: str) -> None:
        """Count the distinct units of one document."""
        keys = set(unit_keys(text, self.unit)[1])
        keys.discard(None)
        self._keys.extend(keys)

    def write(self, path: Path) -> None:
        """Write the (key, document count) table to ``path`` (.npz) atomically."""
        keys, counts = np.unique(np.frombuffer(self._keys, dtype=np.uint64), return_counts=True)
        store.write_npz(path, _COUNTS_KIND, {"unit": self.unit},
                        {"keys": keys, "counts": counts.astype(np.int64)})


def merge_line_counts(count_paths: Sequence[Path], out_path: Path, max_occurrences: int) -> int:
    """Add the shards' counts; write the keys of units found in more than
    ``max_occurrences`` documents to ``out_path`` atomically. Returns how many there are."""
    if not isinstance(max_occurrences, int) or max_occurrences < 1:
        raise ValueError(f"line dedup max_occurrences={max_occurrences!r}; use an integer >= 1")
    if not count_paths:
        raise ValueError("merge_line_counts: no count files given; pass every shard's LineCounter file")
    units, keys, counts = set(), [], []
    for path in count_paths:
        header, a = store.read_npz(path, _COUNTS_KIND, ["keys", "counts"])
        units.add(header["unit"])
        keys.append(a["keys"])
        counts.append(a["counts"])
    if len(units) > 1:
        raise ValueError(f"line counts {[str(p) for p in count_paths]} mix units {sorted(units)}; "
                         "count every shard with one unit")
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    totals = np.bincount(inverse.ravel(), weights=np.concatenate(counts), minlength=unique.size)
    frequent = unique[totals > max_occurrences]
    store.write_npz(out_path, _FREQUENT_KIND, {"unit": units.pop(), "max_occurrences": max_occurrences},
                    {"keys": frequent})
    return int(frequent.size)


class RepeatedLineRemover:
    """Modifier: removes every unit listed by ``merge_line_counts`` at ``frequent_path``;
    counts removals under the unit's name ("line" or "paragraph")."""

    name = "line_dedup"

    def __init__(self, frequent_path: str):
        header, a = store.read_npz(Path(frequent_path), _FREQUENT_KIND, ["keys"])
        self.frequent_path = str(frequent_path)
        self.unit = header["unit"]
        self._frequent = frozenset(a["keys"].tolist())

    def __call__(self, text: str, lang: str | None) -> tuple[str, dict[str, int]]:
        pieces, keys = unit_keys(text, self.unit)
        kept = [piece for piece, key in zip(pieces, keys) if key not in self._frequent]
        removed = len(pieces) - len(kept)
        if not removed:
            return text, {}
        if kept and kept[-1] is not pieces[-1]:
            kept[-1] = (kept[-1][0], "")  # the last unit went: do not end on its separator
        return "".join(p + sep for p, sep in kept), {self.unit: removed}
