"""fastText supervised models: load a `.bin` / `.ftz`, score a label, train one from labelled texts.

Which package, and why (measured here on Python 3.11 with numpy 2.4, November 2026):

* ``fasttext-wheel==0.9.2`` (chosen): a 4.4 MB manylinux2014 wheel for
  CPython 3.11, so plain ``pip`` installs it with no compiler. Training with a
  fixed ``seed`` and ``thread=1`` writes byte-identical files on every run. Its
  Python ``predict`` wrapper fails under numpy 2 ("Unable to avoid copy while
  creating an array"), and its batch path (the binding's ``multilinePredict``)
  returns wrong probabilities (every label of a text gets the top label's), so
  this module calls the binding's one-line ``model.f.predict`` only, which is
  exact and deterministic.
* ``fasttext==0.9.3``: a source distribution only; installing it needs a C++
  compiler and pybind11, which CI does not guarantee.
* ``fasttext-numpy2-wheel==0.9.2`` and ``fasttext-numpy2==0.10.4``: wheels whose
  Python wrappers work with numpy 2, but their builds abort training with
  "Encountered NaN" on easily separable data (7 of 12 small settings, e.g. dim
  16-100 at lr 0.1-0.5, where ``fasttext-wheel`` trains all 12), which is what
  small test sets are.

All three install the same ``fasttext`` module, so only one may be installed.

Text goes to fastText as one line: newlines become spaces (fastText reads a
document up to its first newline); nothing else is changed, so models trained
elsewhere (DCLM's quality classifier, lid.176) see what they were trained on.
fastText reports each probability as ``p + 1e-5`` (the guard of its log); the
scores here are ``p``, clipped to [0, 1].

A file is checked before fastText reads it: fastText itself accepts a truncated
file (scoring with half its weights) or fails with ``std::bad_alloc``, so this
module walks the file's layout (header, arguments, dictionary, matrices) and
requires it to end exactly where the layout says.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lm.data.read import DataError

SUFFIXES = (".bin", ".ftz")
INSTALL_HINT = "pip install 'lm[fasttext]' (the fasttext-wheel package)"
LABEL_PREFIX = "__label__"
_MAGIC = 793712314
_VERSIONS = (11, 12)
_SUPERVISED = 3  # fastText's model_name::sup
_PROBABILITY_GUARD = 1e-5  # fastText reports log(p + 1e-5)
_CENTROIDS = 256  # product-quantizer centroids per sub-quantizer


def is_fasttext_path(path: str | Path) -> bool:
    """Whether `path` names a fastText model file (by its suffix)."""
    return Path(path).suffix.lower() in SUFFIXES


def import_fasttext() -> Any:
    """The `fasttext` module, or DataError saying how to install it."""
    try:
        import fasttext
    except ImportError as e:
        raise DataError(f"fastText models need the fasttext package ({e}); {INSTALL_HINT}") from None
    fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence load_model's deprecation notice
    return fasttext


def one_line(text: str) -> str:
    """`text` as fastText reads a document: newlines turned into spaces."""
    return text.replace("\n", " ")


class FastTextModel:
    """A supervised fastText model read from `path`, giving each text the probability of `label`.

    `label` may be written with or without the ``__label__`` prefix; None
    leaves it unchosen (`top` still works, `score` needs a label). The model is
    read again after unpickling (fastText objects cannot be pickled).
    """

    def __init__(self, path: str | Path, label: str | None = None):
        self.path: Path | None = Path(path)
        self._model: Any = None
        self.info: dict[str, Any] = {}  # a training report, when `train_classifier` made the model
        self.labels = self._load()
        self.label = None if label is None else self.find_label(label)

    @classmethod
    def from_trained(cls, model: Any, label: str | None = None) -> FastTextModel:
        """Wrap a model `fasttext.train_supervised` returned (it has no file until `save`)."""
        self = cls.__new__(cls)
        self.path, self._model, self.info = None, model, {}
        self.labels = list(model.f.getLabels("replace")[0])
        self.label = None if label is None else self.find_label(label)
        return self

    def _load(self) -> list[str]:
        check_model_file(self.path)
        fasttext = import_fasttext()
        try:
            self._model = fasttext.load_model(str(self.path))
        except (ValueError, MemoryError, RuntimeError) as e:
            raise DataError(f"{self.path}: not a readable fastText model ({type(e).__name__}: {e})") from None
        return list(self._model.f.getLabels("replace")[0])

    def find_label(self, label: str) -> str:
        """The model's label named `label` (with or without the prefix); DataError listing them if none."""
        for candidate in (label, LABEL_PREFIX + label):
            if candidate in self.labels:
                return candidate
        raise DataError(f"{self.path}: no label {label!r}; the model's labels are {', '.join(self.labels)}")

    def probabilities(self, text: str) -> dict[str, float]:
        """P(label | text) for every label of the model."""
        if self._model is None:
            self._load()
        line = one_line(text).encode("utf-8", "replace").decode("utf-8") + "\n"
        pairs = self._model.f.predict(line, -1, 0.0, "replace")
        return {label: min(1.0, max(0.0, float(p) - _PROBABILITY_GUARD)) for p, label in pairs}

    def score(self, text: str) -> float:
        """P(self.label | text)."""
        if self.label is None:
            raise ValueError(f"{self.path}: no label chosen to score; the model's labels are {', '.join(self.labels)}")
        return self.probabilities(text).get(self.label, 0.0)

    def score_many(self, texts: Sequence[str]) -> np.ndarray:
        """`score` of every text, as a float64 array (one text at a time: see the module doc)."""
        return np.array([self.score(t) for t in texts], dtype=np.float64)

    def top(self, text: str, allowed: Sequence[str] | None = None) -> tuple[str, float]:
        """The most probable label (among `allowed`, renormalised over them) and its probability."""
        probs = self.probabilities(text)
        if allowed is not None:
            probs = {label: probs.get(label, 0.0) for label in allowed}
        label = max(sorted(probs), key=lambda k: probs[k])
        total = sum(probs.values())
        return label, (probs[label] / total if allowed is not None and total > 0 else probs[label])

    def save(self, path: str | Path) -> None:
        """Write the model as fastText's .bin file (atomically); later pickles reload it from there."""
        if self._model is None:
            self._load()
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        self._model.save_model(str(partial))
        os.replace(partial, path)
        self.path = path

    def __getstate__(self) -> dict[str, Any]:
        if self.path is None:
            raise TypeError("a trained fastText model has no file yet: save it before pickling")
        return {**self.__dict__, "_model": None}


