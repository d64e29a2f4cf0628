"""Tolerant readers: bad input becomes quarantine entries naming file and line; task planning."""

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from lm.data.prepare.executor import prepare
from lm.data.prepare.plan import plan_tasks
from lm.data.prepare.quarantine import QuarantineEntry, read_quarantine
from lm.data.prepare.record import Record
from lm.data.prepare.recipe import validate_recipe
from lm.data.prepare.inputs import scan_inputs, source_files
from lm.data.prepare.sources import read_hf, read_records

BAD_JSONL = [
    b'{"text": "good one"}\n',
    b'{"text": "bad \xff byte"}\n',
    b'{"text": "unterminated}\n',
    b'["not", "an", "object"]\n',
    b'{"body": "no text field"}\n',
    b"\n",
    b'{"text": "good two", "x": 1}\n',
]


def compress(name: str, data: bytes) -> bytes:
    if name.endswith(".gz"):
        return gzip.compress(data, mtime=0)
    if name.endswith(".zst"):
        return zstandard.ZstdCompressor().compress(data)
    return data


def read_all(path: Path, fmt: str, **kw) -> list:
    return list(read_records("src", path.parent, path, fmt, text_field=kw.pop("text_field", "text"),
                             csv_column=kw.pop("csv_column", "text"), **kw))


def summary(items: list) -> list:
    return [(i.id, i.text) if isinstance(i, Record) else (i.file, i.line, i.reason.split(" (")[0]) for i in items]


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz", "a.jsonl.zst"])
def test_jsonl_bad_lines_are_quarantined_with_file_and_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(compress(name, b"".join(BAD_JSONL)))
    assert summary(read_all(path, "jsonl")) == [
        ("src/" + name + ":1", "good one"),
        (name, 2, "invalid UTF-8"),
        (name, 3, "malformed JSON"),
        (name, 4, "expected a JSON object, got list"),
        (name, 5, "missing field 'text'"),
        (name, 6, "empty line"),
        ("src/" + name + ":7", "good two"),
    ]


def test_truncated_zstd_file_is_quarantined_not_raised(tmp_path):
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(compress(".zst", b"".join(BAD_JSONL[:1] * 50))[:-5])
    items = read_all(path, "jsonl")
    assert isinstance(items[-1], QuarantineEntry) and items[-1].reason.startswith(
        "corrupt or truncated file: cannot read line ")


def test_jsonl_ranges_cover_the_file_exactly_once(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"".join(BAD_JSONL))
    whole = summary(read_all(path, "jsonl"))
    parts = [summary(read_all(path, "jsonl", start=s, stop=e)) for s, e in ((0, 3), (3, 6), (6, None))]
    assert sum(parts, []) == whole


def test_csv_column_rows_and_bad_rows(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b'label,review\n1,"first\nreview spans two lines"\n0\n1,"caf\xe9"\n1,third\n')
    assert summary(read_all(path, "csv", csv_column="review")) == [
        ("src/r.csv:2", "first\nreview spans two lines"),
        ("r.csv", 4, "missing field 'review'"),
        ("r.csv", 5, "invalid UTF-8"),
        ("src/r.csv:6", "third"),
    ]
    assert summary(read_all(path, "csv", csv_column="review", start=1, stop=3)) == [
        ("r.csv", 4, "missing field 'review'"), ("r.csv", 5, "invalid UTF-8")]
    assert summary(read_all(path, "csv", csv_column="text")) == [("r.csv", 1, "missing column 'text'")]


