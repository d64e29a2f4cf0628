import json
import sysconfig
from pathlib import Path

import pytest

from lm.data import tokenizer as tokenizer_module
from lm.data.read import DataError
from lm.data.tokenizer import Tokenizer, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TRAINING_FILES = ["textwrap.py", "string.py", "json/decoder.py", "json/encoder.py", "shlex.py", "fnmatch.py"]
TRICKY = [
    "def f(x):\n\tif x:\n        return  x   # trailing spaces   \n\n\n",
    "\n\n  leading blank lines and spaces",
    "no trailing newline",
    "tabs\t\tand\t \tmixed\r\nwindows line end\r\n",
    "non-ASCII: ünïcödé, 日本語, Ελληνικά; emoji: 🎉🐍 and a ZWJ family 👩‍👩‍👧\n",
    "digits 1234567890 and 3.14159e-10\n",
    "    \n \n\t\n",
    "control \x00\x07 chars and \u2028 line separator",
    "",
]


@pytest.fixture(scope="module")
def training_texts():
    return [(STDLIB / name).read_text("utf-8") for name in TRAINING_FILES]


@pytest.fixture(scope="module")
def bpe(training_texts, tmp_path_factory):
    return train_tokenizer(training_texts, tmp_path_factory.mktemp("bpe"), vocab_size=600)


@pytest.mark.parametrize("text", TRICKY)
def test_exact_round_trip(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.bos_id not in ids and bpe.eos_id not in ids


def test_round_trip_of_training_code_and_batch_encode(bpe, training_texts):
    batch = bpe.encode_batch(training_texts)
    assert batch == [bpe.encode(t) for t in training_texts]
    assert [bpe.decode(ids) for ids in batch] == training_texts
    # Trained on this code, it compresses it: over 2 bytes per token (vs 1 for raw bytes).
    num_bytes = sum(len(t.encode("utf-8")) for t in training_texts)
    assert num_bytes / sum(map(len, batch)) > 2.0


def test_digits_are_single_tokens(bpe):
    ids = bpe.encode("x = 2024")
    assert [bpe.decode([i]) for i in ids[-4:]] == ["2", "0", "2", "4"]


def test_special_ids_and_metadata(bpe):
    assert (bpe.vocab_size, bpe.bos_id, bpe.eos_id, bpe.pad_id) == (600, 1, 2, -1)
    assert bpe.path.name == "tokenizer.model"
    options = json.loads((bpe.path.parent / "tokenizer.json").read_text())
    assert options["fingerprint"] == bpe.fingerprint
    assert options["options"]["model_type"] == "bpe"
    assert options["options"]["vocab_size"] == 600


def test_load_gives_the_same_tokenizer(bpe):
    loaded = Tokenizer.load(bpe.path)
    assert loaded.fingerprint == bpe.fingerprint
    assert loaded.encode(TRICKY[0]) == bpe.encode(TRICKY[0])


def test_training_is_deterministic(training_texts, tmp_path, bpe):
    again = train_tokenizer(training_texts, tmp_path, vocab_size=600)
    assert again.path.read_bytes() == bpe.path.read_bytes()
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["tokenizer.json", "tokenizer.model"]


def test_unigram_trains_and_round_trips(training_texts, tmp_path):
    unigram = train_tokenizer(training_texts[:3], tmp_path, vocab_size=500, model_type="unigram")
    assert unigram.vocab_size == 500
    for text in TRICKY:
        assert unigram.decode(unigram.encode(text)) == text


def test_long_lines_are_split_for_training_not_dropped():
    text = "short\n" + "é" * 5000 + "\n" + "x = 1\n" * 2000
    chunks = list(tokenizer_module._chunks([text, "tail"]))
    assert "".join(chunks) == text + "tail"
    assert max(len(c.encode("utf-8")) for c in chunks) <= tokenizer_module.CHUNK_BYTES
    assert chunks[-1] == "tail"


def test_bad_options(training_texts, tmp_path):
    with pytest.raises(DataError, match="model_type='wordpiece' is not supported"):
        train_tokenizer(training_texts, tmp_path, vocab_size=600, model_type="wordpiece")
    with pytest.raises(DataError, match=r"Vocabulary size too high.*lower vocab_size"):
        train_tokenizer(["tiny text\n"], tmp_path, vocab_size=600)
    assert not (tmp_path / "tokenizer.model").exists()


def test_corrupt_or_missing_model_names_the_file(tmp_path):
    path = tmp_path / "tokenizer.model"
    path.write_bytes(b"this is not a sentencepiece model")
    with pytest.raises(DataError, match=rf"{path}: not a valid sentencepiece model"):
        Tokenizer.load(path)
    with pytest.raises(DataError, match=rf"{tmp_path / 'missing.model'}: cannot read tokenizer model"):
        Tokenizer.load(tmp_path / "missing.model")
