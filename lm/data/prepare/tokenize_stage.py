"""Train the tokenizer on the clean output and write its token shards, per group and split.

    run_dir/tokenizer/tokenizer.model (+ tokenizer.json)   lm.data.tokenizer.train_tokenizer
    run_dir/tokens/<group>/                                  training documents (lm.data.shards)
    run_dir/heldout/<group>/                                 held-out documents, never in tokens/

Groups are the recipe's sources (``tokens.group_by = "source"``), the detected
languages ("lang"; documents without one go to "unknown") or one group "all"
("none"); a mixture samples across the groups of tokens/. A document is held out
by a hash of its text (`lm.data.heldout.is_heldout` with the recipe's
``tokens.heldout_fraction``), so exact duplicates never straddle the split; the
tokenizer is trained on the training side only. Every stage is skipped when its
output is complete (a token directory is complete once it has its manifest).
"""

from __future__ import annotations

import json
from pathlib import Path

from lm.data.heldout import is_heldout
from lm.data.prepare.output import iter_clean
from lm.data.prepare.record import Record
from lm.data.read import DataError, Document
from lm.data.shards import MANIFEST_FILE, TokenShards, tokenize_to_shards
from lm.data.tokenizer import MODEL_FILE, Tokenizer, train_tokenizer

SPLITS = (("tokens", False), ("heldout", True))  # directory under run_dir, whether it is the held-out side


def group_of(record: Record, group_by: str) -> str:
    """The token group a clean record belongs to."""
    if group_by == "source":
        return record.source
    if group_by == "lang":
        return record.lang or "unknown"
    return "all"


def _heldout_fraction(run_dir: Path) -> float:
    """The recipe's ``tokens.heldout_fraction``, from the validated recipe.json of `run_dir`."""
    return json.loads((Path(run_dir) / "recipe.json").read_text("utf-8"))["tokens"]["heldout_fraction"]


def tokenize_clean(clean_dir: Path, run_dir: Path, settings: dict, group_by: str) -> dict[str, dict]:
    """Train (or reuse) the tokenizer and write train and held-out token shards per group; return
    each group's {"num_docs", "num_tokens", "heldout_docs", "heldout_tokens"}, groups sorted by name.
    DataError if every document of a group is held out."""
    run_dir = Path(run_dir)
    fraction = _heldout_fraction(run_dir)
    tokenizer = _tokenizer(clean_dir, run_dir, settings, fraction)
    groups = sorted({group_of(r, group_by) for r in iter_clean(clean_dir)})
    totals = {}
    for group in groups:
        shards = {}
        for split, heldout in SPLITS:
            out_dir = run_dir / split / group
            if not (out_dir / MANIFEST_FILE).exists():
                docs = (Document(r.id, r.text) for r in iter_clean(clean_dir)
                        if group_of(r, group_by) == group and is_heldout(r.text, fraction) == heldout)
                tokenize_to_shards(docs, tokenizer, out_dir, progress=False)
            shards[split] = TokenShards(out_dir)
            if shards[split].tokenizer_fingerprint != tokenizer.fingerprint:
                raise DataError(f"{out_dir} was tokenized with another tokenizer than {tokenizer.path}; delete it")
        train, held = shards["tokens"], shards["heldout"]
        if train.num_docs == 0:
            raise DataError(f"all {held.num_docs} documents of token group {group!r} fall in the held-out split "
                            f"(recipe field 'tokens.heldout_fraction' is {fraction}); lower it or add documents")
        totals[group] = {"num_docs": train.num_docs, "num_tokens": train.num_tokens,
                         "heldout_docs": held.num_docs, "heldout_tokens": held.num_tokens}
    return totals


def _tokenizer(clean_dir: Path, run_dir: Path, settings: dict, fraction: float) -> Tokenizer:
    """The run's tokenizer, trained on the training side of the clean text unless it exists."""
    model_path = run_dir / "tokenizer" / MODEL_FILE
    if model_path.exists():
        return Tokenizer.load(model_path)
    texts = (r.text for r in iter_clean(clean_dir) if not is_heldout(r.text, fraction))
    try:
        return train_tokenizer(
            texts, run_dir / "tokenizer", vocab_size=settings["vocab_size"], model_type=settings["model_type"],
            byte_fallback=settings["byte_fallback"], split_digits=settings["split_digits"],
            max_sentences=settings["max_sentences"], seed=settings["seed"])
    except DataError as e:
        raise DataError(f"training the tokenizer on {clean_dir} failed: {e}") from e
