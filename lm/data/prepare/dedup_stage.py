"""Cross-shard steps: exact, MinHash and line dedup in two phases around a barrier.

A cross-shard step has three methods, run by the executor:

* ``write_signatures(shard, ids, texts, langs, path)``: phase 1, in every task, on the
  documents that task kept (the task id is the shard name);
* ``combine(paths, out_path)``: the global phase, once, over every task's file;
* ``applier(out_path, shard)``: phase 2, in every task: a callable
  ``(doc_id, text, lang) -> reason | None | (text, counts)``, like a filter or modifier.

Here they wrap `lm.data.dedup`: the first document (by task, then position) of
each exact or near-duplicate cluster is kept; repeated lines are removed from every
document that holds them (no copy kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lm.data.checks import check_at_least, check_fraction

from lm.data.dedup import (LineCounter, MinHasher, RepeatedLineRemover, cluster_near_duplicates, exact_key,
                           find_exact_duplicates, load_drops, merge_line_counts, write_exact_keys, write_signatures)


class DropListed:
    """Phase 2 of exact and MinHash dedup: drop the documents the drop list names."""

    def __init__(self, reason: str, drop_list: Path, shard: str):
        self.reason = reason
        self.dropped = frozenset(load_drops(drop_list, shard))

    def __call__(self, doc_id: str, text: str, lang: str | None) -> str | None:
        return self.reason if doc_id in self.dropped else None


class ExactDedup:
    """Exact dedup on `lm.data.dedup.exact_key` (lowercased, punctuation and whitespace folded)."""

    name = "exact_dedup"

    def write_signatures(self, shard: str, ids: Sequence[str], texts: Sequence[str],
                         langs: Sequence[str | None], path: Path) -> None:
        write_exact_keys(path, shard, ids, [exact_key(t) for t in texts])

    def combine(self, paths: Sequence[Path], out_path: Path) -> None:
        find_exact_duplicates(paths, out_path)

    def applier(self, out_path: Path, shard: str) -> DropListed:
        return DropListed(f"{self.name}.duplicate", out_path, shard)


class MinHashDedup:
    """Fuzzy dedup: MinHash signatures, LSH with `bands` x `rows` == `num_perm` (FineWeb's
    14 x 8 = 112 by default), optional verification at `threshold` estimated Jaccard."""

    name = "minhash_dedup"

    def __init__(self, num_perm: int = 112, shingle: str = "word", ngram: int = 5, seed: int = 1,
                 bands: int = 14, rows: int = 8, threshold: float | None = None,
                 char_langs: Sequence[str] = ("zh", "ja", "th", "lo", "km", "my")):
        for name, value in dict(num_perm=num_perm, ngram=ngram, bands=bands, rows=rows).items():
            check_at_least(name, value, 1)
        if threshold is not None:
            check_fraction("threshold", threshold, open_low=True)
        if bands * rows != num_perm:
            raise ValueError(f"bands x rows = {bands} x {rows} = {bands * rows} must equal num_perm={num_perm}")
        self.hasher = MinHasher(num_perm=num_perm, shingle=shingle, ngram=ngram, seed=seed,
                                char_langs=tuple(char_langs))
        self.bands, self.rows, self.threshold = bands, rows, threshold

    def write_signatures(self, shard: str, ids: Sequence[str], texts: Sequence[str],
                         langs: Sequence[str | None], path: Path) -> None:
        sigs = np.stack([self.hasher.signature(t, lang) for t, lang in zip(texts, langs)]) if texts else \
            np.zeros((0, self.hasher.num_perm), np.uint32)
        write_signatures(path, shard, ids, sigs, self.hasher)

    def combine(self, paths: Sequence[Path], out_path: Path) -> None:
        cluster_near_duplicates(paths, out_path, bands=self.bands, rows=self.rows, threshold=self.threshold)

    def applier(self, out_path: Path, shard: str) -> DropListed:
        return DropListed(f"{self.name}.near_duplicate", out_path, shard)


class _RemoveRepeated:
    def __init__(self, remover: RepeatedLineRemover):
        self.remover = remover

    def __call__(self, doc_id: str, text: str, lang: str | None) -> tuple[str, dict[str, int]]:
        return self.remover(text, lang)


class LineDedup:
    """Removes every line (or paragraph) found in more than `max_occurrences` documents
    across all shards, from every document holding it."""

    name = "line_dedup"

    def __init__(self, max_occurrences: int, unit: str = "line"):
        if not isinstance(max_occurrences, int) or max_occurrences < 1:
            raise ValueError(f"line_dedup max_occurrences={max_occurrences!r}; use an integer >= 1")
        self.max_occurrences = max_occurrences
        self.unit = unit
        LineCounter(unit)  # checks the unit now

    def write_signatures(self, shard: str, ids: Sequence[str], texts: Sequence[str],
                         langs: Sequence[str | None], path: Path) -> None:
        counter = LineCounter(self.unit)
        for text in texts:
            counter.add(text)
        counter.write(path)

    def combine(self, paths: Sequence[Path], out_path: Path) -> None:
        merge_line_counts(paths, out_path, self.max_occurrences)

    def applier(self, out_path: Path, shard: str) -> _RemoveRepeated:
        return _RemoveRepeated(RepeatedLineRemover(str(out_path)))
