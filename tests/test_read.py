import gzip
import json
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from lm.data.read import DataError, Document, iter_documents, iter_sources
from lm.files import atomic_write, write_json_atomic

RECORDS = [{"text": "first doc\n", "n": 1}, {"text": ""}, {"text": "third\tdoc ünï 🎉", "n": 3}]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    elif path.name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def test_text_tree_sorted_one_document_per_file(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.md").write_text("# z\n")
    (tmp_path / "b" / "a.txt").write_text("a\n\n  indented\n")
    (tmp_path / "a.py").write_text("print('hi')\n")
    (tmp_path / "c.txt").write_text("c")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "notes.bin").write_bytes(b"\x00\x01")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.txt").write_text("hidden\n")
    (tmp_path / ".hidden.txt").write_text("hidden\n")

    docs = list(iter_documents(str(tmp_path)))

    assert docs == [
        Document(id=str(tmp_path / "a.py"), text="print('hi')\n"),
        Document(id=str(tmp_path / "b" / "a.txt"), text="a\n\n  indented\n"),
        Document(id=str(tmp_path / "b" / "z.md"), text="# z\n"),
        Document(id=str(tmp_path / "c.txt"), text="c"),
    ]


def test_named_file_with_any_suffix_is_one_text_document(tmp_path):
    path = tmp_path / "LICENSE"
    path.write_text("MIT\n")
    assert list(iter_documents(str(path))) == [Document(id=str(path), text="MIT\n")]


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz", "d.jsonl.zst"])
def test_jsonl_variants(tmp_path, name):
    path = write_jsonl(tmp_path / name, [json.dumps(r) for r in RECORDS[:2]] + ["", json.dumps(RECORDS[2])])

    docs = list(iter_documents(str(path)))

    # Line 2 is an empty document and line 3 a blank line: both skipped, line numbers kept.
    assert docs == [Document(f"{path}:1", "first doc\n"), Document(f"{path}:4", "third\tdoc ünï 🎉")]


def test_zstd_with_several_frames_reads_them_all(tmp_path):
    # Frames split mid-line, as concatenated or multi-threaded zstd output can.
    compress = zstandard.ZstdCompressor().compress
    path = tmp_path / "d.jsonl.zst"
    path.write_bytes(compress(b'{"text": "a"}\n{"te') + compress(b'xt": "b"}\n') + compress(b'{"text": "c"}'))
    expected = [Document(f"{path}:1", "a"), Document(f"{path}:2", "b"), Document(f"{path}:3", "c")]
    assert list(iter_documents(str(path))) == expected


def test_jsonl_custom_text_field(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [json.dumps({"content": "x"}), json.dumps({"content": "y"})])
    assert [d.text for d in iter_documents(str(path), text_field="content")] == ["x", "y"]


def test_parquet_read_in_batches_across_row_groups(tmp_path):
    texts = [f"row {i}\n" for i in range(2500)]
    texts[5] = ""
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": texts, "id": list(range(2500))}), path, row_group_size=700)

    docs = list(iter_documents(str(tmp_path)))

    assert len(docs) == 2499
    assert docs[0] == Document(f"{path}:1", "row 0\n")
    assert docs[5] == Document(f"{path}:7", "row 6\n")
    assert docs[-1] == Document(f"{path}:2500", "row 2499\n")


def test_parquet_missing_column_and_null_row(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"body": ["a", None]}), path)
    with pytest.raises(DataError, match=r"d\.parquet: no column 'text' \(columns: \['body'\]\)"):
        list(iter_documents(str(path)))
    with pytest.raises(DataError, match=r"d\.parquet: row 2 has a null 'body'"):
        list(iter_documents(str(path), text_field="body"))