def test_parquet_nulls_and_missing_column(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"]}), path)
    assert summary(read_all(path, "parquet")) == [
        ("src/p.parquet:1", "a"), ("p.parquet", 2, "column 'text' is NoneType, expected a string"),
        ("src/p.parquet:3", "c")]
    assert summary(read_all(path, "parquet", text_field="body")) == [("p.parquet", None, "missing column 'body'")]


def test_text_file_invalid_utf8_names_the_line_and_huge_files_are_not_read(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"line one\nline two \xc3\x28 oops\n")
    assert summary(read_all(path, "text")) == [("t.txt", 2, "invalid UTF-8")]
    assert summary(read_all(path, "text", max_bytes=10)) == [("t.txt", None, "enormous document: file of 26 bytes > 10")]


def test_tasks_split_big_files_and_group_text_files(tmp_path):
    (tmp_path / "tree").mkdir()
    for i in range(5):
        (tmp_path / "tree" / f"{i}.txt").write_text(f"doc {i}")
    (tmp_path / "big.jsonl").write_bytes(b"".join(BAD_JSONL))
    recipe = validate_recipe({"sources": [{"name": "tree", "path": "tree"}, {"name": "big", "path": "big.jsonl"}],
                              "execution": {"docs_per_task": 3}}, base_dir=tmp_path)
    tasks = plan_tasks(recipe, scan_inputs(recipe.sources))
    assert [(t.source, len(t.files), t.start, t.stop) for t in tasks] == [
        ("tree", 3, 0, None), ("tree", 2, 0, None), ("big", 1, 0, 3), ("big", 1, 3, 6), ("big", 1, 6, None)]
    assert [t.id for t in tasks] == ["t00000", "t00001", "t00002", "t00003", "t00004"]


def test_glob_sources_and_missing_paths(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "x.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "d" / "y.jsonl").write_text('{"text": "y"}\n')
    root, files, skipped = source_files(str(tmp_path / "d" / "**" / "*.jsonl"), "auto")
    assert root == tmp_path / "d" and [f.relative_to(root).as_posix() for f in files] == ["sub/x.jsonl", "y.jsonl"]
    assert skipped == []
    with pytest.raises(ValueError, match="no such file, directory or matching glob"):
        source_files(str(tmp_path / "nothing"), "auto")


def test_every_kind_of_bad_input_lands_in_quarantine_and_the_run_finishes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    lines = BAD_JSONL + [b'{"text": "   \\n "}\n', json.dumps({"text": "x" * 101}).encode() + b"\n"]
    (data / "a.jsonl").write_bytes(b"".join(lines))
    (data / "b.txt").write_bytes(b"\xff\xfe")
    (data / "c.txt").write_text("")
    recipe = validate_recipe({"sources": [{"name": "s", "path": "data"}], "input": {"max_doc_chars": 100},
                              "tokenizer": None}, base_dir=tmp_path)
    rep = prepare(recipe, tmp_path / "out", progress=False)
    entries = read_quarantine(tmp_path / "out" / "quarantine.jsonl")
    assert [(e.file, e.line, e.reason.split(" (")[0]) for e in entries] == [
        ("a.jsonl", 2, "invalid UTF-8"), ("a.jsonl", 3, "malformed JSON"),
        ("a.jsonl", 4, "expected a JSON object, got list"), ("a.jsonl", 5, "missing field 'text'"),
        ("a.jsonl", 6, "empty line"), ("a.jsonl", 8, "empty document"), ("a.jsonl", 9, "enormous document"),
        ("b.txt", 1, "invalid UTF-8"), ("c.txt", 1, "empty document")]
    assert rep["documents"] == {"read": 11, "quarantined": 9, "entered_steps": 2, "dropped": 0, "clean": 2}


def test_doc_separator_cuts_a_text_file_into_documents_with_their_first_lines(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text(" \n = A = \n text a \n = = sub = = \n more a \n = B = \n text b \n")
    items = list(read_records("w", tmp_path, path, "text", text_field="text", csv_column="text",
                              doc_separator=r"\n(?= = [^=])"))
    assert [(i.id, i.text) for i in items] == [
        ("w/wiki.txt:1", " \n"), ("w/wiki.txt:2", " = A = \n text a \n = = sub = = \n more a \n"),
        ("w/wiki.txt:6", " = B = \n text b \n")]


def test_hf_source_streams_records_and_quarantines_bad_ones(monkeypatch):
    import sys
    import types

    calls = []

    def load_dataset(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return iter([{"text": "a"}, {"body": "b"}, {"text": None}, {"text": "d"}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    items = list(read_hf("web", "hf:org/set:en", split="train", text_field="text", limit=3))
    assert calls == [("org/set", "en", "train", True)]
    assert summary(items) == [("web/org/set:en:train:1", "a"), ("org/set:en:train", 2, "missing field 'text'"),
                              ("org/set:en:train", 3, "field 'text' is NoneType, expected a string")]
