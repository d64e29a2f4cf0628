"""Build a run's data inside its workdir: corpus -> held-out split -> tokenizer -> token shards.

Each stage writes its output atomically and is skipped when that output is
already complete, so an interrupted build resumes where it stopped:

    workdir/corpus.json            what went in (files or sources, fingerprint)
    workdir/tokenizer/             tokenizer.model (+ tokenizer.json)
    workdir/data/train/, heldout/  token shards (manifest.json written last)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Iterable, Iterator

import ml_collections

from lm.data.corpus import stdlib_corpus, write_manifest
from lm.data.read import DataError, Document, iter_documents
from lm.data.shards import TokenShards, tokenize_to_shards
from lm.data.tokenizer import Tokenizer, train_tokenizer

STDLIB = "stdlib"

# The stdlib corpus is read once per process, not once per build stage.
_stdlib_corpus = functools.cache(stdlib_corpus)


@dataclasses.dataclass(frozen=True)
class RunData:
    tokenizer: Tokenizer
    train: TokenShards
    heldout: TokenShards


def is_heldout(text: str, fraction: float) -> bool:
    """A stable split by content: the same text lands on the same side wherever it is read
    from, and exact duplicates never straddle train and held-out."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


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
    """Create (or reuse) the corpus record, tokenizer and train/held-out token shards."""
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
    return RunData(tokenizer, shards["train"], shards["heldout"])


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
    if tokenizer.vocab_size != vocab_size:
        raise DataError(f"tokenizer {tokenizer.path} has vocab {tokenizer.vocab_size} but "
                        f"model.vocab_size is {vocab_size}; set --config.model.vocab_size="
                        f"{tokenizer.vocab_size}")
    return tokenizer