def test_parquet_non_string_column(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(DataError, match=r"d\.parquet: column 'text' has type int64, expected string"):
        list(iter_documents(str(path)))


def test_malformed_json_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl.gz", ['{"text": "ok"}', '{"text": "unterminated'])
    docs = iter_documents(str(path))
    assert next(docs).text == "ok"
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz:2: malformed JSON"):
        next(docs)


def test_missing_field_names_file_line_and_fields(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ['{"text": "ok"}', '{"body": "x", "id": 1}'])
    with pytest.raises(DataError, match=r"d\.jsonl:2: no field 'text' \(fields: \['body', 'id'\]\)"):
        list(iter_documents(str(path)))


def test_non_string_field_and_non_object_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ['{"text": 5}'])
    with pytest.raises(DataError, match=r"d\.jsonl:1: field 'text' is int, expected a string"):
        list(iter_documents(str(path)))
    path = write_jsonl(tmp_path / "e.jsonl", ['"just a string"'])
    with pytest.raises(DataError, match=r"e\.jsonl:1: expected a JSON object, got str"):
        list(iter_documents(str(path)))


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": "\xff"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid UTF-8"):
        list(iter_documents(str(path)))
    path = tmp_path / "t.txt"
    path.write_bytes(b"line one\nline two\nbad \xc3\x28 here\n")
    with pytest.raises(DataError, match=r"t\.txt:3: not valid UTF-8"):
        list(iter_documents(str(path)))


@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.jsonl.zst"])
def test_corrupt_compressed_file(tmp_path, name):
    path = write_jsonl(tmp_path / name, ['{"text": "a"}'] * 100)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(DataError, match=rf"{name}: corrupt or truncated file: cannot read line \d+ or after"):
        list(iter_documents(str(path)))


def test_gzip_corrupted_mid_file_is_a_data_error_naming_the_line(tmp_path):
    good = gzip.compress(b'{"text": "a"}\n' * 3, mtime=0)
    (tmp_path / "d.jsonl.gz").write_bytes(good + gzip.compress(b"", mtime=0)[:10] + b"\x07" + bytes(30))
    docs = iter_documents(str(tmp_path / "d.jsonl.gz"))
    assert [next(docs).text for _ in range(3)] == ["a"] * 3
    with pytest.raises(DataError) as err:
        next(docs)
    assert str(err.value) == (f"{tmp_path / 'd.jsonl.gz'}: corrupt or truncated file: cannot read line 4 or after "
                              "(Error -3 while decompressing data: invalid block type)")


def test_suffixes_are_matched_in_any_case_and_text_may_be_compressed(tmp_path):
    (tmp_path / "a.JSONL").write_text('{"text": "upper"}\n')
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(b"gzipped", mtime=0))
    (tmp_path / "c.md.zst").write_bytes(zstandard.ZstdCompressor().compress(b"zstd"))
    (tmp_path / "loop.txt").symlink_to("loop.txt")
    (tmp_path / "d.png").write_bytes(b"\x89PNG")
    assert [d.text for d in iter_documents(str(tmp_path))] == ["upper", "gzipped", "zstd"]
    with pytest.raises(DataError, match=r"loop.txt: symbolic link loop"):
        iter_documents(str(tmp_path / "loop.txt"))


def test_hf_without_datasets_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(DataError, match=r"pip install 'lm\[hf\]'"):
        iter_documents("hf:roneneldan/TinyStories")


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        iter_documents(str(tmp_path / "missing"))
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(DataError, match="directory holds no readable files"):
        iter_documents(str(tmp_path))
    with pytest.raises(DataError, match="expected 'hf:NAME'"):
        iter_documents("hf:")


def test_iter_sources_chains_in_order(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("A")
    b = write_jsonl(tmp_path / "b.jsonl", ['{"text": "B1"}', '{"text": "B2"}'])
    assert [d.text for d in iter_sources([str(b), str(a)])] == ["B1", "B2", "A"]
    with pytest.raises(DataError, match="missing"):
        iter_sources([str(a), str(tmp_path / "missing")])


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic({"a": 1}, path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
