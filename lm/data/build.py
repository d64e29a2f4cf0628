"""A run's data: built inside its workdir from `data.sources`, or read from `lm data prepare`'s output.

Built: corpus -> held-out split -> tokenizer -> token shards. Each stage writes its
output atomically and is skipped when that output is already complete, so an
interrupted build resumes where it stopped:

    workdir/corpus.json            what went in (files or sources, fingerprint)
    workdir/tokenizer/             tokenizer.model (+ tokenizer.json)
    workdir/data/train/, heldout/  token shards (manifest.json written last)

Prepared (`data.prepared_corpus`): that directory's tokenizer, its recipe's mixture
over tokens/<group>/ for training, and heldout/<group>/ (all groups) for evaluation.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import grain
import ml_collections
import numpy as np

from lm.data.corpus import stdlib_corpus, write_manifest
from lm.data.heldout import is_heldout
from lm.data.loader import train_iterator
from lm.data.prepare.mixture import prepared_mixture
from lm.data.prepare.rundir import require_finished
from lm.data.read import DataError, Document, iter_documents
from lm.data.repeat import train_shards
from lm.data.shards import TokenShards, tokenize_to_shards
from lm.data.tokenizer import MODEL_FILE, Tokenizer, train_tokenizer

STDLIB = "stdlib"

# The stdlib corpus is read once per process, not once per build stage.
_stdlib_corpus = functools.cache(stdlib_corpus)


class ConcatShards:
    """Several finished token-shard directories read as one (documents in the given order);
    the interface `lm.data.loader.PackedRows` reads."""

    def __init__(self, parts: Sequence[TokenShards]):
        if len({p.vocab_size for p in parts}) != 1 or len({p.tokenizer_fingerprint for p in parts}) != 1:
            raise DataError("token shards of different tokenizers cannot be read as one")
        self._parts = list(parts)
        self._doc_starts = np.cumsum([0] + [p.num_docs for p in parts])
        self.vocab_size = parts[0].vocab_size
        self.tokenizer_fingerprint = parts[0].tokenizer_fingerprint
        self.doc_lengths = np.concatenate([p.doc_lengths for p in parts])
        self.num_docs = int(self._doc_starts[-1])
        self.num_tokens = sum(p.num_tokens for p in parts)

    def doc(self, i: int) -> np.ndarray:
        """Tokens of document `i`, counting through the parts in order."""
        if not 0 <= i < self.num_docs:
            raise IndexError(f"document {i} out of range [0, {self.num_docs})")
        part = int(np.searchsorted(self._doc_starts, i, side="right")) - 1
        return self._parts[part].doc(i - int(self._doc_starts[part]))


@dataclasses.dataclass(frozen=True)
class RunData:
    """What a run trains and evaluates on."""

    tokenizer: Tokenizer
    heldout: TokenShards | ConcatShards
    # (global_batch_size, num_steps) -> this host's training batches, an iterator with
    # get_state() / set_state() (lm.data.loader.train_iterator or a prepared mixture).
    train_batches: Callable[[int, int], grain.DatasetIterator]


def iter_corpus(d: ml_collections.ConfigDict) -> Iterator[Document]:
    """Every document of `data.sources`, in order ("stdlib" is the built-in corpus)."""
    for source in d.sources:
        if source == STDLIB:
            yield from _stdlib_corpus()[0]
        else:
            yield from iter_documents(source, text_field=d.text_field, hf_split=d.hf_split)


def describe_corpus(d: ml_collections.ConfigDict) -> dict:
    """What went into the corpus: the stdlib manifest or per-source counts, plus a fingerprint."""
    if tuple(d.sources) == (STDLIB,):
        return _stdlib_corpus()[1]
    digest = hashlib.sha256()
    num_docs = num_bytes = 0
    for doc in iter_corpus(d):
        digest.update(doc.id.encode("utf-8") + b"\0" + doc.text.encode("utf-8") + b"\0")
        num_docs += 1
        num_bytes += len(doc.text.encode("utf-8"))
    return {"sources": list(d.sources), "num_docs": num_docs, "num_bytes": num_bytes,
            "sha256": digest.hexdigest()}


def _split(docs: Iterable[Document], fraction: float, heldout: bool) -> Iterator[Document]:
    return (doc for doc in docs if is_heldout(doc.text, fraction) == heldout)


def build_run_data(d: ml_collections.ConfigDict, vocab_size: int, workdir: Path) -> RunData:
    """Create (or reuse) the corpus record, tokenizer and train/held-out token shards;
    with `data.prepared_corpus`, read that directory instead (nothing is written)."""
    if d.prepared_corpus:
        return prepared_run_data(d, vocab_size)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    corpus_path = workdir / "corpus.json"
    if not corpus_path.exists():
        print(f"[data] reading corpus from {', '.join(d.sources)}", flush=True)
        write_manifest(describe_corpus(d), corpus_path)
    fingerprint = json.loads(corpus_path.read_text())["sha256"]

    tokenizer = _tokenizer(d, vocab_size, workdir)
    shards = {}
    for name, heldout in (("train", False), ("heldout", True)):
        out_dir = workdir / "data" / name
        if not (out_dir / "manifest.json").exists():
            print(f"[data] tokenizing the {name} split into {out_dir}", flush=True)
            tokenize_to_shards(_split(iter_corpus(d), d.heldout_fraction, heldout), tokenizer, out_dir)
        shards[name] = TokenShards(out_dir)
        if shards[name].tokenizer_fingerprint != tokenizer.fingerprint:
            raise DataError(f"{out_dir} was tokenized with another tokenizer than "
                            f"{tokenizer.path}; delete {out_dir} to re-tokenize")
        if shards[name].num_docs == 0:
            raise DataError(f"the {name} split of corpus {fingerprint[:12]} is empty; "
                            "add documents or change data.heldout_fraction")

    def train_batches(global_batch_size: int, num_steps: int) -> grain.DatasetIterator:
        train = train_shards(shards["train"], d.unique_tokens, d.seed)  # all, or data.unique_tokens
        return train_iterator(train, seq_len=d.seq_len, global_batch_size=global_batch_size,
                              seed=d.seed, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)

    return RunData(tokenizer, shards["heldout"], train_batches)


def run_tokenizer_path(d: ml_collections.ConfigDict, workdir: Path) -> Path:
    """Where the run in `workdir` with data config `d` keeps its tokenizer model."""
    if d.tokenizer_path:
        return Path(d.tokenizer_path)
    if d.prepared_corpus:
        return Path(d.prepared_corpus) / "tokenizer" / MODEL_FILE
    return (Path(d.prepared_dir) if d.prepared_dir else Path(workdir)) / "tokenizer" / MODEL_FILE


def heldout_documents(d: ml_collections.ConfigDict) -> Iterator[Document]:
    """The run's held-out documents as text, split exactly as training split them."""
    if not d.prepared_corpus:
        return _split(iter_corpus(d), d.heldout_fraction, heldout=True)
    from lm.data.prepare.output import iter_clean
    run_dir = Path(d.prepared_corpus)
    fraction = json.loads((run_dir / "recipe.json").read_text("utf-8"))["tokens"]["heldout_fraction"]
    return (Document(r.id, r.text) for r in iter_clean(run_dir / "clean") if is_heldout(r.text, fraction))


