"""Tokenized documents on disk, in numbered shards.

A shard directory holds, for shard number k:

* ``shard-0000k.tokens``: all token ids of the shard's documents back to back,
  raw little-endian ``uint16`` (vocab_size <= 65536) or ``uint32``;
* ``shard-0000k.index.npy``: int64 offsets into the tokens file, one per
  document plus a final one (document d is ``tokens[index[d]:index[d+1]]``);

and one ``manifest.json`` (format version, dtype, vocab size, tokenizer
fingerprint, per-shard counts, byte sizes and sha256, totals). The manifest is
written last: a directory without one is unfinished.
"""

from __future__ import annotations

import array
import hashlib
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lm.data.read import DataError, Document
from lm.files import atomic_write, write_json_atomic
from lm.data.tokenizer import Tokenizer

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
# Shard files, and the temporary names `atomic_write` gives them while they are written.
_SHARD_FILE = re.compile(r"\.?shard-\d{5,}\.(tokens|index\.npy)(\..+\.tmp)?")
_MANIFEST_KEYS = ("format_version", "dtype", "vocab_size", "tokenizer_fingerprint", "num_docs", "num_tokens", "shards")
_SHARD_KEYS = (
    "tokens_file",
    "tokens_bytes",
    "tokens_sha256",
    "index_file",
    "index_bytes",
    "index_sha256",
    "num_docs",
    "num_tokens",
)


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding ids ``0 .. vocab_size - 1`` (uint16 or uint32)."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def write_token_shards(
    docs_tokens: Iterable[Sequence[int] | np.ndarray],
    out_dir: Path,
    *,
    vocab_size: int,
    tokenizer_fingerprint: str,
    shard_max_tokens: int = 50_000_000,
) -> dict:
    """Write tokenized documents to a shard directory and return its manifest.

    A new shard starts when the next document would push the current one past
    `shard_max_tokens` (a longer document gets a shard of its own). No
    documents give a valid directory with zero shards. A directory with a
    manifest is refused; shard files without one (an interrupted earlier
    write) are deleted first. On any error the shard files written so far are
    deleted, so the directory is never left looking finished.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / MANIFEST_FILE).exists():
        raise DataError(f"{out_dir} already holds finished token shards; delete it or choose another directory")
    _remove_unfinished_shards(out_dir)
    dtype = token_dtype(vocab_size)
    arrays = (_checked_tokens(tokens, i, vocab_size, dtype) for i, tokens in enumerate(docs_tokens))
    shards: list[dict] = []
    try:
        pending = next(arrays, None)
        while pending is not None:
            entry, pending = _write_shard(arrays, pending, out_dir, len(shards), shard_max_tokens)
            shards.append(entry)
        manifest = {
            "format_version": FORMAT_VERSION,
            "dtype": dtype.name,
            "vocab_size": vocab_size,
            "tokenizer_fingerprint": tokenizer_fingerprint,
            "num_docs": sum(s["num_docs"] for s in shards),
            "num_tokens": sum(s["num_tokens"] for s in shards),
            "shards": shards,
        }
        write_json_atomic(manifest, out_dir / MANIFEST_FILE)
    except BaseException:
        _remove_unfinished_shards(out_dir)
        raise
    return manifest


def tokenize_to_shards(
    documents: Iterable[Document], tokenizer: Tokenizer, out_dir: Path, *, batch_size: int = 256, progress: bool = True
) -> dict:
    """Encode documents in batches (no BOS/EOS) and write them with `write_token_shards`."""

    def encoded() -> Iterator[list[int]]:
        docs = iter(documents)
        with tqdm(desc=f"tokenize -> {out_dir}", unit="doc", disable=not progress) as bar:
            while batch := list(itertools.islice(docs, batch_size)):
                yield from tokenizer.encode_batch([d.text for d in batch])
                bar.update(len(batch))

    return write_token_shards(
        encoded(), out_dir, vocab_size=tokenizer.vocab_size, tokenizer_fingerprint=tokenizer.fingerprint
    )


class TokenShards:
    """Read-only view of a finished shard directory; documents are numbered globally
    across shards in shard order."""

    def __init__(self, dir: Path, *, verify: bool = False):
        """Open the directory, checking every file's size against the manifest (and its
        sha256 when `verify`); a mismatch raises DataError naming the file."""
        self._dir = Path(dir)
        self._manifest = _read_manifest(self._dir)
        self._dtype = np.dtype(self._manifest["dtype"])
        self._tokens: list[np.ndarray] = []
        self._indexes: list[np.ndarray] = []
        for entry in self._manifest["shards"]:
            self._tokens.append(self._open_tokens(entry, verify))
            self._indexes.append(self._open_index(entry, verify))
        self._doc_starts = np.cumsum([0] + [len(index) - 1 for index in self._indexes])
        self._doc_lengths = np.concatenate([np.zeros(0, np.int64), *(np.diff(index) for index in self._indexes)])

    @property
    def num_docs(self) -> int:
        return self._manifest["num_docs"]

    @property
    def num_tokens(self) -> int:
        return self._manifest["num_tokens"]

    @property
    def vocab_size(self) -> int:
        return self._manifest["vocab_size"]

    @property
    def tokenizer_fingerprint(self) -> str:
        return self._manifest["tokenizer_fingerprint"]

    @property
    def doc_lengths(self) -> np.ndarray:
        """int64 [num_docs]: token count of every document, in global order."""
        return self._doc_lengths

    def doc(self, i: int) -> np.ndarray:
        """Tokens of global document `i` (a read-only view into the memory-mapped shard)."""
        if not 0 <= i < self.num_docs:
            raise IndexError(f"document {i} out of range [0, {self.num_docs}) in {self._dir}")
        shard = int(np.searchsorted(self._doc_starts, i, side="right")) - 1
        local = i - self._doc_starts[shard]
        index = self._indexes[shard]
        return self._tokens[shard][index[local] : index[local + 1]]

    def _check_file(self, path: Path, size: int, sha256: str, verify: bool) -> None:
        if not path.is_file():
            raise DataError(f"{path}: missing; the shard directory is damaged, re-run prepare")
        actual = path.stat().st_size
        if actual != size:
            raise DataError(
                f"{path}: {actual} bytes but the manifest says {size}; the file is truncated or damaged, re-run prepare"
            )
        if verify and _sha256_file(path) != sha256:
            raise DataError(f"{path}: sha256 differs from the manifest; the file is damaged, re-run prepare")

    def _open_tokens(self, entry: dict, verify: bool) -> np.ndarray:
        path = self._dir / entry["tokens_file"]
        expected = entry["num_tokens"] * self._dtype.itemsize
        if entry["tokens_bytes"] != expected:
            raise DataError(f"{self._dir / MANIFEST_FILE}: {entry['tokens_file']} is listed with inconsistent sizes")
        self._check_file(path, expected, entry["tokens_sha256"], verify)
        if expected == 0:
            return np.zeros(0, self._dtype)
        return np.memmap(path, dtype=self._dtype.newbyteorder("<"), mode="r")

    def _open_index(self, entry: dict, verify: bool) -> np.ndarray:
        path = self._dir / entry["index_file"]
        self._check_file(path, entry["index_bytes"], entry["index_sha256"], verify)
        try:
            index = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{path}: not a readable .npy file ({e}); re-run prepare") from e
        num_docs = entry["num_docs"]
        if (
            index.dtype != np.int64
            or index.shape != (num_docs + 1,)
            or index[0] != 0
            or index[-1] != entry["num_tokens"]
            or np.any(np.diff(index) < 0)
        ):
            raise DataError(
                f"{path}: not {num_docs + 1} non-decreasing int64 offsets from 0 to {entry['num_tokens']}; "
                "re-run prepare"
            )
        return index


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise DataError(f"{directory} is not a finished token-shard directory (no {MANIFEST_FILE}); re-run prepare")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); re-run prepare") from e
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    missing += [f"shards[{i}].{k}" for i, s in enumerate(manifest.get("shards", [])) for k in _SHARD_KEYS if k not in s]
    if missing:
        raise DataError(f"{path}: missing fields {missing}; re-run prepare")
    if manifest["format_version"] != FORMAT_VERSION:
        raise DataError(
            f"{path}: format_version {manifest['format_version']}, this code reads {FORMAT_VERSION}; re-run prepare"
        )
    return manifest


def _checked_tokens(tokens: Sequence[int] | np.ndarray, doc_index: int, vocab_size: int, dtype: np.dtype) -> np.ndarray:
    ids = np.asarray(tokens)
    if ids.size == 0:
        return np.zeros(0, dtype)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(
            f"document {doc_index}: expected a flat sequence of integer token ids, got {ids.dtype}{list(ids.shape)}"
        )
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise DataError(
            f"document {doc_index}: token id {bad} is outside [0, {vocab_size}); "
            "the tokens do not come from a tokenizer with this vocab_size"
        )
    return ids.astype(dtype.newbyteorder("<"), copy=False)


def _write_shard(
    arrays: Iterator[np.ndarray], first: np.ndarray, out_dir: Path, shard_index: int, max_tokens: int
) -> tuple[dict, np.ndarray | None]:
    """Write documents starting with `first` into shard `shard_index` until the next one
    would not fit; return the shard's manifest entry and that next document (or None)."""
    tokens_file = f"shard-{shard_index:05d}.tokens"
    index_file = f"shard-{shard_index:05d}.index.npy"
    offsets = array.array("q", [0])
    tokens_digest = hashlib.sha256()
    pending: np.ndarray | None = first
    with atomic_write(out_dir / tokens_file) as f:
        while pending is not None and (len(offsets) == 1 or offsets[-1] + len(pending) <= max_tokens):
            data = pending.tobytes()
            f.write(data)
            tokens_digest.update(data)
            offsets.append(offsets[-1] + len(pending))
            pending = next(arrays, None)
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(offsets, dtype=np.int64))
    index_bytes = buffer.getvalue()
    with atomic_write(out_dir / index_file) as f:
        f.write(index_bytes)
    entry = {
        "tokens_file": tokens_file,
        "tokens_bytes": offsets[-1] * first.itemsize,
        "tokens_sha256": tokens_digest.hexdigest(),
        "index_file": index_file,
        "index_bytes": len(index_bytes),
        "index_sha256": hashlib.sha256(index_bytes).hexdigest(),
        "num_docs": len(offsets) - 1,
        "num_tokens": offsets[-1],
    }
    return entry, pending


def _remove_unfinished_shards(directory: Path) -> None:
    """Delete shard files and the temporary files of interrupted shard writes."""
    for path in directory.iterdir():
        if _SHARD_FILE.fullmatch(path.name):
            path.unlink()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
