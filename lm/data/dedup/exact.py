"""Text normalisation for deduplication, and exact dedup in two phases.

``normalize`` defines what "the same text" means for every dedup step (exact keys,
MinHash shingles, repeated lines): lowercase (``str.lower``), every Unicode punctuation
character (general category ``P*``) becomes a space, every run of whitespace
(``str.isspace``) becomes one space, leading and trailing spaces go. Symbols, digits
and combining marks are kept. So ``"Hello,  World!"`` and ``"hello world"`` match.

Exact dedup: per shard, ``exact_key(text)`` (BLAKE2b-128 of the normalised text as
UTF-32-LE) for every document, saved with ``write_exact_keys``; then one global
``find_exact_duplicates`` over all shards' key files keeps the first document of each
key in (shard name, position) order and writes the drop list (see ``store``).
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lm.data.dedup import store

KEY_BYTES = 16
SPACE = 32
NEWLINE = 10
# Every code point of general category P* or with str.isspace() lies below U+20000
# (planes 2 and up hold only ideographs, tags and private use); a test checks this
# against the running Python's Unicode database.
_TABLE_SIZE = 0x20000
_KIND = "exact_keys"


@functools.cache
def _separator_table() -> np.ndarray:
    """Boolean table over code points < U+20000: True for punctuation and whitespace."""
    chars = map(chr, range(_TABLE_SIZE))
    return np.fromiter(
        (c.isspace() or unicodedata.category(c)[0] == "P" for c in chars), dtype=bool, count=_TABLE_SIZE)


def _normalize(text: str, keep_newlines: bool) -> np.ndarray:
    cp = np.frombuffer(text.lower().encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    table = _separator_table()
    is_sep = np.zeros(cp.shape, dtype=bool)
    low = cp < _TABLE_SIZE
    is_sep[low] = table[cp[low]]
    if keep_newlines:
        is_sep &= cp != NEWLINE
    # Keep every other character, and of each separator run only its first character
    # (as one space) when a kept character comes before it: leading runs vanish.
    keep = ~is_sep
    keep[1:] |= ~is_sep[:-1]
    out = np.where(is_sep, np.uint32(SPACE), cp)[keep]
    if out.size and out[-1] == SPACE:
        out = out[:-1]
    return out


def normalized_codepoints(text: str) -> np.ndarray:
    """The code points (uint32) of ``normalize(text)``, computed without building the string."""
    return _normalize(text, keep_newlines=False)


def normalize(text: str) -> str:
    """Lowercase; punctuation and whitespace runs become one space; no edge spaces."""
    return normalized_codepoints(text).tobytes().decode("utf-32-le", "surrogatepass")


def normalize_lines(text: str) -> list[str]:
    """``[normalize(line) for line in text.split("\\n")]``, normalising the text in one pass."""
    joined = _normalize(text, keep_newlines=True).tobytes().decode("utf-32-le", "surrogatepass")
    return [line.strip(" ") for line in joined.split("\n")]


def exact_key(text: str) -> bytes:
    """16-byte BLAKE2b digest of the normalised text (UTF-32-LE): equal iff the
    normalised texts are equal, up to hash collisions (2^-128)."""
    return hashlib.blake2b(normalized_codepoints(text).tobytes(), digest_size=KEY_BYTES).digest()


def write_exact_keys(path: Path, shard: str, ids: Sequence[str], keys: Sequence[bytes]) -> None:
    """Save one shard's document ids and their ``exact_key``s to ``path`` (.npz) atomically."""
    if len(ids) != len(keys):
        raise ValueError(f"exact keys for shard {shard!r}: {len(ids)} ids but {len(keys)} keys; "
                         "give one key per document")
    bad = [i for i, k in enumerate(keys) if len(k) != KEY_BYTES]
    if bad:
        raise ValueError(f"exact keys for shard {shard!r}: key of document {ids[bad[0]]!r} has "
                         f"{len(keys[bad[0]])} bytes, expected {KEY_BYTES}; make keys with exact_key()")
    key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
    store.write_shard_file(path, _KIND, shard, ids, {"keys": key_array}, params={})


def find_exact_duplicates(key_paths: Sequence[Path], out_path: Path) -> store.DedupStats:
    """Over all shards' key files, drop every document whose key was seen before in
    (shard name, position) order; write the drop list to ``out_path`` atomically."""
    shards = store.read_shard_files(key_paths, _KIND, ["keys"])
    keys = np.concatenate([s.arrays["keys"] for s in shards])
    as_void = np.ascontiguousarray(keys).view(np.dtype((np.void, KEY_BYTES))).ravel()
    _, first, inverse = np.unique(as_void, return_index=True, return_inverse=True)
    roots = first[inverse.ravel()]
    return store.write_drops(out_path, shards, roots, candidate_pairs=0)