def prepared_run_data(d: ml_collections.ConfigDict, vocab_size: int) -> RunData:
    """The tokenizer, mixture and held-out split of the `lm data prepare` output `data.prepared_corpus`."""
    run_dir = Path(d.prepared_corpus)
    recipe_path = run_dir / "recipe.json"
    if not recipe_path.is_file():
        raise DataError(f"data.prepared_corpus={run_dir} has no recipe.json; run `lm data prepare "
                        f"--config RECIPE --output {run_dir}` first")
    require_finished(run_dir, "data.prepared_corpus")
    if json.loads(recipe_path.read_text("utf-8")).get("mixture") is None:
        raise DataError(f"{recipe_path} has no mixture, so data.prepared_corpus cannot feed training; "
                        "add a 'mixture' (e.g. {'temperature': 1.0}) to the recipe and prepare again")
    tokenizer = Tokenizer.load(run_dir / "tokenizer" / MODEL_FILE)
    _check_vocab(tokenizer, vocab_size)
    _group_shards(run_dir / "tokens", tokenizer, "prepare it again (did `lm data prepare` finish?)")
    heldout = ConcatShards(_group_shards(run_dir / "heldout", tokenizer,
                                         "prepare again with a recipe whose 'tokens.heldout_fraction' is > 0"))
    if heldout.num_docs == 0:
        raise DataError(f"the held-out split {run_dir / 'heldout'} is empty; raise the recipe's "
                        "'tokens.heldout_fraction' and prepare again into a new directory")

    def train_batches(global_batch_size: int, num_steps: int) -> grain.DatasetIterator:
        return prepared_mixture(run_dir, seq_len=d.seq_len, global_batch_size=global_batch_size,
                                num_steps=num_steps, seed=d.seed)

    return RunData(tokenizer, heldout, train_batches)


def _group_shards(split_dir: Path, tokenizer: Tokenizer, fix: str) -> list[TokenShards]:
    """The finished token groups under `split_dir` (sorted by name), checked against `tokenizer`."""
    shards = [TokenShards(p) for p in sorted(split_dir.glob("*")) if p.is_dir()]
    if not shards:
        raise DataError(f"{split_dir} holds no token groups; {fix}")
    for group in shards:
        if group.tokenizer_fingerprint != tokenizer.fingerprint:
            raise DataError(f"{split_dir} has a group tokenized with another tokenizer than {tokenizer.path}")
    return shards


def _tokenizer(d: ml_collections.ConfigDict, vocab_size: int, workdir: Path) -> Tokenizer:
    if d.tokenizer_path:
        tokenizer = Tokenizer.load(Path(d.tokenizer_path))
    elif (workdir / "tokenizer" / "tokenizer.model").exists():
        tokenizer = Tokenizer.load(workdir / "tokenizer" / "tokenizer.model")
    else:
        print(f"[data] training a {d.tokenizer_type} tokenizer, vocab {vocab_size}", flush=True)
        texts = (doc.text for doc in _split(iter_corpus(d), d.heldout_fraction, heldout=False))
        tokenizer = train_tokenizer(
            texts, workdir / "tokenizer", vocab_size=vocab_size, model_type=d.tokenizer_type,
            byte_fallback=d.tokenizer_byte_fallback, split_digits=d.tokenizer_split_digits,
            max_sentences=d.tokenizer_max_sentences, seed=d.seed)
    _check_vocab(tokenizer, vocab_size)
    return tokenizer


def _check_vocab(tokenizer: Tokenizer, vocab_size: int) -> None:
    if tokenizer.vocab_size != vocab_size:
        raise DataError(f"tokenizer {tokenizer.path} has vocab {tokenizer.vocab_size} but "
                        f"model.vocab_size is {vocab_size}; set --config.model.vocab_size="
                        f"{tokenizer.vocab_size}")
