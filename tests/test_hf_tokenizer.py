"""The tokenizer `lm convert to-hf` exports encodes and decodes a battery of texts exactly as
lm's sentencepiece model does, for every BPE option lm trains (and a Llama-style dummy
prefix); options it cannot match (unigram, ...) are refused with the option named."""

import io
import json
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
from tokenizers import Tokenizer as FastTokenizer

from lm.cli import main
from lm.config import ConfigError, default_config, to_json_dict
from lm.convert.hf_tokenizer import hf_tokenizer_files, write_tokenizer_files
from lm.convert.to_hf import convert_to_hf
from lm.convert.workdir import write_workdir
from lm.data.tokenizer import Tokenizer, train_tokenizer
from lm.files import write_json_atomic
from lm.train.state import abstract_params
from tests.helpers import stdlib_texts, tiny_model_config

VOCAB = 384
UNK = 0  # lm's tokenizers: unk=0, bos=1
BATTERY = [
    "", " ", "x ", " x", "   leading spaces", "\n\nleading newlines", "a    b  c\t\td", "\tx = 1\r\n",
    "line\r\nline\rline\n", "café naïve résumé Ünïcödé ẞ", "日本語のテキスト、中文。", "emoji 🎉🎉 ok 👩‍💻",
    "12345 678.9 x1y22z333", "<s> </s> <unk> <0x41> <s>x</s>", "\u2581 ▁▁ spm's own space", "\x00\x7f\u200b",
    "def f(a, b):\n    return a + b  # sum\n",
] + stdlib_texts()[:6]  # whole modules: long texts with every kind of merge


def texts_in_chunks(texts: list[str], size: int = 2000) -> list[str]:
    return [t[i:i + size] for t in texts for i in range(0, len(t), size)]


def llama_style_tokenizer(out: Path) -> Tokenizer:
    """A BPE model with a dummy prefix, as Llama's (lm trains none; it can import one)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts_in_chunks(stdlib_texts())), model_writer=model, minloglevel=2,
        vocab_size=VOCAB, model_type="bpe", byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    out.mkdir(parents=True)
    (out / "tokenizer.model").write_bytes(model.getvalue())
    return Tokenizer.load(out / "tokenizer.model")


KINDS = ["byte_fallback+split_digits", "byte_fallback", "split_digits", "plain", "dummy_prefix"]


@pytest.fixture(scope="module", params=KINDS)
def exported(request, tmp_path_factory) -> tuple[Tokenizer, Path]:
    """(lm's tokenizer, the HF directory of its exported files), trained once per kind."""
    out = tmp_path_factory.mktemp(request.param.replace("+", "_"))
    if request.param == "dummy_prefix":
        tokenizer = llama_style_tokenizer(out / "tok")
    else:
        tokenizer = train_tokenizer(stdlib_texts(), out / "tok", vocab_size=VOCAB, model_type="bpe",
                                    byte_fallback="byte_fallback" in request.param,
                                    split_digits="split_digits" in request.param)
    (out / "hf").mkdir()
    write_tokenizer_files(hf_tokenizer_files(tokenizer.path, max_len=128), out / "hf")
    return tokenizer, out / "hf"


def test_tokenizers_library_encodes_and_decodes_like_lm(exported):
    tokenizer, hf_dir = exported
    fast = FastTokenizer.from_file(str(hf_dir / "tokenizer.json"))
    fast.encode_special_tokens = True  # '<s>' in text is text, as in sentencepiece
    for text in BATTERY:
        ids = tokenizer.encode(text)
        assert fast.encode(text).ids == [tokenizer.bos_id] + ids, text[:60]
        assert fast.decode(ids, skip_special_tokens=False) == tokenizer.decode(ids), text[:60]
    byte_fallback = b"<0x41>" in (hf_dir / "tokenizer.json").read_bytes()
    assert any(UNK in tokenizer.encode(text) for text in BATTERY) == (not byte_fallback)
    assert fast.decode(tokenizer.encode("x\ty"), skip_special_tokens=False) == tokenizer.decode(
        tokenizer.encode("x\ty")) == ("x\ty" if byte_fallback else "x ⁇ y")


def test_transformers_autotokenizer_encodes_and_decodes_like_lm(exported):
    transformers = pytest.importorskip("transformers", reason="optional: transformers loads the exported files")
    tokenizer, hf_dir = exported
    auto = transformers.AutoTokenizer.from_pretrained(hf_dir)
    bos = [tokenizer.bos_id]
    for text in BATTERY:
        ids = tokenizer.encode(text)
        assert auto(text)["input_ids"] == bos + ids, text[:60]
        assert auto.decode(ids) == tokenizer.decode(ids), text[:60]
        if UNK not in ids:  # skip_special_tokens drops <unk> too
            assert auto.decode(bos + ids, skip_special_tokens=True) == tokenizer.decode(ids), text[:60]


def test_the_dummy_prefix_and_leading_whitespace(tmp_path):
    """The third finding of issue 17: with a dummy prefix, text that starts with spaces."""
    tokenizer = llama_style_tokenizer(tmp_path / "tok")
    fast = FastTokenizer.from_str(hf_tokenizer_files(tokenizer.path, max_len=128)["tokenizer.json"].decode())
    for text in (" x = 1", "   leading spaces", "\n\nx"):
        pieces = fast.encode(text, add_special_tokens=False).tokens
        assert pieces[0].startswith("\u2581\u2581" if text[0] == " " else "\u2581")
        assert fast.encode(text, add_special_tokens=False).ids == tokenizer.encode(text)
    assert fast.decode(tokenizer.encode("  x")) == "  x"


# --- refusals --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory) -> Path:
    return train_tokenizer(stdlib_texts()[:4], tmp_path_factory.mktemp("bpe"), vocab_size=VOCAB).path


SUFFIX = ("cannot be exported so that Hugging Face encodes like lm; lm exports the BPE tokenizers it "
          "trains (data.tokenizer_type='bpe', with any data.tokenizer_byte_fallback and "
          "data.tokenizer_split_digits)")


def edited(proto, **changes):
    for path, value in changes.items():
        target = proto
        *parents, field = path.split(".")
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, field, value)
    return proto


