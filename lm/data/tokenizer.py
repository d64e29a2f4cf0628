"""SentencePiece tokenizer: training in-process and a small wrapper for use.

Models trained by `train_tokenizer` round-trip text exactly
(``decode(encode(text)) == text``) when ``byte_fallback=True`` (the default):
no normalisation, whitespace kept as is (runs of spaces may be single
pieces), newlines and tabs are ordinary characters, and any character outside
the vocabulary is encoded as its UTF-8 bytes.

Special ids: unk=0, bos=1, eos=2; there is no padding piece (``pad_id == -1``).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

from lm.data.read import DataError
from lm.files import atomic_write, write_json_atomic

MODEL_FILE = "tokenizer.model"
OPTIONS_FILE = "tokenizer.json"
MODEL_TYPES = ("bpe", "unigram")
# Documents are fed to the trainer in chunks of whole lines up to this many
# bytes; sentencepiece ignores training sentences longer than its
# max_sentence_length (4192 bytes by default).
CHUNK_BYTES = 4096


class Tokenizer:
    """A loaded sentencepiece model. Use `Tokenizer.load` or `train_tokenizer`."""

    def __init__(self, model_bytes: bytes, path: Path):
        self._processor = spm.SentencePieceProcessor(model_proto=model_bytes)
        self._path = path
        self._fingerprint = hashlib.sha256(model_bytes).hexdigest()

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        """Load a ``.model`` file; a missing or corrupt file raises DataError naming it."""
        path = Path(path)
        try:
            model_bytes = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read tokenizer model ({e.strerror}); train one first") from e
        try:
            return cls(model_bytes, path)
        except RuntimeError as e:
            raise DataError(f"{path}: not a valid sentencepiece model ({e}); retrain the tokenizer") from e

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS/EOS."""
        return self._processor.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (no BOS/EOS), encoded by sentencepiece's thread pool."""
        return self._processor.encode(list(texts))

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of token ids (inverse of `encode`)."""
        return self._processor.decode([int(i) for i in ids])

    @property
    def vocab_size(self) -> int:
        return self._processor.vocab_size()

    @property
    def bos_id(self) -> int:
        return self._processor.bos_id()

    @property
    def eos_id(self) -> int:
        return self._processor.eos_id()

    @property
    def pad_id(self) -> int:
        """-1: models trained here have no padding piece."""
        return self._processor.pad_id()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def fingerprint(self) -> str:
        """sha256 of the model file."""
        return self._fingerprint


def train_tokenizer(
    texts: Iterable[str],
    out_dir: Path,
    *,
    vocab_size: int,
    model_type: str = "bpe",
    byte_fallback: bool = True,
    split_digits: bool = True,
    max_sentences: int = 2_000_000,
    seed: int = 0,
) -> Tokenizer:
    """Train a sentencepiece model on `texts` and write ``out_dir/tokenizer.model``.

    Also writes ``out_dir/tokenizer.json`` with the training options and the
    model fingerprint. Texts are split into chunks of whole lines (at most
    `CHUNK_BYTES` bytes); if there are more than `max_sentences` chunks, that
    many are sampled with `seed`. The same texts and options give the same
    model bytes.
    """
    if model_type not in MODEL_TYPES:
        raise DataError(f"model_type={model_type!r} is not supported; use one of {MODEL_TYPES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "vocab_size": vocab_size,
        "model_type": model_type,
        "byte_fallback": byte_fallback,
        "split_digits": split_digits,
        "input_sentence_size": max_sentences,
        "shuffle_input_sentence": True,
        "normalization_rule_name": "identity",
        "remove_extra_whitespaces": False,
        "add_dummy_prefix": False,
        "allow_whitespace_only_pieces": True,
        "max_sentence_length": CHUNK_BYTES,
        "unk_id": 0,
        "bos_id": 1,
        "eos_id": 2,
        "pad_id": -1,
    }
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=_chunks(texts), model_writer=model, minloglevel=2, **options)
    except RuntimeError as e:
        raise DataError(
            f"sentencepiece training failed: {e} (if the vocabulary is too large, "
            "lower vocab_size or train on more text)"
        ) from e
    model_bytes = model.getvalue()
    model_path = out_dir / MODEL_FILE
    with atomic_write(model_path) as f:
        f.write(model_bytes)
    tokenizer = Tokenizer(model_bytes, model_path)
    write_json_atomic(
        {
            "sentencepiece_version": spm.__version__,
            "seed": seed,
            "options": options,
            "fingerprint": tokenizer.fingerprint,
        },
        out_dir / OPTIONS_FILE,
    )
    return tokenizer


def _chunks(texts: Iterable[str]) -> Iterator[str]:
    """Split texts into runs of whole lines of at most CHUNK_BYTES UTF-8 bytes each
    (a longer line is cut into pieces of CHUNK_BYTES // 4 characters)."""
    for text in texts:
        lines: list[str] = []
        size = 0
        for line in _short_lines(text):
            line_size = len(line.encode("utf-8"))
            if lines and size + line_size > CHUNK_BYTES:
                yield "".join(lines)
                lines, size = [], 0
            lines.append(line)
            size += line_size
        if lines:
            yield "".join(lines)


def _short_lines(text: str) -> Iterator[str]:
    max_chars = CHUNK_BYTES // 4  # a character is at most 4 UTF-8 bytes
    for line in text.splitlines(keepends=True):
        for start in range(0, len(line), max_chars):
            yield line[start : start + max_chars]
