import json
import sysconfig
from pathlib import Path

import pytest

from lm.data.corpus import NOT_STDLIB_DIRS, fingerprint, stdlib_corpus, write_manifest


@pytest.fixture(scope="module")
def corpus():
    return stdlib_corpus()


def test_manifest_counts_match_documents(corpus):
    documents, manifest = corpus
    assert manifest["root"] == sysconfig.get_paths()["stdlib"]
    assert manifest["num_files"] == len(documents) == len(manifest["files"])
    assert [f["path"] for f in manifest["files"]] == [d.id for d in documents]
    assert [f["bytes"] for f in manifest["files"]] == [len(d.text.encode("utf-8")) for d in documents]
    assert manifest["num_bytes"] == sum(len(d.text.encode("utf-8")) for d in documents)
    assert manifest["num_bytes"] > 1_000_000
    assert [d.id for d in documents] == sorted(d.id for d in documents)
    assert all(d.id.endswith(".py") for d in documents)


def test_fingerprint_covers_the_included_files_in_order(corpus):
    documents, manifest = corpus
    assert manifest["sha256"] == fingerprint((d.id, d.text.encode("utf-8")) for d in documents)


def test_site_packages_excluded_and_listed(corpus):
    documents, manifest = corpus
    root = Path(manifest["root"])
    assert not any(set(Path(d.id).parts) & set(NOT_STDLIB_DIRS) for d in documents)
    listed = {e["path"] for e in manifest["excluded"] if e["reason"].startswith("third-party")}
    assert {name for name in NOT_STDLIB_DIRS if (root / name).is_dir()} <= listed
    assert all((root / path).is_dir() and Path(path).name in NOT_STDLIB_DIRS for path in listed)


def test_undecodable_files_are_listed_not_dropped(corpus):
    documents, manifest = corpus
    root = Path(manifest["root"])
    skipped = [e for e in manifest["excluded"] if e["reason"].startswith("not valid UTF-8")]
    for entry in skipped:
        with pytest.raises(UnicodeDecodeError):
            (root / entry["path"]).read_bytes().decode("utf-8")
    included = {d.id for d in documents}
    assert {e["path"] for e in skipped}.isdisjoint(included)


def test_fingerprint_deterministic_and_sensitive():
    files = [("a.py", b"x = 1\n"), ("b/c.py", b"")]
    base = fingerprint(files)
    assert base == fingerprint(list(files))
    assert len(base) == 64
    changed = [
        [("a.py", b"x = 2\n"), ("b/c.py", b"")],  # content
        [("a2.py", b"x = 1\n"), ("b/c.py", b"")],  # path
        list(reversed(files)),  # order
        files[:1],  # a file removed (even an empty one)
        [("a.py", b"x = 1\nb/c.py")],  # bytes moved across the path/content boundary
    ]
    assert len({base, *(fingerprint(f) for f in changed)}) == 1 + len(changed)


def test_write_manifest_is_json_and_atomic(tmp_path):
    manifest = {"num_files": 1, "files": [{"path": "ä.py", "bytes": 3}]}
    path = tmp_path / "corpus.json"
    write_manifest(manifest, path)
    assert json.loads(path.read_text("utf-8")) == manifest
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.json"]