def check_model_file(path: Path) -> None:
    """DataError naming `path` unless it holds a complete supervised fastText model."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            reader = _Reader(f, size)
            end = _walk_model(reader)
    except FileNotFoundError:
        raise DataError(f"{path}: no such fastText model file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a fastText model file") from None
    except _Truncated as e:
        raise DataError(f"{path}: not a fastText model, or a truncated one ({e}); download or train it again") from None
    if end != size:
        raise DataError(f"{path}: {size} bytes, but its fastText layout ends at byte {end}; the file is corrupt or "
                        "truncated; download or train it again")


class _Truncated(Exception):
    pass


class _Reader:
    def __init__(self, f: io.BufferedReader, size: int):
        self.f, self.size = f, size

    def unpack(self, fmt: str, what: str) -> tuple:
        n = struct.calcsize(fmt)
        data = self.f.read(n)
        if len(data) != n:
            raise _Truncated(f"the file ends inside the {what}")
        return struct.unpack(fmt, data)

    def skip(self, n: int, what: str) -> None:
        if n < 0 or self.f.tell() + n > self.size:
            raise _Truncated(f"the {what} needs {n} bytes but {self.size - self.f.tell()} remain")
        self.f.seek(n, os.SEEK_CUR)

    def skip_words(self, count: int) -> None:
        """Skip `count` dictionary entries: a NUL-terminated word, an int64 count and an int8 type each."""
        buffer, pos = b"", 0
        for _ in range(count):
            end = buffer.find(b"\0", pos)
            while end < 0 or end + 10 > len(buffer):
                chunk = self.f.read(1 << 20)
                if not chunk:
                    raise _Truncated("the file ends inside the dictionary")
                buffer, pos = buffer[pos:] + chunk, 0
                end = buffer.find(b"\0", pos)
            pos = end + 10
        self.f.seek(pos - len(buffer), os.SEEK_CUR)


def _walk_model(r: _Reader) -> int:
    """The byte offset where the model described by the file's headers ends."""
    magic, version = r.unpack("<ii", "header")
    if magic != _MAGIC or version not in _VERSIONS:
        raise _Truncated(f"magic {magic} version {version}, expected {_MAGIC} with a version in {_VERSIONS}")
    args = r.unpack("<12id", "arguments")
    dim, model = args[0], args[7]
    if model != _SUPERVISED:
        raise _Truncated(f"model type {model} is a word-vector model, not a supervised classifier")
    size, nwords, nlabels, _, prune_size = r.unpack("<iiiqq", "dictionary header")
    if size != nwords + nlabels or nlabels < 1 or dim < 1:
        raise _Truncated(f"dictionary of {size} entries, {nwords} words and {nlabels} labels, dim {dim}")
    r.skip_words(size)
    r.skip(8 * max(prune_size, 0), "pruned index")
    for what in ("input matrix", "output matrix"):
        (quantized,) = r.unpack("<?", what)
        _skip_matrix(r, quantized, what)
    return r.f.tell()