@pytest.mark.parametrize("change, option", [
    ({"trainer_spec.model_type": 3}, "model_type=word"),
    ({"trainer_spec.model_type": 4}, "model_type=char"),
    ({"normalizer_spec.name": "nmt_nfkc", "normalizer_spec.precompiled_charsmap": b"\x01"},
     "normalization_rule_name='nmt_nfkc'"),
    ({"normalizer_spec.remove_extra_whitespaces": True}, "remove_extra_whitespaces=true"),
    ({"trainer_spec.treat_whitespace_as_suffix": True}, "treat_whitespace_as_suffix=true"),
    ({"normalizer_spec.escape_whitespaces": False}, "escape_whitespaces=false"),
    ({"trainer_spec.bos_id": -1}, "bos_id=-1"),
])
def test_options_that_cannot_be_matched_are_refused(tmp_path, bpe_model, change, option):
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(bpe_model.read_bytes())
    path = tmp_path / "edited.model"
    path.write_bytes(edited(proto, **change).SerializeToString())
    with pytest.raises(ConfigError) as err:
        hf_tokenizer_files(path, max_len=128)
    assert str(err.value) == f"{path}: sentencepiece option {option} {SUFFIX}"


def test_user_defined_pieces_are_refused(tmp_path, bpe_model):
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(bpe_model.read_bytes())
    proto.pieces[300].type = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    path = tmp_path / "user.model"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ConfigError) as err:
        hf_tokenizer_files(path, max_len=128)
    piece = proto.pieces[300].piece
    assert str(err.value) == f"{path}: sentencepiece option user_defined pieces ({piece!r}, ...) {SUFFIX}"


def run_config(tokenizer: Tokenizer) -> ml_collections.ConfigDict:
    cfg = default_config()
    cfg.model = tiny_model_config(vocab_size=VOCAB, max_seq_len=128)
    cfg.data.tokenizer_path = str(tokenizer.path)
    return cfg


def test_to_hf_writes_the_tokenizer_and_refuses_unigram(tmp_path, capsys):
    bpe = train_tokenizer(stdlib_texts()[:4], tmp_path / "bpe", vocab_size=VOCAB)
    cfg = run_config(bpe)
    params = jax.tree.map(lambda s: np.full(s.shape, 0.01, s.dtype), abstract_params(cfg.model)[1])
    write_workdir(cfg, params, tmp_path / "run", {"test": "tokenizer export"})
    convert_to_hf(tmp_path / "run", tmp_path / "hf", max_shard_bytes=2**30)
    config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert (config["tokenizer_class"], config["add_bos_token"], config["split_special_tokens"]) == (
        "PreTrainedTokenizerFast", True, True)
    assert (tmp_path / "hf" / "tokenizer.model").read_bytes() == bpe.path.read_bytes()
    fast = FastTokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json"))
    assert fast.encode("\timport os").ids == [bpe.bos_id] + bpe.encode("\timport os")

    unigram = train_tokenizer(stdlib_texts()[:2], tmp_path / "uni", vocab_size=VOCAB, model_type="unigram")
    run = tmp_path / "run_unigram"  # the tokenizer is refused before the checkpoint is read
    run.mkdir()
    write_json_atomic(to_json_dict(run_config(unigram)), run / "config.json")
    assert main(["convert", "to-hf", str(run), str(tmp_path / "hf_unigram")]) == 2
    assert capsys.readouterr().err == (
        f"lm convert: error: {unigram.path}: data.tokenizer_type='unigram' cannot be exported so that "
        "Hugging Face encodes like lm (HF's Unigram sums piece scores in float64, sentencepiece in "
        "float32, so long texts can split differently); train the tokenizer with "
        "data.tokenizer_type='bpe' to export to HF\n")
    assert not (tmp_path / "hf_unigram").exists()  # refused before anything was written
