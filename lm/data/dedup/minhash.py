"""MinHash signatures of documents: the per-shard phase of fuzzy dedup.

A document's shingles are the n-grams of its normalised text (``exact.normalize``):
word n-grams (words are the space-separated tokens), or character n-grams for
languages written without spaces (``char_langs``, Chinese and Japanese by default) or
for every document with ``shingle="char"``. A text shorter than n words (characters)
is one shingle; an empty text has no shingles and gets the all-ones signature, so
empty documents match each other and nothing else.

Hashing is numpy arithmetic on uint64, identical on every process and machine (no
Python ``hash()``): each shingle's code points get a polynomial hash mod 2^64 (from
prefix sums, so all shingles of a document are hashed at once), then a SplitMix64
finaliser, whose top 32 bits are the shingle hash ``x``. Permutation ``i`` is the
multiply-add-shift hash ``(a_i * x + b_i) mod 2^64 >> 32``, with ``a_i`` and ``b_i``
taken from BLAKE2b of the seed, so signatures do not depend on numpy's random streams.
A signature is the uint32 minimum of each permutation over the document's shingles.

Defaults follow FineWeb (Penedo et al. 2024): 5-gram word shingles and 112
permutations (14 bands x 8 rows in ``lsh``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lm.data.dedup import store
from lm.data.dedup.exact import SPACE, normalized_codepoints

KIND = "minhash_signatures"
_BASE = 0x100000001B3  # odd, so it has an inverse mod 2^64
_BASE_INV = pow(_BASE, -1, 2**64)
_LENGTH_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHUNK = 2048  # shingles per block of the (shingles x permutations) product


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection on uint64 that spreads every input bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _powers(base: int, n: int) -> np.ndarray:
    """base^0 .. base^(n-1) mod 2^64."""
    out = np.full(n, base, dtype=np.uint64)
    out[0] = 1
    return np.cumprod(out, dtype=np.uint64)


def span_hashes(cp: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """32-bit hashes (as uint64) of the code point spans ``cp[starts[i]:ends[i]]``; a
    span's hash depends only on its content."""
    cp = cp.astype(np.uint64)
    prefix = np.zeros(cp.size + 1, dtype=np.uint64)
    np.cumsum(cp * _powers(_BASE_INV, cp.size), out=prefix[1:])
    # sum_k cp[k] * base^-(k - start) over the span, from the prefix sums.
    poly = (prefix[ends] - prefix[starts]) * _powers(_BASE, cp.size + 1)[starts]
    lengths = (ends - starts).astype(np.uint64)
    return splitmix64(poly ^ (lengths * _LENGTH_MIX)) >> np.uint64(32)


def _seeded_uint64(seed: int, label: str, count: int) -> np.ndarray:
    digests = (hashlib.blake2b(f"{seed}:{label}:{i}".encode(), digest_size=8).digest() for i in range(count))
    return np.frombuffer(b"".join(digests), dtype="<u8").astype(np.uint64)


class MinHasher:
    """MinHash signatures with ``num_perm`` permutations over word or character n-grams.

    ``shingle``: "word" (character n-grams only for ``lang`` in ``char_langs``) or "char"
    (character n-grams for every document). ``ngram``: n of the n-grams. ``seed``
    picks the permutations; shards compared with each other must share every setting.
    """

    def __init__(self, num_perm: int = 112, shingle: str = "word", ngram: int = 5, seed: int = 1,
                 char_langs: Sequence[str] = ("zh", "ja", "th", "lo", "km", "my")):
        if shingle not in ("word", "char"):
            raise ValueError(f"MinHasher shingle={shingle!r}; use 'word' or 'char'")
        for name, value in (("num_perm", num_perm), ("ngram", ngram)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MinHasher {name}={value!r}; use a positive integer")
        self.num_perm, self.shingle, self.ngram, self.seed = num_perm, shingle, ngram, seed
        self.char_langs = tuple(char_langs)
        self._a = _seeded_uint64(seed, "a", num_perm) | np.uint64(1)
        self._b = _seeded_uint64(seed, "b", num_perm)

    @property
    def params(self) -> dict:
        """The settings that decide a signature (stored with each shard's signatures)."""
        return {"num_perm": self.num_perm, "shingle": self.shingle, "ngram": self.ngram,
                "seed": self.seed, "char_langs": list(self.char_langs)}

    def shingle_hashes(self, text: str, lang: str | None = None) -> np.ndarray:
        """32-bit hashes (as uint64) of the document's shingles, one per n-gram position."""
        cp = normalized_codepoints(text)
        n = self.ngram
        if cp.size == 0:
            return np.zeros(0, dtype=np.uint64)
        if self.shingle == "char" or lang in self.char_langs:
            starts = np.arange(max(cp.size - n + 1, 1))
            ends = np.minimum(starts + n, cp.size)
        else:
            spaces = np.flatnonzero(cp == SPACE)
            word_starts = np.concatenate(([0], spaces + 1))
            word_ends = np.concatenate((spaces, [cp.size]))
            count = max(word_starts.size - n + 1, 1)
            starts = word_starts[:count]
            ends = word_ends[np.minimum(np.arange(count) + n - 1, word_ends.size - 1)]
        return span_hashes(cp, starts, ends)

    def signature(self, text: str, lang: str | None = None) -> np.ndarray:
        """The uint32 MinHash signature (``num_perm`` values) of ``text``."""
        x = self.shingle_hashes(text, lang)
        sig = np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint64)
        for i in range(0, x.size, _CHUNK):
            block = self._a * x[i:i + _CHUNK, None] + self._b
            np.minimum(sig, (block >> np.uint64(32)).min(axis=0), out=sig)
        return sig.astype(np.uint32)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal signature entries along the last axis: the MinHash estimate of
    the shingle-set Jaccard similarity."""
    return np.mean(sig_a == sig_b, axis=-1)


def write_signatures(path: Path, shard: str, ids: Sequence[str], signatures: np.ndarray,
                     hasher: MinHasher) -> None:
    """Save one shard's ids and signatures (rows in id order) to ``path`` (.npz) atomically."""
    signatures = np.asarray(signatures)
    if signatures.dtype != np.uint32 or signatures.ndim != 2 or signatures.shape[1] != hasher.num_perm:
        raise ValueError(f"signatures for shard {shard!r}: got {signatures.dtype} {signatures.shape}, "
                         f"expected uint32 (docs, {hasher.num_perm}) from this MinHasher")
    store.write_shard_file(path, KIND, shard, ids, {"signatures": signatures}, hasher.params)