def _skip_matrix(r: _Reader, quantized: bool, what: str) -> None:
    if not quantized:
        m, n = r.unpack("<qq", what)
        r.skip(4 * m * n, what)
        return
    qnorm, m, _, codesize = r.unpack("<?qqi", what)
    r.skip(codesize, what)
    _skip_quantizer(r, what)
    if qnorm:
        r.skip(m, what)
        _skip_quantizer(r, what)


def _skip_quantizer(r: _Reader, what: str) -> None:
    dim, _, _, _ = r.unpack("<iiii", what)
    r.skip(4 * dim * _CENTROIDS, what)


@dataclass(frozen=True)
class FastTextConfig:
    """`fasttext.train_supervised` settings; thread=1 and a fixed seed make training deterministic.

    The defaults were picked on Davidson (held out by hash) and COLD (train to
    test), benchmarks/classifier_backends.py: word bigrams plus character 1-4-grams
    (Chinese has no spaces, so without them COLD's ROC-AUC is 0.52), 10 epochs at
    lr 0.5; 2**18 buckets keep the .bin near 22 MB at dim 16 (2**20 gained < 0.002 AUC).
    """

    epoch: int = 10
    lr: float = 0.5
    dim: int = 16
    word_ngrams: int = 2
    minn: int = 1
    maxn: int = 4
    bucket: int = 1 << 18
    min_count: int = 1
    loss: str = "softmax"
    thread: int = 1
    seed: int = 0


def train_fasttext(texts: Sequence[str], labels: Sequence[str],
                   config: FastTextConfig = FastTextConfig()) -> FastTextModel:
    """Train a supervised fastText model on `texts` with string `labels` (written ``__label__<label>``)."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise ValueError("no training examples")
    fasttext = import_fasttext()
    settings = asdict(config)
    with tempfile.TemporaryDirectory(prefix="lm-fasttext-") as tmp:
        data = Path(tmp) / "train.txt"
        with open(data, "w", encoding="utf-8", errors="replace") as f:
            for text, label in zip(texts, labels):
                f.write(f"{LABEL_PREFIX}{label} {one_line(text)}\n")
        trained = fasttext.train_supervised(
            str(data), epoch=settings["epoch"], lr=settings["lr"], dim=settings["dim"],
            wordNgrams=settings["word_ngrams"], minn=settings["minn"], maxn=settings["maxn"],
            bucket=settings["bucket"], minCount=settings["min_count"], loss=settings["loss"],
            thread=settings["thread"], seed=settings["seed"], verbose=0)
    return FastTextModel.from_trained(trained)
