"""Tolerant readers for `lm data prepare`: bad input becomes a quarantine entry, never an error.

Formats: "text" (one document per file, also .gz / .zst), "jsonl" (also .jsonl.gz /
.jsonl.zst; text under `text_field`), "parquet" (column `text_field`), "csv" (column
`csv_column`, first row is the header) and "hf" (a streamed Hugging Face dataset).
Record ids are "<source>/<file relative to the source root>:<line>" (line, data
row or record number, 1-based), so they do not depend on where the data lives.
Files are read in ranges of records (`start`, `stop`: 0-based, half-open over
lines, rows or records) so a big file can be split across tasks. A file that cannot be
opened, or whose compressed data is corrupt from some line on, ends in one quarantine
entry naming that line. Which files a source reads is `inputs.source_files`'s job.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lm.data.find import is_compressed
from lm.data.read import DataError, UnreadableFile, jsonl_lines, read_file_bytes
from lm.data.prepare.quarantine import QuarantineEntry, excerpt_of
from lm.data.prepare.record import Record

FORMATS = ("text", "jsonl", "parquet", "csv", "hf")


def count_records(path: Path, fmt: str) -> int:
    """How many lines / rows a file holds, for splitting it into tasks (1 for a text file).
    A file unreadable from some line on counts the lines before it plus 1: the task holding
    that line quarantines the rest of the file."""
    lines = 0
    try:
        if fmt == "jsonl":
            for lines, _ in jsonl_lines(path):
                pass
            return lines
        if fmt == "parquet":
            return pq.ParquetFile(path).metadata.num_rows
        if fmt == "csv":
            with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
                _raise_csv_field_limit()
                return max(sum(1 for _ in csv.reader(f)) - 1, 1)
    except (DataError, OSError, pa.ArrowException, csv.Error):
        return lines + 1
    return 1


def read_records(source: str, root: Path, path: Path, fmt: str, *, text_field: str, csv_column: str,
                 start: int = 0, stop: int | None = None, max_bytes: int | None = None,
                 doc_separator: str = "") -> Iterator[Record | QuarantineEntry]:
    """Records [start, stop) of one file, or quarantine entries for what cannot be read.
    A text file is one document or, with a `doc_separator` regex (multiline mode), is cut
    into documents at the end of each match (with a lookahead such as ``\n(?= = )`` the
    next document starts at the looked-ahead text)."""
    rel = path.relative_to(root).as_posix()
    try:
        if fmt == "text":
            yield from _read_text(path, rel, source, max_bytes, doc_separator)
            return
        readers = {"jsonl": _read_jsonl, "parquet": _read_parquet, "csv": _read_csv}
        yield from readers[fmt](path, rel, source, text_field if fmt != "csv" else csv_column, start, stop)
    except UnreadableFile as e:
        yield _bad(source, rel, e.line, e.reason)
    except OSError as e:  # the file went away or became unreadable after planning
        yield _bad(source, rel, None, f"cannot read ({e.strerror})")


def _bad(source: str, rel: str, line: int | None, reason: str, raw: bytes | str = b"") -> QuarantineEntry:
    return QuarantineEntry(source=source, file=rel, line=line, reason=reason, excerpt=excerpt_of(raw))


def _record(source: str, rel: str, line: int, text: str) -> Record:
    return Record(id=f"{source}/{rel}:{line}", text=text, source=source)


def _read_text(path: Path, rel: str, source: str, max_bytes: int | None, separator: str):
    limit = None if separator else max_bytes
    data = read_file_bytes(path, limit)
    if limit is not None and len(data) > limit:
        yield _bad(source, rel, None, f"enormous document: more than {max_bytes} bytes decompressed" if
                   is_compressed(path) else f"enormous document: file of {path.stat().st_size} bytes > {max_bytes}")
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        yield _bad(source, rel, line, f"invalid UTF-8 ({e.reason} at byte {e.start})", data[max(e.start - 40, 0):])
        return
    if not separator:
        yield _record(source, rel, 1, text)
        return
    bounds = [0] + [m.end() for m in re.finditer(separator, text, flags=re.MULTILINE) if m.end() > 0] + [len(text)]
    line = 1
    for a, b in zip(bounds, bounds[1:]):
        if b > a:
            yield _record(source, rel, line, text[a:b])
            line += text.count("\n", a, b)


def _read_jsonl(path, rel, source, field, start, stop):
    for lineno, raw in itertools.islice(jsonl_lines(path), start, stop):
        yield _jsonl_item(raw, source, rel, lineno, field)


def _jsonl_item(raw: bytes, source: str, rel: str, lineno: int, field: str) -> Record | QuarantineEntry:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return _bad(source, rel, lineno, f"invalid UTF-8 ({e.reason} at column {e.start + 1})", raw)
    if not line.strip():
        return _bad(source, rel, lineno, "empty line")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return _bad(source, rel, lineno, f"malformed JSON ({e.msg} at column {e.colno})", raw)
    if not isinstance(obj, dict):
        return _bad(source, rel, lineno, f"expected a JSON object, got {type(obj).__name__}", raw)
    return _field_item(obj, source, rel, lineno, field, raw)


def _field_item(obj: dict, source: str, rel: str, lineno: int, field: str,
                raw: bytes | str) -> Record | QuarantineEntry:
    if field not in obj:
        return _bad(source, rel, lineno, f"missing field {field!r} (fields: {sorted(obj)})", raw)
    text = obj[field]
    if not isinstance(text, str):
        return _bad(source, rel, lineno, f"field {field!r} is {type(text).__name__}, expected a string", raw)
    return _record(source, rel, lineno, text)


def _read_parquet(path, rel, source, field, start, stop):
    try:
        parquet = pq.ParquetFile(path)
        if field not in parquet.schema_arrow.names:
            yield _bad(source, rel, None, f"missing column {field!r} (columns: {parquet.schema_arrow.names})")
            return
        rows = (text for batch in parquet.iter_batches(batch_size=1024, columns=[field])
                for text in batch.column(0).to_pylist())
        for row, text in itertools.islice(enumerate(rows, start=1), start, stop):
            if not isinstance(text, str):
                yield _bad(source, rel, row, f"column {field!r} is {type(text).__name__}, expected a string")
            else:
                yield _record(source, rel, row, text)
    except (pa.ArrowException, OSError) as e:
        yield _bad(source, rel, None, f"not a readable parquet file ({e})")


def _raise_csv_field_limit() -> None:
    # The csv module refuses fields over 128 KiB by default; documents can be longer.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _read_csv(path, rel, source, field, start, stop):
    _raise_csv_field_limit()
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, [])
        except csv.Error as e:
            yield _bad(source, rel, 1, f"unreadable CSV header ({e})")
            return
        if field not in header:
            yield _bad(source, rel, 1, f"missing column {field!r} (columns: {header})")
            return
        column = header.index(field)
        line = reader.line_num + 1
        for row_index in itertools.count():
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                if start <= row_index and (stop is None or row_index < stop):
                    yield _bad(source, rel, line, f"malformed CSV row ({e})")
                line = reader.line_num + 1
                continue
            if row_index >= start and (stop is None or row_index < stop):
                yield _csv_item(row, column, field, source, rel, line)
            elif stop is not None and row_index >= stop:
                return
            line = reader.line_num + 1


def _csv_item(row: list[str], column: int, field: str, source: str, rel: str, line: int) -> Record | QuarantineEntry:
    if column >= len(row):
        return _bad(source, rel, line, f"missing field {field!r} (row has {len(row)} columns)", ",".join(row))
    text = row[column]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", errors="surrogateescape")
        return _bad(source, rel, line, "invalid UTF-8", raw)
    return _record(source, rel, line, text)


def read_hf(source: str, name: str, *, split: str, text_field: str, limit: int) -> Iterator[Record | QuarantineEntry]:
    """Records of a streamed Hugging Face dataset ``hf:NAME[:CONFIG]`` (at most `limit` if > 0)."""
    dataset, _, config = name[len("hf:"):].partition(":")
    try:
        import datasets
    except ImportError as e:
        raise DataError(f"source {source!r} ({name}) needs the Hugging Face 'datasets' package: "
                        "pip install 'lm[hf]'") from e
    stream = datasets.load_dataset(dataset, config or None, split=split, streaming=True)
    rel = f"{dataset}{':' + config if config else ''}:{split}"
    for index, obj in enumerate(itertools.islice(stream, limit or None), start=1):
        yield _field_item(dict(obj), source, rel, index, text_field, json.dumps(obj, default=str)[:400])
