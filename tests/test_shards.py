import json

import numpy as np
import pytest

from lm.data.read import DataError, Document
from lm.data.shards import MANIFEST_FILE, TokenShards, token_dtype, tokenize_to_shards, write_token_shards


def make_docs(num_docs: int, vocab_size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, vocab_size, size=rng.integers(1, 60)) for _ in range(num_docs)]
    docs[3] = np.zeros(0, np.int64)  # an empty document is kept
    docs[7] = rng.integers(0, vocab_size, size=250)  # longer than a shard: gets a shard of its own
    return docs


def test_round_trip_over_several_shards(tmp_path):
    docs = make_docs(40, vocab_size=1000)
    manifest = write_token_shards(docs, tmp_path, vocab_size=1000, tokenizer_fingerprint="abc", shard_max_tokens=100)

    lengths = [len(d) for d in docs]
    assert manifest["num_docs"] == 40
    assert manifest["num_tokens"] == sum(lengths)
    assert manifest["dtype"] == "uint16"
    assert len(manifest["shards"]) > 5
    assert sum(s["num_docs"] for s in manifest["shards"]) == 40
    assert all(s["num_tokens"] <= 100 or s["num_docs"] == 1 for s in manifest["shards"])
    assert json.loads((tmp_path / MANIFEST_FILE).read_text()) == manifest
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [MANIFEST_FILE]
        + [f"shard-{k:05d}.tokens" for k in range(len(manifest["shards"]))]
        + [f"shard-{k:05d}.index.npy" for k in range(len(manifest["shards"]))]
    )
    assert (tmp_path / "shard-00000.tokens").stat().st_size == 2 * manifest["shards"][0]["num_tokens"]

    shards = TokenShards(tmp_path, verify=True)
    assert (shards.num_docs, shards.num_tokens, shards.vocab_size) == (40, sum(lengths), 1000)
    assert shards.tokenizer_fingerprint == "abc"
    assert shards.doc_lengths.dtype == np.int64
    assert shards.doc_lengths.tolist() == lengths
    for i, doc in enumerate(docs):
        assert shards.doc(i).tolist() == doc.tolist()
    with pytest.raises(IndexError):
        shards.doc(40)


@pytest.mark.parametrize(
    ("vocab_size", "dtype"), [(1000, np.uint16), (65536, np.uint16), (65537, np.uint32), (200_000, np.uint32)]
)
def test_dtype_holds_the_largest_id(tmp_path, vocab_size, dtype):
    assert token_dtype(vocab_size) == dtype
    docs = [[0, vocab_size - 1], [vocab_size // 2]]
    write_token_shards(docs, tmp_path, vocab_size=vocab_size, tokenizer_fingerprint="f")
    shards = TokenShards(tmp_path)
    assert shards.doc(0).dtype == dtype
    assert [shards.doc(i).tolist() for i in range(2)] == docs
    assert (tmp_path / "shard-00000.tokens").stat().st_size == 3 * np.dtype(dtype).itemsize


def test_truncated_file_names_it(tmp_path):
    write_token_shards(make_docs(20, 500), tmp_path, vocab_size=500, tokenizer_fingerprint="f", shard_max_tokens=100)
    path = tmp_path / "shard-00001.tokens"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(DataError, match=rf"{path}: \d+ bytes but the manifest says \d+"):
        TokenShards(tmp_path)


def test_changed_bytes_found_only_with_verify(tmp_path):
    write_token_shards(make_docs(20, 500), tmp_path, vocab_size=500, tokenizer_fingerprint="f", shard_max_tokens=100)
    path = tmp_path / "shard-00002.tokens"
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    TokenShards(tmp_path)
    with pytest.raises(DataError, match=rf"{path}: sha256 differs from the manifest"):
        TokenShards(tmp_path, verify=True)


def test_missing_manifest_or_shard_file(tmp_path):
    message = r"is not a finished token-shard directory \(no manifest.json\); re-run prepare"
    with pytest.raises(DataError, match=message):
        TokenShards(tmp_path)
    write_token_shards([[1, 2]], tmp_path, vocab_size=500, tokenizer_fingerprint="f")
    (tmp_path / "shard-00000.index.npy").unlink()
    with pytest.raises(DataError, match=r"shard-00000.index.npy: missing"):
        TokenShards(tmp_path)


def test_out_of_range_ids_rejected_and_nothing_left(tmp_path):
    docs = [[1, 2, 3]] * 10 + [[4, 500]]
    with pytest.raises(DataError, match=r"document 10: token id 500 is outside \[0, 500\)"):
        write_token_shards(docs, tmp_path, vocab_size=500, tokenizer_fingerprint="f", shard_max_tokens=6)
    with pytest.raises(DataError, match=r"document 1: token id -1 is outside \[0, 500\)"):
        write_token_shards([[1], [-1]], tmp_path, vocab_size=500, tokenizer_fingerprint="f")
    with pytest.raises(DataError, match=r"document 0: expected a flat sequence of integer token ids"):
        write_token_shards([[0.5]], tmp_path, vocab_size=500, tokenizer_fingerprint="f")
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_finished_directory(tmp_path):
    write_token_shards([[1]], tmp_path, vocab_size=10, tokenizer_fingerprint="f")
    with pytest.raises(DataError, match=rf"{tmp_path} already holds finished token shards; delete it"):
        write_token_shards([[2]], tmp_path, vocab_size=10, tokenizer_fingerprint="f")
    assert TokenShards(tmp_path).doc(0).tolist() == [1]


def test_replaces_an_unfinished_write(tmp_path):
    # What a killed earlier write leaves: shards, a half-written temp file, no manifest.
    (tmp_path / "shard-00000.tokens").write_bytes(b"\0" * 10)
    (tmp_path / "shard-00007.index.npy").write_bytes(b"old")
    (tmp_path / ".shard-00001.tokens.k2j4_x9a.tmp").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("not ours")
    write_token_shards([[1, 2], [3]], tmp_path, vocab_size=10, tokenizer_fingerprint="f")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        MANIFEST_FILE,
        "notes.txt",
        "shard-00000.index.npy",
        "shard-00000.tokens",
    ]
    assert [TokenShards(tmp_path, verify=True).doc(i).tolist() for i in range(2)] == [[1, 2], [3]]


def test_no_documents_give_an_empty_directory(tmp_path):
    manifest = write_token_shards([], tmp_path, vocab_size=10, tokenizer_fingerprint="f")
    assert (manifest["num_docs"], manifest["num_tokens"], manifest["shards"]) == (0, 0, [])
    shards = TokenShards(tmp_path)
    assert (shards.num_docs, shards.num_tokens, shards.doc_lengths.tolist()) == (0, 0, [])


class ByteTokenizer:
    """Stand-in tokenizer: UTF-8 bytes are the ids."""

    vocab_size = 256
    fingerprint = "bytes"

    def encode_batch(self, texts):
        return [list(t.encode("utf-8")) for t in texts]


def test_tokenize_to_shards(tmp_path):
    texts = [f"document {i} ü\n" * (i % 4 + 1) for i in range(1000)]
    documents = [Document(id=str(i), text=t) for i, t in enumerate(texts)]
    manifest = tokenize_to_shards(documents, ByteTokenizer(), tmp_path, batch_size=64, progress=False)
    shards = TokenShards(tmp_path)
    assert manifest["num_docs"] == shards.num_docs == 1000
    assert shards.num_tokens == sum(len(t.encode("utf-8")) for t in texts)
    assert shards.tokenizer_fingerprint == "bytes"
    assert bytes(shards.doc(999).tolist()).decode("utf-8") == texts[999]
