"""Hashed sparse text features for the linear classifiers.

A text is lower-cased and turned into n-gram features whose hashes pick one of
`n_buckets` weights (the hashing trick, as in fastText and Spark's HashingTF):

* words (maximal runs of letters/digits outside CJK scripts): unigrams and
  bigrams of adjacent words;
* CJK characters (Han, Hiragana, Katakana), which have no spaces between
  words: character 1-, 2- and 3-grams inside each contiguous CJK run;
* optionally (`char_ngrams=N`), character 1..N-grams of the non-CJK text,
  spaces and punctuation included, which catch misspellings and obfuscation.

Hashes are process-independent: words go through CRC-32 and characters through
their code points, then a fixed 64-bit mixer; Python's salted `hash()` is never
used, so every process and machine computes the same features. A document's
vector holds the counts of its buckets scaled to unit L2 norm.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse

_CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
_CJK_CLASS = "".join(f"\\u{lo:04x}-\\u{hi:04x}" for lo, hi in _CJK_RANGES)
_WORD_RE = re.compile(f"[^\\W{_CJK_CLASS}]+")
_CJK_RE = re.compile(f"[{_CJK_CLASS}]")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
# Kind tags keep words, CJK characters and other characters in separate hash spaces.
_WORD_TAG = np.uint64(1 << 40)
_CJK_TAG = np.uint64(2 << 40)
_CHAR_TAG = np.uint64(3 << 40)


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a fixed bijection of uint64 that spreads every input bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hash of the ordered pair (a, b) of feature hashes."""
    return _mix(a * _GOLDEN + b)


def _ngram_hashes(unigrams: np.ndarray, valid: np.ndarray, max_n: int) -> list[np.ndarray]:
    """Hashes of the 1..max_n-grams of a sequence whose every member is in a `valid` run."""
    out = [unigrams[valid]]
    grams, ok = unigrams, valid
    for n in range(2, max_n + 1):
        grams = _combine(grams[:-1], unigrams[n - 1:])
        ok = ok[:-1] & valid[n - 1:]
        out.append(grams[ok])
    return out


@dataclass(frozen=True)
class HashedFeatures:
    """Maps texts to sparse unit-norm vectors of `n_buckets` hashed n-gram counts."""

    n_buckets: int = 1 << 20
    char_ngrams: int = 0

    def __post_init__(self) -> None:
        if self.n_buckets < 2:
            raise ValueError(f"n_buckets={self.n_buckets}: need at least 2 buckets (2**20 is a good size)")
        if self.char_ngrams < 0:
            raise ValueError(f"char_ngrams={self.char_ngrams}: must be 0 (off) or a maximum n-gram length >= 1")

    def hashes(self, text: str) -> np.ndarray:
        """The 64-bit hashes of every feature occurrence in `text`, in a fixed order."""
        text = text.lower()
        words = _WORD_RE.findall(text)
        parts: list[np.ndarray] = []
        if words:
            crc = np.fromiter((zlib.crc32(w.encode("utf-8")) for w in words), dtype=np.uint64, count=len(words))
            parts += _ngram_hashes(_mix(crc | _WORD_TAG), np.ones(len(words), dtype=bool), 2)
        if self.char_ngrams or _CJK_RE.search(text):
            parts += self._char_hashes(text)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)

    def _char_hashes(self, text: str) -> list[np.ndarray]:
        """CJK character 1..3-grams, plus the optional non-CJK character n-grams."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        is_cjk = np.zeros(len(codes), dtype=bool)
        for lo, hi in _CJK_RANGES:
            is_cjk |= (codes >= lo) & (codes <= hi)
        parts = _ngram_hashes(_mix(codes | _CJK_TAG), is_cjk, 3) if is_cjk.any() else []
        if self.char_ngrams:
            parts += _ngram_hashes(_mix(codes | _CHAR_TAG), ~is_cjk, self.char_ngrams)
        return parts

    def vector(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(sorted bucket indices, float32 values of unit L2 norm) of `text`; empty if it has no features."""
        buckets, counts = np.unique(self.hashes(text) % np.uint64(self.n_buckets), return_counts=True)
        values = counts.astype(np.float32)
        if len(values):
            values /= np.sqrt(np.dot(values, values))
        return buckets.astype(np.int64), values

    def matrix(self, texts: list[str]) -> scipy.sparse.csr_matrix:
        """The (len(texts), n_buckets) CSR matrix of `vector` rows."""
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        all_indices, all_values = [], []
        for row, text in enumerate(texts):
            indices, values = self.vector(text)
            all_indices.append(indices)
            all_values.append(values)
            indptr[row + 1] = indptr[row] + len(indices)
        indices = np.concatenate(all_indices) if texts else np.zeros(0, dtype=np.int64)
        values = np.concatenate(all_values) if texts else np.zeros(0, dtype=np.float32)
        return scipy.sparse.csr_matrix((values, indices, indptr), shape=(len(texts), self.n_buckets))
