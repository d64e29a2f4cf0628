"""Read raw text documents from files, directories and Hugging Face datasets.

Supported sources (see `iter_documents`):

* a plain text file: one document per file (any suffix when named directly);
* ``.jsonl`` / ``.jsonl.gz`` / ``.jsonl.zst``: one JSON object per line, text
  under ``text_field``;
* ``.parquet``: the ``text_field`` column, read one record batch at a time;
* a directory: every file below it with a suffix in `JSONL_SUFFIXES`,
  `PARQUET_SUFFIX` or `TEXT_SUFFIXES` (any case; text also ``.gz`` / ``.zst``), in
  sorted relative-path order; other files, hidden entries (names starting with
  "."), broken or looping links and directory links are ignored (`lm.data.find`);
* ``hf:NAME`` or ``hf:NAME:CONFIG``: a streamed Hugging Face dataset.

This module also holds `DataError`, the exception every ``lm.data`` module
raises for bad input, and `UnreadableFile`, its kind for a file that cannot be
opened or decompressed (with the line reading stopped at).
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from lm.data.find import JSONL_SUFFIXES, PARQUET_SUFFIX, TEXT_SUFFIXES, file_problem, kind_of, walk_directory

HF_PREFIX = "hf:"
_PARQUET_BATCH_ROWS = 1024
_READ_CHUNK = 1 << 16  # compressed bytes fed to a decompressor at a time
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, zstandard.ZstdError)


class DataError(ValueError):
    """Bad input data or a bad data directory; the message names the culprit."""


class UnreadableFile(DataError):
    """A file that cannot be opened, or whose compressed data is corrupt or cut off at `line`
    (the first line not read; None for a whole-file read). `reason` leaves out the path."""

    def __init__(self, path: Path, reason: str, line: int | None = None):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.line = path, reason, line


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
    if os.path.lexists(path):
        raise DataError(f"{source}: {file_problem(path)}")
    raise DataError(f"{source}: no such file or directory (nor an 'hf:NAME' dataset)")


def iter_sources(sources: Sequence[str], *, text_field: str = "text", hf_split: str = "train") -> Iterator[Document]:
    """Chain `iter_documents` over several sources, in the given order."""
    iterators = [iter_documents(s, text_field=text_field, hf_split=hf_split) for s in sources]
    return itertools.chain.from_iterable(iterators)


def _directory_files(root: Path) -> list[Path]:
    """Readable files under `root` (see the module docstring), sorted by relative path."""
    return walk_directory(root, ("jsonl", "parquet", "text"))[0]


def _iter_file(path: Path, text_field: str) -> Iterator[Document]:
    kind = kind_of(path.name)
    if kind == "jsonl":
        return _iter_jsonl(path, text_field)
    if kind == "parquet":
        return _iter_parquet(path, text_field)
    return _iter_text_file(path)


def read_file_bytes(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a file, decompressed when its name ends .gz or .zst; with `limit`, at
    most limit + 1 bytes (more than `limit` means the file is too long). UnreadableFile if
    it cannot be opened or its compressed data is corrupt or cut off."""
    size = -1 if limit is None else limit + 1
    with _open(path) as f:
        try:
            if path.name.lower().endswith(".gz"):
                return gzip.GzipFile(fileobj=f).read(size)
            if path.name.lower().endswith(".zst"):
                data = b""
                for chunk in _zstd_chunks(f):
                    data += chunk
                    if limit is not None and len(data) > limit:
                        break
                return data[:size] if limit is not None else data
            return f.read(size)
        except _DECOMPRESS_ERRORS as e:
            raise UnreadableFile(path, f"corrupt or truncated file ({e})") from e


def _open(path: Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise UnreadableFile(path, f"cannot read ({e.strerror})") from e


def _iter_text_file(path: Path) -> Iterator[Document]:
    data = read_file_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 ({e.reason} at byte {e.start}); re-encode the file as UTF-8 or remove it"
        ) from e
    if text:
        yield Document(id=str(path), text=text)


def jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a JSON-lines file, decompressed by suffix (any case).
    UnreadableFile names the first line that could not be read."""
    lineno = 0
    with _open(path) as f:
        name = path.name.lower()
        try:
            if name.endswith(".gz"):
                lines = gzip.GzipFile(fileobj=f)
            elif name.endswith(".zst"):
                lines = _split_lines(_zstd_chunks(f))
            else:
                lines = f
            for lineno, line in enumerate(lines, start=1):
                yield lineno, line
        except _DECOMPRESS_ERRORS as e:
            raise UnreadableFile(path, f"corrupt or truncated file: cannot read line {lineno + 1} or after ({e})",
                                 lineno + 1) from e


def _zstd_chunks(f) -> Iterator[bytes]:
    """Decompressed bytes of every zstd frame in the open file `f`, in order.

    (zstandard's stream_reader stops silently after the first frame and at a
    cut-off frame; this does neither: a cut-off frame raises EOFError.)
    """
    decompressor = zstandard.ZstdDecompressor()
    frame = None
    while data := f.read(_READ_CHUNK):
        while data:
            if frame is None:
                frame = decompressor.decompressobj()
            yield frame.decompress(data)
            data = b""
            if frame.eof:
                data, frame = frame.unused_data, None
    if frame is not None:
        raise EOFError("data ends inside a zstd frame")


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending


def _iter_jsonl(path: Path, text_field: str) -> Iterator[Document]:
    for lineno, raw in jsonl_lines(path):
        yield from _jsonl_record(path, lineno, raw, text_field)


def jsonl_object(path: Path, lineno: int, raw: bytes) -> dict | None:
    """The JSON object on line `lineno` of `path` (`raw`, from `jsonl_lines`), or None for a
    blank line; DataError naming `path:lineno` for invalid UTF-8, malformed JSON or a
    non-object."""
    where = f"{path}:{lineno}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not valid UTF-8 ({e.reason}); re-encode the file as UTF-8") from e
    if not line.strip():
        return None
    try:  # without the line break, a line cut short reports its own last column, not column 1
        record = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: malformed JSON ({e.msg} at column {e.colno}); fix or delete this line") from e
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _jsonl_record(path: Path, lineno: int, raw: bytes, text_field: str) -> Iterator[Document]:
    record = jsonl_object(path, lineno, raw)
    if record is None:
        return
    where = f"{path}:{lineno}"
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
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[text_field]):
            for text in batch.column(0).to_pylist():
                row += 1
                if text is None:
                    raise DataError(f"{path}: row {row} has a null {text_field!r}; drop or fill null rows")
                if text:
                    yield Document(id=f"{path}:{row}", text=text)
    except (pa.ArrowException, OSError) as e:
        raise UnreadableFile(path, f"corrupt parquet file: cannot read row {row + 1} or after ({e})", row + 1) from e


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
