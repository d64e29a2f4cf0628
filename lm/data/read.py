"""Read raw text documents from files, directories and Hugging Face datasets.

Supported sources (see `iter_documents`):

* a plain text file: one document per file (any suffix when named directly);
* ``.jsonl`` / ``.jsonl.gz`` / ``.jsonl.zst``: one JSON object per line, text
  under ``text_field``;
* ``.parquet``: the ``text_field`` column, read one record batch at a time;
* a directory: every file below it with a suffix in `JSONL_SUFFIXES`,
  `PARQUET_SUFFIX` or `TEXT_SUFFIXES`, in sorted relative-path order; other
  files and hidden entries (names starting with ".") are ignored;
* ``hf:NAME`` or ``hf:NAME:CONFIG``: a streamed Hugging Face dataset.

This module also holds `DataError`, the exception every ``lm.data`` module
raises for bad input, and `atomic_write`, used for every file ``lm.data``
writes.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard


JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")
PARQUET_SUFFIX = ".parquet"
TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst", ".py")
HF_PREFIX = "hf:"
_PARQUET_BATCH_ROWS = 1024


class DataError(ValueError):
    """Bad input data or a bad data directory; the message names the culprit."""


@dataclass(frozen=True)
class Document:
    """One text document; `id` says where it came from (e.g. "a.jsonl:17")."""

    id: str
    text: str


def iter_documents(source: str, *, text_field: str = "text", hf_split: str = "train") -> Iterator[Document]:
    """Yield the non-empty documents of `source` (a file, directory or ``hf:NAME[:CONFIG]``).

    The source is checked when this is called (missing path, missing
    ``datasets`` package); file contents are checked while iterating.
    """
    if source.startswith(HF_PREFIX):
        return _iter_hf(source, text_field=text_field, split=hf_split)
    path = Path(source)
    if path.is_dir():
        files = _directory_files(path)
        if not files:
            raise DataError(
                f"{path}: directory holds no readable files; supported suffixes are "
                f"{', '.join((*JSONL_SUFFIXES, PARQUET_SUFFIX, *TEXT_SUFFIXES))}"
            )
        return itertools.chain.from_iterable(_iter_file(f, text_field) for f in files)
    if path.is_file():
        return _iter_file(path, text_field)
    raise DataError(f"{source}: no such file or directory (nor an 'hf:NAME' dataset)")


def iter_sources(sources: Sequence[str], *, text_field: str = "text", hf_split: str = "train") -> Iterator[Document]:
    """Chain `iter_documents` over several sources, in the given order."""
    iterators = [iter_documents(s, text_field=text_field, hf_split=hf_split) for s in sources]
    return itertools.chain.from_iterable(iterators)


def _directory_files(root: Path) -> list[Path]:
    """Readable files under `root`, skipping hidden entries, sorted by relative path."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files += [Path(dirpath) / name for name in filenames if not name.startswith(".") and _kind(name)]
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def _kind(name: str) -> str | None:
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIX):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def _iter_file(path: Path, text_field: str) -> Iterator[Document]:
    kind = _kind(path.name)
    if kind == "jsonl":
        return _iter_jsonl(path, text_field)
    if kind == "parquet":
        return _iter_parquet(path, text_field)
    return _iter_text_file(path)


def _iter_text_file(path: Path) -> Iterator[Document]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 ({e.reason} at byte {e.start}); re-encode the file as UTF-8 or remove it"
        ) from e
    if text:
        yield Document(id=str(path), text=text)


def _jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                yield from enumerate(f, start=1)
        elif path.name.endswith(".zst"):
            yield from enumerate(_split_lines(_zstd_chunks(path)), start=1)
        else:
            with open(path, "rb") as f:
                yield from enumerate(f, start=1)
    except (OSError, EOFError, zstandard.ZstdError) as e:
        raise DataError(f"{path}: cannot read ({e}); the file is corrupt or truncated") from e


def _zstd_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed bytes of every zstd frame in the file, in order.

    (zstandard's stream_reader stops silently after the first frame and at a
    cut-off frame; this does neither.)
    """
    decompressor = zstandard.ZstdDecompressor()
    frame = None
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            while data:
                if frame is None:
                    frame = decompressor.decompressobj()
                yield frame.decompress(data)
                data = b""
                if frame.eof:
                    data, frame = frame.unused_data, None
    if frame is not None:
        raise DataError(f"{path}: cannot read (data ends inside a zstd frame); the file is corrupt or truncated")


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending


def _iter_jsonl(path: Path, text_field: str) -> Iterator[Document]:
    for lineno, raw in _jsonl_lines(path):
        yield from _jsonl_record(path, lineno, raw, text_field)


def _jsonl_record(path: Path, lineno: int, raw: bytes, text_field: str) -> Iterator[Document]:
    where = f"{path}:{lineno}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not valid UTF-8 ({e.reason}); re-encode the file as UTF-8") from e
    if not line.strip():
        return
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: malformed JSON ({e.msg} at column {e.colno}); fix or delete this line") from e
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    text = _text_of(record, text_field, where)
    if text:
        yield Document(id=where, text=text)


def _text_of(record: dict, text_field: str, where: str) -> str:
    if text_field not in record:
        raise DataError(
            f"{where}: no field {text_field!r} (fields: {sorted(record)}); pass text_field=<the field holding the text>"
        )
    text = record[text_field]
    if not isinstance(text, str):
        raise DataError(f"{where}: field {text_field!r} is {type(text).__name__}, expected a string")
    return text


def _iter_parquet(path: Path, text_field: str) -> Iterator[Document]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file ({e})") from e
    schema = parquet.schema_arrow
    if text_field not in schema.names:
        raise DataError(
            f"{path}: no column {text_field!r} (columns: {schema.names}); pass text_field=<the column holding the text>"
        )
    column_type = schema.field(text_field).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise DataError(f"{path}: column {text_field!r} has type {column_type}, expected string")
    row = 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[text_field]):
        for text in batch.column(0).to_pylist():
            row += 1
            if text is None:
                raise DataError(f"{path}: row {row} has a null {text_field!r}; drop or fill null rows")
            if text:
                yield Document(id=f"{path}:{row}", text=text)


def _iter_hf(source: str, *, text_field: str, split: str) -> Iterator[Document]:
    name, _, config = source[len(HF_PREFIX) :].partition(":")
    if not name:
        raise DataError(f"{source!r}: expected 'hf:NAME' or 'hf:NAME:CONFIG'")
    try:
        import datasets
    except ImportError as e:
        raise DataError(f"{source!r} needs the Hugging Face 'datasets' package: pip install 'lm[hf]'") from e
    stream = datasets.load_dataset(name, config or None, split=split, streaming=True)
    return _iter_hf_records(stream, f"{source}:{split}", text_field)


def _iter_hf_records(stream: Iterator[dict], prefix: str, text_field: str) -> Iterator[Document]:
    for index, record in enumerate(stream):
        where = f"{prefix}:{index}"
        text = _text_of(record, text_field, where)
        if text:
            yield Document(id=where, text=text)
